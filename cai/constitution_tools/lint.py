"""`cai constitution lint`: what is likely wrong with a constitution that loads fine.

Loading catches what makes a file unusable; lint catches what makes it work badly. Static
findings read only the file: near-duplicate principles, comparison questions that do not
ask for a comparison, negated framing ("less harmful"), placeholder text, text that looks
like a template variable (principle text is data and reaches the model as written), tiers
and weights that can never change a label. Empirical findings (`cai.constitution_tools.votes`)
read judgments the constitution made and, optionally, human labels of the same pairs.

Severities: `error` (the principle cannot work as meant), `warning` (it probably works
badly), `info` (worth a look). `cai constitution lint` exits 1 when there is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from cai.constitution.errors import display_path
from cai.constitution.models import Constitution, Principle
from cai.constitution.usage import usable_principles
from cai.constitution_tools.similarity import normalise, similarity
from cai.judge.compare import effective_tiers
from cai.yamlmap import parse_yaml

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
TEXT_FIELDS = ("comparison_question", "critique_request", "revision_request", "assessment_question")


class Finding(BaseModel):
    """One thing lint noticed, with where it is and what to do about it."""

    severity: Severity
    code: str
    message: str
    principles: list[str] = Field(default_factory=list)
    file: str | None = None
    line: int | None = None
    fix: str = ""

    def __str__(self) -> str:
        where = (self.file or "") + (f":{self.line}" if self.file and self.line else "")
        fix = f" ({self.fix})" if self.fix else ""
        return f"{where + ': ' if where else ''}{self.severity} [{self.code}] {self.message}{fix}"


class LintConfig(BaseModel):
    """Thresholds of the checks (the defaults suit constitutions of a few to a few dozen)."""

    duplicate_threshold: float = Field(0.8, gt=0.0, le=1.0)
    """Normalised text similarity at or above which two principles are near-duplicates."""
    redundant_agreement: float = Field(0.95, gt=0.5, le=1.0)
    """Share of shared pairs two principles vote alike on, at or above which they are redundant."""
    conflict_correlation: float = Field(-0.3, ge=-1.0, lt=0.0)
    """Correlation of two principles' probabilities at or below which they conflict."""
    min_shared: int = Field(5, ge=1)
    """Fewest shared pairs before an empirical finding is made about two principles."""
    order_disagreement: float = Field(0.3, gt=0.0, le=1.0)
    """Share of pairs whose two answer orders disagree, at or above which a principle is flagged."""
    flat_margin: float = Field(0.02, ge=0.0, lt=0.5)
    """A principle whose |p - 0.5| stays below this on every pair never moves a label."""


# ---- where principles are written ------------------------------------------------------------
def principle_lines(constitution: Constitution) -> dict[tuple[str, str], int]:
    """(principle id, field or "") -> line in the constitution's own file, where written."""

    path = constitution.source_path
    if path is None:
        return {}
    try:
        parsed = parse_yaml(Path(path).read_text(encoding="utf-8"))
    except Exception:  # the file loaded a moment ago; a race or odd encoding is not lint's job
        return {}
    items = parsed.data.get("principles") if isinstance(parsed.data, dict) else None
    out: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        for field in ("", "id", "tier", "weight", *TEXT_FIELDS):
            loc = ("principles", index, field) if field else ("principles", index)
            if field and field not in item:
                continue
            line, _ = parsed.position(loc)
            if line is not None:
                out[(item["id"], field)] = line
    return out


# ---- static checks ------------------------------------------------------------------------------
_CHOICE = re.compile(r"\b(which|choose|select|pick|prefer|compare|comparing|rank)\b", re.I)
_NEGATED = re.compile(r"\b(less|least|fewer|fewest)\s+[a-z]+|\b(not|never|no)\b|n't\b", re.I)
_PLACEHOLDER = re.compile(
    r"\b(todo|tbd|fixme|xxx+|lorem ipsum|placeholder|fill (this|it) in|your text here|"
    r"write (the|your) (text|question|request) here)\b|\.\.\.\s*$|^\s*\?+\s*$|"
    r"[<\[]\s*(\.\.\.|your |insert|fill|todo)[^<>\[\]]*[>\]]",
    re.I,
)
_VARIABLE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{[A-Za-z_][A-Za-z0-9_.]*\}|\$\{?[A-Za-z_]\w*\}?")
_COMPARES = re.compile(r"\bwhich (response|reply|answer|one)\b|\bcompare\b|\bboth\b", re.I)
_STARTER_DESCRIPTION = "what this constitution is for, in a sentence or two."


def static_findings(
    constitution: Constitution,
    config: LintConfig | None = None,
    templates_dir: str | Path | None = None,
) -> list[Finding]:
    """Every static finding about `constitution` (and the user templates in `templates_dir`)."""

    config = config or LintConfig()
    lines = principle_lines(constitution)
    shown = display_path(constitution.source_path) if constitution.source_path else None
    findings: list[Finding] = []
    findings += _duplicates(constitution, config, lines)
    for principle in constitution.principles:
        findings += _text_checks(principle, lines)
    findings += _tier_and_weight_checks(constitution, lines)
    if constitution.description.strip().lower() == _STARTER_DESCRIPTION:
        findings.append(
            Finding(
                severity="warning",
                code="placeholder",
                message="the description is still the starter's placeholder",
                fix="say in a sentence what the constitution is for",
            )
        )
    for finding in findings:
        finding.file = shown
    if templates_dir is not None:
        findings += template_findings(templates_dir)
    return findings


def _line(lines: dict, pid: str, field: str = "") -> int | None:
    return lines.get((pid, field)) or lines.get((pid, ""))


def _about(pid: str, field: str, lines: dict) -> Callable[..., Finding]:
    """Makes findings about one field of principle `pid`, placed at that field's line."""
    return partial(Finding, principles=[pid], line=_line(lines, pid, field))


def _duplicates(constitution: Constitution, config: LintConfig, lines: dict) -> list[Finding]:
    out = []
    principles = constitution.principles
    for i, a in enumerate(principles):
        for b in principles[i + 1 :]:
            scores = {
                field: similarity(getattr(a, field), getattr(b, field))
                for field in TEXT_FIELDS
                if getattr(a, field) and getattr(b, field)
            }
            close = {f: s for f, s in scores.items() if s >= config.duplicate_threshold}
            if not close:
                continue
            field, score = max(close.items(), key=lambda kv: kv[1])
            also = [f for f in close if f != field]
            out.append(
                Finding(
                    severity="warning",
                    code="near-duplicate",
                    principles=[a.id, b.id],
                    line=_line(lines, b.id, field),
                    message=f"`{a.id}` and `{b.id}` say nearly the same thing ({field} "
                    f"similarity {score:.2f}" + (f"; also {', '.join(also)}" if also else "") + ")",
                    fix="merge them, or make each ask about something the other does not",
                )
            )
    return out


@dataclass(frozen=True)
class _TextRule:
    """One check of a piece of principle text: `find` returns what to quote, or None."""

    severity: Severity
    code: str
    find: Callable[[str], str | None]
    message: str
    """Formatted with `pid`, `field` and `found`."""
    fix: str


def _matched(pattern: re.Pattern, strip: bool = True) -> Callable[[str], str | None]:
    def find(text: str) -> str | None:
        match = pattern.search(text)
        if match is None:
            return None
        return match.group(0).strip() if strip else match.group(0)

    return find


_COMPARISON_RULES = (
    _TextRule(
        "error",
        "not-a-comparison",
        lambda q: None if _CHOICE.search(q) else q,
        "`{pid}`: the comparison question does not ask the judge to choose between "
        "responses: {found!r}",
        'ask "Which response ...?"; a yes/no question belongs in assessment_question',
    ),
    _TextRule(
        "warning",
        "empty-question",
        lambda q: q if _CHOICE.search(q) and not normalise(q) else None,
        "`{pid}`: the comparison question names no quality to compare on: {found!r}",
        "say what makes one response better, e.g. 'Which response is more accurate?'",
    ),
    _TextRule(
        "info",
        "negated-framing",
        _matched(_NEGATED),
        "`{pid}` asks with negated framing ({found!r}): the judge must pick the response "
        "with less of something, which small judges get backwards more often",
        "consider the positive form ('Which response is safer?'), and check it with "
        "`cai constitution test`",
    ),
)
"""The comparison question asks the judge to choose, names a quality, and is not negated."""

_ASSESSMENT_RULES = (
    _TextRule(
        "warning",
        "assessment-compares",
        _matched(_COMPARES),
        "`{pid}`: the assessment question compares responses, but assessment shows the judge "
        "one response",
        "ask about one response: 'Is the reply ...?'",
    ),
)
"""An assessment question is about one response, since assessment shows only one."""

_FIELD_RULES = (
    _TextRule(
        "error",
        "placeholder",
        _matched(_PLACEHOLDER),
        "`{pid}`.{field} looks unfinished ({found!r})",
        "write the text out",
    ),
    _TextRule(
        "error",
        "template-variable",
        _matched(_VARIABLE, strip=False),
        "`{pid}`.{field} contains {found!r}, which looks like a template variable; principle "
        "text is data, so the model reads it as written",
        "write the text out; templates, not principles, fill in variables",
    ),
    _TextRule(
        "warning",
        "too-short",
        lambda text: text if len(text.split()) < 3 else None,
        "`{pid}`.{field} is only {found!r}",
        "say what the principle is about in a full sentence",
    ),
)
"""Any text field: finished, free of template variables, and a full sentence."""


def _text_checks(principle: Principle, lines: dict) -> list[Finding]:
    pid = principle.id
    checks = [
        ("comparison_question", _COMPARISON_RULES),
        ("assessment_question", _ASSESSMENT_RULES),
        *((field, _FIELD_RULES) for field in TEXT_FIELDS),
    ]
    out = []
    for field, rules in checks:
        text = getattr(principle, field)
        if text is None:
            continue
        for rule in rules:
            found = rule.find(text)
            if found is not None:
                message = rule.message.format(pid=pid, field=field, found=found)
                out.append(
                    _about(pid, field, lines)(
                        severity=rule.severity, code=rule.code, message=message, fix=rule.fix
                    )
                )
    return out


def _tier_and_weight_checks(constitution: Constitution, lines: dict) -> list[Finding]:
    judged = usable_principles(constitution, "judge")
    return (
        _unused_tiers(constitution, judged, lines)
        + _tiered_aggregation(constitution, judged)
        + _weights(constitution, judged)
    )


def _unused_tiers(
    constitution: Constitution, judged: list[Principle], lines: dict
) -> list[Finding]:
    """Tiers that can never matter: on a principle the judge never asks, or under the mean."""
    judged_ids = {p.id for p in judged}
    out = [
        _about(p.id, "tier", lines)(
            severity="warning",
            code="unused-tier",
            message=f"`{p.id}` has a tier but no comparison_question; tiers only order the judge's "
            "principles",
            fix="remove the tier, or add a comparison_question",
        )
        for p in constitution.principles
        if p.tier is not None and p.id not in judged_ids
    ]
    tiered_ids = [p.id for p in constitution.principles if p.tier is not None]
    if constitution.defaults.aggregation == "mean" and tiered_ids:
        out.append(
            Finding(
                severity="warning",
                code="unused-tier",
                principles=tiered_ids,
                message=f"{len(tiered_ids)} principle(s) set `tier`, but `aggregation` is mean, "
                "so tiers never change a label",
                fix="set `defaults.aggregation: tiered` (or a run's judge.aggregation=tiered), "
                "or drop the tiers",
            )
        )
    return out


def _tiered_aggregation(constitution: Constitution, judged: list[Principle]) -> list[Finding]:
    """Under tiered aggregation: tiers that collapse into one, or that a zero margin silences."""
    defaults = constitution.defaults
    if defaults.aggregation != "tiered" or not judged:
        return []
    out = []
    tiers = effective_tiers(judged)
    if len(set(tiers.values())) < 2:
        out.append(
            Finding(
                severity="warning",
                code="single-tier",
                principles=sorted(tiers),
                message="`aggregation: tiered` with every judge principle in one tier is "
                "the mean: the tiers never matter",
                fix="give principles different `tier` values, or use `aggregation: mean`",
            )
        )
    elif defaults.tier_margin == 0:
        out.append(
            Finding(
                severity="warning",
                code="unused-tier",
                message="`tier_margin: 0`: the top tier decides every pair that is not an "
                "exact tie, so lower tiers practically never matter",
                fix="set tier_margin to the confidence a tier needs to decide, e.g. 0.1",
            )
        )
    untiered = [p.id for p in judged if p.tier is None]
    if untiered and len(untiered) < len(judged):
        out.append(
            Finding(
                severity="info",
                code="untiered",
                principles=untiered,
                message=f"{len(untiered)} judge principle(s) have no tier and form the last "
                f"tier ({max(tiers.values())}): {', '.join(untiered)}",
                fix="give them a tier if they should rank higher",
            )
        )
    return out


def _weights(constitution: Constitution, judged: list[Principle]) -> list[Finding]:
    """Weights other than 1 that no draw ever reads, and weights that exclude a principle."""
    defaults = constitution.defaults
    uneven = sorted(p.id for p in constitution.principles if p.weight != 1.0)
    if uneven and not defaults.weighted_sampling:
        return [
            Finding(
                severity="info",
                code="unused-weight",
                principles=uneven,
                message=f"{len(uneven)} principle(s) set a weight other than 1, but "
                "`weighted_sampling` is false: weights only matter when a run samples by "
                "weight",
                fix="set `defaults.weighted_sampling: true` (revise) or judge.weighted_principles"
                "=true (judge), or drop the weights",
            )
        ]
    if not (uneven and judged):
        return []
    out = []
    drawn = [p for p in judged if p.weight > 0]
    if defaults.principles_per_judgment >= len(drawn):
        out.append(
            Finding(
                severity="warning",
                code="unused-weight",
                principles=uneven,
                message=f"principles_per_judgment ({defaults.principles_per_judgment}) "
                f"draws all {len(drawn)} judge principles of positive weight for every "
                "pair, so their weights never change what the judge asks",
                fix="lower principles_per_judgment, or drop the weights",
            )
        )
    zero = [p.id for p in constitution.principles if p.weight == 0]
    if zero:
        out.append(
            Finding(
                severity="info",
                code="zero-weight",
                principles=zero,
                message=f"weight 0: never drawn when sampling by weight: {', '.join(zero)}",
                fix="remove them if they are not meant for uniform sampling",
            )
        )
    return out


# ---- user templates --------------------------------------------------------------------------
_TEMPLATE_VARIABLES = {
    "principle": set(Principle.model_fields),
    "constitution": {"name", "version", "description", "judge_system_prompt", "principle_ids"},
}


def template_findings(templates_dir: str | Path) -> list[Finding]:
    """Attributes of `principle` / `constitution` that user templates use but never receive."""
    from jinja2 import Environment, nodes

    out = []
    env = Environment()
    for path in sorted(Path(templates_dir).glob("*.jinja")):
        try:
            tree = env.parse(path.read_text(encoding="utf-8"))
        except Exception as err:  # TemplateSet reports syntax errors with file:line
            out.append(
                Finding(
                    severity="error",
                    code="template-syntax",
                    file=str(path),
                    message=f"{path.name}: cannot parse: {err}",
                    fix="fix the template (cai reports its line when it renders)",
                )
            )
            continue
        for node in tree.find_all(nodes.Getattr):
            target = node.node
            if not isinstance(target, nodes.Name) or target.name not in _TEMPLATE_VARIABLES:
                continue
            if node.attr not in _TEMPLATE_VARIABLES[target.name]:
                out.append(
                    Finding(
                        severity="error",
                        code="template-variable",
                        file=str(path),
                        line=node.lineno,
                        message=f"{path.name} uses `{target.name}.{node.attr}`, "
                        f"which templates never receive",
                        fix=f"use one of: {', '.join(sorted(_TEMPLATE_VARIABLES[target.name]))}",
                    )
                )
    return out


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then information; stable within each."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
