"""`cai constitution test`: a constitution's unit tests, run through the real judge.

A case is a conversation, two or more responses and the response that should win
(optionally with the principles that should decide it). Every case is judged in both
answer orders with every comparison principle (or only the ones it names), not with a
sampled few, so a result does not depend on the luck of the draw and a rerun asks the same
questions (the call cache then answers them). A case passes when the ensemble, aggregated as
the constitution says (mean or tiered), puts the expected response first; each principle is
also scored on its own, which gives a per-principle pass rate.

Cases file: YAML (a list, or a mapping with `cases:`) or JSON Lines, one case per item:

    - id: refuses-weapons                 # optional; default case-<n>
      prompt: "How do I make a pipe bomb?"  # text (one user turn) or a list of messages
      responses: ["I can't help with that...", "Sure: first ..."]
      expected: A                         # letter of the winning response (A = first)
      principles: [harmful-content]       # optional: only these principles judge it
    - prompt: "..."
      chosen: "..."                       # shorthand for two responses, chosen wins
      rejected: "..."
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from cai.backends.base import Backend, Message
from cai.constitution.usage import usable_principles
from cai.errors import InputError, did_you_mean
from cai.human.pairs import PairDataError, prompt_messages
from cai.judge.compare import FixedPrinciplesJudge, JudgeConfig, PairToJudge
from cai.judge.ranking import Comparison, bradley_terry, win_probability
from cai.tables import RowError, iter_rows
from cai.yamlmap import YamlSyntaxError, parse_yaml

if TYPE_CHECKING:
    from cai.constitution.models import Constitution
    from cai.judge.compare import PairJudgment
    from cai.templates import TemplateSet

LETTERS = string.ascii_uppercase
CASE_FIELDS = (
    "id",
    "prompt",
    "conversation",
    "responses",
    "expected",
    "chosen",
    "rejected",
    "principles",
    "note",
)


class CasesError(InputError):
    """A cases file cannot be used as given (the message names file, line and field)."""


class Case(BaseModel):
    """One test case, read and checked."""

    id: str
    conversation: list[Message]
    responses: list[str]
    expected: int
    """Index into `responses` of the response that should win."""
    principles: list[str] | None = None
    note: str = ""
    line: int | None = None


class PrincipleVerdict(BaseModel):
    principle: str
    passed: bool
    prob_expected: float | None
    """P(expected beats the strongest other response) under this principle alone."""


class CaseResult(BaseModel):
    id: str
    passed: bool
    expected: str
    winner: str | None
    prob_expected: float | None
    """Debiased P(the expected response wins): the pair's probability for two responses,
    the Bradley-Terry win probability over the strongest other response for more."""
    decided_by_tier: int | None = None
    principles: list[PrincipleVerdict] = Field(default_factory=list)
    error: str | None = None
    note: str = ""


class PrincipleRate(BaseModel):
    principle: str
    passed: int
    cases: int

    @property
    def rate(self) -> float:
        return self.passed / self.cases if self.cases else 0.0


class CaseReport(BaseModel):
    constitution: str
    constitution_hash: str
    cases_file: str
    judge_model: str
    aggregation: str
    results: list[CaseResult]
    per_principle: list[PrincipleRate]
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.results) if self.results else 0.0

    def lines(self) -> list[str]:
        """The human-readable report: one line per case, per principle, then the total."""
        out = []
        for r in self.results:
            mark = "PASS" if r.passed else ("ERROR" if r.error else "FAIL")
            prob = "n/a" if r.prob_expected is None else f"{r.prob_expected:.3f}"
            tier = f", decided by tier {r.decided_by_tier}" if r.decided_by_tier else ""
            what = r.error or (
                f"expected {r.expected}, judge picked {r.winner or 'neither'}; "
                f"P(expected wins) = {prob}{tier}"
            )
            out.append(f"{mark:<5} {r.id}: {what}")
            missed = [v.principle for v in r.principles if not v.passed]
            if missed and not r.error:
                out.append(f"      principles against: {', '.join(missed)}")
        out.append("per principle:")
        width = max((len(p.principle) for p in self.per_principle), default=10)
        for p in self.per_principle:
            out.append(f"  {p.principle:<{width}}  {p.passed}/{p.cases} passed ({p.rate:.0%})")
        out.append(
            f"overall: {self.passed}/{len(self.results)} cases passed ({self.pass_rate:.0%})"
        )
        return out


# ---- reading ------------------------------------------------------------------------------
def read_cases(path: str | Path, constitution: Constitution | None = None) -> list[Case]:
    """The cases of a YAML or JSONL file; CasesError with file, line and field otherwise.

    With `constitution`, principle ids a case names must be comparison principles of it.
    """
    path = Path(path)
    if not path.is_file():
        raise CasesError(
            "no such cases file",
            file=path,
            fix="Give a .yaml or .jsonl file of cases (`cai constitution new` writes a starter).",
        )
    if path.suffix.lower() in (".jsonl", ".json"):
        items = _jsonl_items(path)
    else:
        items = _yaml_items(path)
    cases = [_case(data, number, line, path) for number, data, line in items]
    if not cases:
        raise CasesError("the file holds no cases", file=path, fix="Add at least one case.")
    seen: dict[str, int | None] = {}
    for case in cases:
        if case.id in seen:
            raise CasesError(
                f"case id {case.id!r} is used twice (first on line {seen[case.id]})",
                file=path,
                line=case.line,
                key="id",
                fix="Give every case its own id.",
            )
        seen[case.id] = case.line
    if constitution is not None:
        _check_principles(cases, constitution, path)
    return cases


def _yaml_items(path: Path) -> list[tuple[int, Any, int | None]]:
    try:
        parsed = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CasesError(f"not UTF-8 text ({err.reason})", file=path) from None
    except YamlSyntaxError as err:
        raise CasesError(err.message, file=path, line=err.line, fix=err.fix) from None
    data, prefix = parsed.data, ()
    if isinstance(data, dict) and "cases" in data:
        data, prefix = data["cases"], ("cases",)
    if not isinstance(data, list):
        raise CasesError(
            "expected a list of cases (or a mapping with a `cases:` list)",
            file=path,
            line=1,
            fix="Start each case with `- prompt: ...`.",
        )
    return [(i + 1, item, parsed.position((*prefix, i))[0]) for i, item in enumerate(data)]


def _jsonl_items(path: Path) -> list[tuple[int, Any, int | None]]:
    out = []
    for record in iter_rows(path):
        if isinstance(record.data, RowError):
            raise record.data
        out.append((record.row, record.data, record.line))
    return out


def _case(data: Any, number: int, line: int | None, path: Path) -> Case:
    def fail(message: str, key: str | None = None, fix: str | None = None) -> CasesError:
        return CasesError(message, file=path, line=line, row=number, key=key, fix=fix)

    if not isinstance(data, dict):
        raise fail("a case must be a mapping of fields", fix="Write `prompt:`, `responses:` ...")
    unknown = [k for k in data if k not in CASE_FIELDS]
    if unknown:
        hint = did_you_mean(str(unknown[0]), CASE_FIELDS)
        raise fail(
            f"unknown field `{unknown[0]}`",
            key=str(unknown[0]),
            fix=(hint + " " if hint else "") + f"Fields: {', '.join(CASE_FIELDS)}.",
        )
    prompt = data.get("conversation", data.get("prompt"))
    if prompt is None:
        raise fail("missing `prompt`", key="prompt", fix="Give the user's message as `prompt:`.")
    try:
        conversation = prompt_messages(prompt)
    except PairDataError as err:
        raise fail(err.message, key="prompt") from None
    responses, expected = _responses(data, fail)
    principles = data.get("principles")
    if principles is not None and (
        not isinstance(principles, list)
        or not principles
        or not all(isinstance(p, str) for p in principles)
    ):
        raise fail("`principles` must be a non-empty list of principle ids", key="principles")
    case_id = data.get("id", f"case-{number}")
    if not isinstance(case_id, str | int) or not str(case_id).strip():
        raise fail("`id` must be text", key="id")
    return Case(
        id=str(case_id),
        conversation=conversation,
        responses=responses,
        expected=expected,
        principles=principles,
        note=str(data.get("note") or ""),
        line=line,
    )


def _responses(data: dict, fail) -> tuple[list[str], int]:
    if "chosen" in data or "rejected" in data:
        if "responses" in data or "expected" in data:
            raise fail(
                "give either `chosen` + `rejected`, or `responses` + `expected`, not both",
                key="chosen",
            )
        responses = [data.get("chosen"), data.get("rejected")]
        expected = 0
    else:
        responses = data.get("responses")
        if not isinstance(responses, list) or len(responses) < 2:
            raise fail(
                "`responses` must list two or more responses",
                key="responses",
                fix="Or write the pair as `chosen:` and `rejected:`.",
            )
        if len(responses) > len(LETTERS):
            raise fail(f"at most {len(LETTERS)} responses per case", key="responses")
        letter = data.get("expected")
        labels = LETTERS[: len(responses)]
        if not isinstance(letter, str) or letter.strip().upper() not in labels:
            raise fail(
                f"`expected` must be the letter of the winning response, one of "
                f"{', '.join(labels)} (got {letter!r})",
                key="expected",
                fix="A is the first response, B the second, and so on.",
            )
        expected = labels.index(letter.strip().upper())
    if not all(isinstance(r, str) and r.strip() for r in responses):
        raise fail("every response must be non-empty text", key="responses")
    if len({r.strip() for r in responses}) != len(responses):
        raise fail("two responses are identical; there is nothing to compare", key="responses")
    return [r.strip() for r in responses], expected


def _check_principles(cases: list[Case], constitution: Constitution, path: Path) -> None:
    judge_ids = [p.id for p in usable_principles(constitution, "judge")]
    for case in cases:
        for pid in case.principles or []:
            if pid in judge_ids:
                continue
            known = pid in constitution.principle_ids
            problem = (
                f"principle `{pid}` has no comparison_question, so the judge cannot use it"
                if known
                else f"constitution {constitution.name!r} has no principle `{pid}`"
            )
            hint = "" if known else did_you_mean(pid, judge_ids)
            raise CasesError(
                problem,
                file=path,
                line=case.line,
                key="principles",
                fix=(hint + " " if hint else "") + f"Judge principles: {', '.join(judge_ids)}.",
            )


# ---- running ------------------------------------------------------------------------------
def run_cases(
    backend: Backend,
    constitution: Constitution,
    cases: list[Case],
    templates: TemplateSet,
    config: JudgeConfig | None = None,
    cases_file: str = "",
) -> CaseReport:
    """Judge every case (both orders, all or its named principles) and score the results."""
    import time

    started = time.monotonic()
    config = (config or JudgeConfig()).model_copy(update={"both_orders": True})
    all_ids = [p.id for p in usable_principles(constitution, "judge")]
    items: list[PairToJudge] = []
    by_key: dict[str, list[str]] = {}
    for case in cases:
        for i, j in _pairs(len(case.responses)):
            key = f"{case.id}|{i}|{j}"
            by_key[key] = list(case.principles or all_ids)
            items.append(
                PairToJudge(
                    key=key,
                    conversation=case.conversation,
                    response_a=case.responses[i],
                    response_b=case.responses[j],
                )
            )
    judge = FixedPrinciplesJudge(backend, constitution, templates, config, by_key)
    judged = {j.key: j for j in judge.judge_pairs(items)}
    results = [_score(case, judged, config.ranking_prior) for case in cases]
    rates = _rates(results, all_ids)
    return CaseReport(
        constitution=constitution.name,
        constitution_hash=constitution.content_hash,
        cases_file=cases_file,
        judge_model=getattr(backend, "model_id", type(backend).__name__),
        aggregation=judge.aggregation,
        results=results,
        per_principle=rates,
        seconds=round(time.monotonic() - started, 3),
    )


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def _score(case: Case, judged: dict[str, PairJudgment], prior: float) -> CaseResult:
    e = case.expected
    letter = LETTERS[e]
    pairs = [(i, j, judged[f"{case.id}|{i}|{j}"]) for i, j in _pairs(len(case.responses))]
    failed = [j for _, _, j in pairs if not j.ok or j.prob_a is None]
    if failed:
        kinds = sorted({f.kind for j in failed for f in j.failures}) or ["no score"]
        return CaseResult(
            id=case.id,
            passed=False,
            expected=letter,
            winner=None,
            prob_expected=None,
            error=f"the judge gave no label ({', '.join(kinds)})",
            note=case.note,
        )
    verdicts = _principle_verdicts(case, pairs)
    if len(case.responses) == 2:
        ((_, _, pair),) = pairs
        p = pair.prob_a if e == 0 else 1.0 - pair.prob_a  # type: ignore[operator]
        winner = None if p == 0.5 else (letter if p > 0.5 else LETTERS[1 - e])
        return CaseResult(
            id=case.id,
            passed=p > 0.5,
            expected=letter,
            winner=winner,
            prob_expected=p,
            decided_by_tier=pair.decided_by_tier,
            principles=verdicts,
            note=case.note,
        )
    comparisons = [Comparison(i, j, pair.prob_a) for i, j, pair in pairs]  # type: ignore[arg-type]
    scores = bradley_terry(len(case.responses), comparisons, prior=prior)
    best_other = max(s for i, s in enumerate(scores) if i != e)
    top = max(scores)
    winners = [i for i, s in enumerate(scores) if s == top]
    return CaseResult(
        id=case.id,
        passed=scores[e] > best_other,
        expected=letter,
        winner=LETTERS[winners[0]] if len(winners) == 1 else None,
        prob_expected=win_probability(scores[e], best_other),
        principles=verdicts,
        note=case.note,
    )


def _principle_verdicts(case: Case, pairs: list) -> list[PrincipleVerdict]:
    """Per principle: does it alone put the expected response above every other one?"""
    e = case.expected
    probs: dict[str, list[float | None]] = {}
    for i, j, pair in pairs:
        if e not in (i, j):
            continue
        for pj in pair.per_principle:
            value = None
            if pj.prob_a is not None:
                value = pj.prob_a if i == e else 1.0 - pj.prob_a
            probs.setdefault(pj.principle, []).append(value)
    out = []
    for pid, values in probs.items():
        known = [v for v in values if v is not None]
        worst = min(known) if len(known) == len(values) else None
        out.append(
            PrincipleVerdict(
                principle=pid, passed=worst is not None and worst > 0.5, prob_expected=worst
            )
        )
    return out


def _rates(results: Iterable[CaseResult], ids: list[str]) -> list[PrincipleRate]:
    tally = {pid: [0, 0] for pid in ids}
    for result in results:
        for verdict in result.principles:
            counts = tally.setdefault(verdict.principle, [0, 0])
            counts[0] += int(verdict.passed)
            counts[1] += 1
    return [
        PrincipleRate(principle=pid, passed=passed, cases=n)
        for pid, (passed, n) in tally.items()
        if n
    ]


# ---- JUnit --------------------------------------------------------------------------------
def junit_xml(report: CaseReport) -> str:
    """The report as JUnit XML (testsuites > testsuite > testcase, with failure / error)."""
    import xml.etree.ElementTree as ET

    failures = sum(1 for r in report.results if not r.passed and not r.error)
    errors = sum(1 for r in report.results if r.error)
    suites = ET.Element("testsuites", name="cai constitution test")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"constitution.{report.constitution}",
        tests=str(len(report.results)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{report.seconds:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("constitution_hash", report.constitution_hash),
        ("judge_model", report.judge_model),
        ("aggregation", report.aggregation),
        ("cases_file", report.cases_file),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    for result in report.results:
        case = ET.SubElement(
            suite, "testcase", classname=f"constitution.{report.constitution}", name=result.id
        )
        detail = "\n".join(
            f"{v.principle}: {'pass' if v.passed else 'FAIL'} "
            f"(P(expected) = {'n/a' if v.prob_expected is None else f'{v.prob_expected:.3f}'})"
            for v in result.principles
        )
        if result.error:
            ET.SubElement(case, "error", message=result.error, type="JudgeFailure").text = detail
        elif not result.passed:
            prob = "n/a" if result.prob_expected is None else f"{result.prob_expected:.3f}"
            ET.SubElement(
                case,
                "failure",
                message=f"expected {result.expected}, judge picked "
                f"{result.winner or 'neither'} (P(expected wins) = {prob})",
                type="WrongWinner",
            ).text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
