"""`cai constitution induce`: a constitution learned from human preferences.

Inverse Constitutional AI (Findeis et al., ICLR 2025): compress a set of human preference
pairs into the few principles that explain them.

1. Split the pairs (seeded) into held-in and held-out.
2. Propose: for each sampled held-in pair, an LLM is shown the two responses and which one
   people preferred, and writes one comparison question that would explain the choice
   (`prompts/induce.jinja`).
3. Deduplicate: proposals that say the same thing (normalised text similarity) are merged;
   the number of pairs behind a candidate is its support.
4. Test: each candidate is judged alone, as a one-principle constitution, on every held-in
   pair (log-prob labels, both answer orders). Its coverage is the share of pairs it decides
   (|p - 0.5| >= coverage_margin); its agreement is the share of those where it picks what
   people picked.
5. Keep the candidates whose agreement and coverage clear the thresholds, best first, and
   write them as a constitution (agreement and support as a comment on each principle) that
   validates; judge the held-out pairs with it for an honest report.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from cai.backends.base import Backend, GenerationParams, Message
from cai.constitution.loading import load_constitution
from cai.constitution.models import Constitution, ConstitutionDefaults, Principle
from cai.constitution_tools.similarity import cluster, normalise
from cai.errors import InputError
from cai.files import atomic_write_text
from cai.human.pairs import prob_first, prompt_messages, response_text, row_key
from cai.judge.compare import FixedPrinciplesJudge, JudgeConfig, PairToJudge

if TYPE_CHECKING:
    from cai.templates import TemplateSet

JUDGE_PROMPT = (
    "You are a careful, fair judge. You compare assistant responses against one principle "
    "and answer with a single letter."
)


class InduceConfig(BaseModel):
    """How many pairs propose, how candidates are merged, and what a kept principle must reach."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    holdout: float = Field(0.25, ge=0.0, lt=1.0)
    """Share of pairs held out of proposing and selection, for the report."""
    sample: int | None = Field(64, ge=1)
    """Held-in pairs that propose principles (a seeded sample); None = all of them."""
    proposals_per_pair: int = Field(1, ge=1, le=8)
    proposal: GenerationParams = GenerationParams(temperature=0.0, max_tokens=64)
    dedupe_threshold: float = Field(0.7, gt=0.0, le=1.0)
    """Normalised similarity at or above which two proposals are one candidate."""
    max_candidates: int = Field(32, ge=1)
    """Candidates tested (those with the most support)."""
    coverage_margin: float = Field(0.05, ge=0.0, lt=0.5)
    """A candidate decides a pair when its |p - 0.5| is at least this."""
    min_agreement: float = Field(0.6, ge=0.0, le=1.0)
    min_coverage: float = Field(0.1, ge=0.0, le=1.0)
    max_principles: int = Field(10, ge=1)


class HumanPair(BaseModel):
    """A human preference with a winner: `chosen` beat `rejected` with probability `prob`."""

    key: str
    conversation: list[Message]
    chosen: str
    rejected: str
    prob: float


class Candidate(BaseModel):
    id: str
    text: str
    support: int
    """Proposals merged into this candidate."""
    variants: list[str] = Field(default_factory=list)
    judged: int = 0
    covered: int = 0
    agreed: int = 0
    kept: bool = False
    reason: str = ""

    @property
    def coverage(self) -> float:
        return self.covered / self.judged if self.judged else 0.0

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.covered if self.covered else None


class HeldOut(BaseModel):
    pairs: int = 0
    decided: int = 0
    agreed: int = 0
    per_principle: dict[str, list[int]] = Field(default_factory=dict)
    """principle -> [agreed, decided] on held-out pairs."""

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.decided if self.decided else None


class InduceResult(BaseModel):
    source: str
    judge_model: str
    config: InduceConfig
    pairs: int
    ties_skipped: int
    held_in: int
    held_out: int
    proposing_pairs: int
    proposals: int
    unusable_proposals: list[str] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)
    held_out_report: HeldOut | None = None
    constitution_yaml: str | None = None

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kept]


# ---- input ---------------------------------------------------------------------------------------
def human_pairs(rows: list[dict[str, Any]]) -> tuple[list[HumanPair], int]:
    """Preference rows as pairs with a winner (raters of one pair averaged); and the ties."""

    merged: dict[str, list[float]] = {}
    first_row: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row_key(row)
        merged.setdefault(key, []).append(prob_first(row))
        first_row.setdefault(key, row)
    pairs, ties = [], 0
    for key, probs in merged.items():
        row = first_row[key]
        p_first = sum(probs) / len(probs)
        texts = sorted([response_text(row["chosen"]), response_text(row["rejected"])])
        if abs(p_first - 0.5) < 1e-9:
            ties += 1
            continue
        chosen, rejected = (texts[0], texts[1]) if p_first > 0.5 else (texts[1], texts[0])
        pairs.append(
            HumanPair(
                key=key,
                conversation=prompt_messages(row["prompt"]),
                chosen=chosen,
                rejected=rejected,
                prob=max(p_first, 1.0 - p_first),
            )
        )
    return pairs, ties


def _rank(seed: int, key: str, salt: str) -> str:
    return hashlib.sha256(f"{seed}|{salt}|{key}".encode()).hexdigest()


def split_pairs(
    pairs: list[HumanPair], holdout: float, seed: int
) -> tuple[list[HumanPair], list[HumanPair]]:
    """(held-in, held-out), seeded by pair content, so the split survives reordering."""
    ordered = sorted(pairs, key=lambda p: _rank(seed, p.key, "split"))
    n_out = round(holdout * len(pairs))
    if holdout > 0 and len(pairs) >= 2:
        n_out = min(max(n_out, 1), len(pairs) - 1)
    return ordered[n_out:], ordered[:n_out]


# ---- proposing --------------------------------------------------------------------------------
_LEAD = re.compile(r"^\s*(?:[-*•]+|\d+[.)]|principle\s*\d*\s*:|question\s*:|answer\s*:)\s*", re.I)
_QUESTION = re.compile(r"\bwhich\s+(?:response|reply|answer|one)\b[^?\n\"”]*\??", re.I)
_IMPERATIVE = re.compile(
    r"^(?:please\s+)?(?:select|choose|prefer|pick)\s+the\s+(?:response|reply|answer)\s+"
    r"(?:that|which)\s+",
    re.I,
)
_PAIR_SPECIFIC = re.compile(
    r"\((?:A|B)\)|\b(?:response|reply|answer)\s+(?:A|B)\b|\bfirst\b|\bsecond\b"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
MAX_STATEMENT_WORDS = 30


def parse_principle(text: str) -> str | None:
    """A proposal as a comparison question, or None when it holds no usable principle.

    Reads the first non-empty line without list markers, labels and quotes. A "Which
    response ...?" question in it is taken up to its question mark; "Select the response
    that ..." becomes "Which response ...?"; a short statement becomes "Which response
    better follows this principle: ...?". Refused: questions that name no quality ("Which
    response is better?"), statements about this pair ("(B) is ..."), rambling paragraphs.
    """

    line = next((raw.strip() for raw in text.splitlines() if raw.strip()), "")
    previous = None
    while previous != line:  # "- Principle: ..." has two leads
        previous, line = line, _LEAD.sub("", line).strip().strip("\"'`“”").strip()
    if _IMPERATIVE.match(line):
        line = "Which response " + _IMPERATIVE.sub("", line)
    found = _QUESTION.search(line)
    if found:
        question = found.group(0).strip()
    else:
        sentence = _SENTENCE_END.split(line, maxsplit=1)[0].strip()
        words = len(sentence.split())
        if _PAIR_SPECIFIC.search(sentence) or not 3 <= words <= MAX_STATEMENT_WORDS:
            return None
        question = f"Which response better follows this principle: {sentence.rstrip('.?!')}"
    question = question[0].upper() + question[1:]
    question = question.rstrip(".!?: ") + "?"
    content = [w for w in normalise(question) if w not in ("follows", "principle")]
    if not content or len(question) > 300:
        return None
    return question


def propose(
    backend: Backend,
    templates: TemplateSet,
    pairs: list[HumanPair],
    config: InduceConfig,
) -> tuple[list[tuple[str, str]], list[str]]:
    """(pair key, proposed question) for every usable proposal; and the unusable raw texts."""
    prompts = []
    for pair in pairs:
        # Which label the preferred response gets is seeded per pair, so the proposer
        # cannot learn "A wins" from the layout.
        chosen_first = int(_rank(config.seed, pair.key, "layout"), 16) % 2 == 0
        responses = [pair.chosen, pair.rejected] if chosen_first else [pair.rejected, pair.chosen]
        rendered = templates.render(
            "induce",
            conversation=pair.conversation,
            responses=responses,
            labels=["A", "B"],
            preferred="A" if chosen_first else "B",
        )
        prompts.append(list(rendered.messages))
    params = config.proposal.model_copy(
        update={"n": config.proposals_per_pair, "seed": config.proposal.seed or config.seed}
    )
    generations = backend.generate_chat(prompts, params) if prompts else []
    found, unusable = [], []
    for pair, generation in zip(pairs, generations, strict=True):
        for raw in generation.texts:
            question = parse_principle(raw)
            if question is None:
                unusable.append(raw)
            else:
                found.append((pair.key, question))
    return found, unusable


def merge_proposals(proposals: list[tuple[str, str]], threshold: float) -> list[Candidate]:
    """Proposals grouped by similarity; each group's most common wording represents it."""
    from collections import Counter

    texts = [q for _, q in proposals]
    out = []
    for group in cluster(texts, threshold):
        wordings = Counter(texts[i] for i in group)
        best = max(wordings, key=lambda t: (wordings[t], -texts.index(t)))
        out.append(Candidate(id="", text=best, support=len(group), variants=sorted(wordings)))
    out.sort(key=lambda c: (-c.support, texts.index(c.text)))
    for index, candidate in enumerate(out):
        candidate.id = f"candidate-{index + 1}"
    return out


# ---- testing ------------------------------------------------------------------------------------
def _constitution(name: str, questions: dict[str, str]) -> Constitution:
    constitution = Constitution(
        name=name,
        description="candidate principles under test",
        principles=[Principle(id=pid, comparison_question=q) for pid, q in questions.items()],
        judge_system_prompt=JUDGE_PROMPT,
        defaults=ConstitutionDefaults(principles_per_judgment=1),
    )
    constitution.content_hash = constitution.compute_hash()
    return constitution


def _judge(
    backend: Backend,
    constitution: Constitution,
    templates: TemplateSet,
    judge_config: JudgeConfig | None,
    work: list[tuple[str, HumanPair, list[str]]],
) -> dict[str, Any]:
    """Judge (key, pair, principle ids) items in one batch; chosen is response a."""

    config = (judge_config or JudgeConfig()).model_copy(
        update={"both_orders": True, "aggregation": "mean"}
    )
    judge = FixedPrinciplesJudge(
        backend, constitution, templates, config, {key: ids for key, _, ids in work}
    )
    items = [
        PairToJudge(
            key=key,
            conversation=pair.conversation,
            response_a=pair.chosen,
            response_b=pair.rejected,
        )
        for key, pair, _ in work
    ]
    return {j.key: j for j in judge.judge_pairs(items)}


def score_candidates(
    backend: Backend,
    templates: TemplateSet,
    candidates: list[Candidate],
    pairs: list[HumanPair],
    config: InduceConfig,
    judge_config: JudgeConfig | None = None,
) -> None:
    """Judge every held-in pair with each candidate alone; fill in coverage and agreement."""
    if not candidates or not pairs:
        return
    constitution = _constitution("induce-candidates", {c.id: c.text for c in candidates})
    work = [(f"{c.id}|{p.key}", p, [c.id]) for c in candidates for p in pairs]
    judged = _judge(backend, constitution, templates, judge_config, work)
    for candidate in candidates:
        for pair in pairs:
            judgment = judged[f"{candidate.id}|{pair.key}"]
            candidate.judged += 1
            if not judgment.ok or judgment.prob_a is None:
                continue
            if abs(judgment.prob_a - 0.5) >= config.coverage_margin:
                candidate.covered += 1
                candidate.agreed += int(judgment.prob_a > 0.5)


def select(candidates: list[Candidate], config: InduceConfig) -> None:
    """Mark the candidates to keep (best agreement, then coverage, then support), with why not."""
    passing = []
    for c in candidates:
        agreement = c.agreement
        if agreement is None or c.coverage < config.min_coverage:
            c.reason = f"coverage {c.coverage:.0%} < {config.min_coverage:.0%}"
        elif agreement < config.min_agreement:
            c.reason = f"agreement {agreement:.0%} < {config.min_agreement:.0%}"
        else:
            passing.append(c)
    passing.sort(key=lambda c: (-(c.agreement or 0.0), -c.coverage, -c.support, c.id))
    for rank, c in enumerate(passing):
        if rank < config.max_principles:
            c.kept, c.reason = True, "kept"
        else:
            c.reason = f"beyond max_principles ({config.max_principles})"


def evaluate_held_out(
    backend: Backend,
    templates: TemplateSet,
    kept: list[Candidate],
    pairs: list[HumanPair],
    judge_config: JudgeConfig | None = None,
) -> HeldOut:
    """Agreement with people of the induced principles (mean of all) on held-out pairs."""
    report = HeldOut(pairs=len(pairs), per_principle={c.id: [0, 0] for c in kept})
    if not kept or not pairs:
        return report
    constitution = _constitution("induced", {c.id: c.text for c in kept})
    ids = [c.id for c in kept]
    judged = _judge(
        backend, constitution, templates, judge_config, [(p.key, p, ids) for p in pairs]
    )
    for pair in pairs:
        judgment = judged[pair.key]
        if not judgment.ok or judgment.prob_a is None:
            continue
        if abs(judgment.prob_a - 0.5) > 1e-9:
            report.decided += 1
            report.agreed += int(judgment.prob_a > 0.5)
        for pj in judgment.per_principle:
            if pj.prob_a is not None and abs(pj.prob_a - 0.5) > 1e-9:
                counts = report.per_principle[pj.principle]
                counts[0] += int(pj.prob_a > 0.5)
                counts[1] += 1
    return report


# ---- the whole loop -------------------------------------------------------------------------------
def induce(
    backend: Backend,
    rows: list[dict[str, Any]],
    templates: TemplateSet,
    config: InduceConfig | None = None,
    *,
    name: str = "induced",
    source: str = "",
    judge_config: JudgeConfig | None = None,
) -> InduceResult:
    """Propose, merge, test and select principles from human preference rows."""
    config = config or InduceConfig()
    pairs, ties = human_pairs(rows)
    if len(pairs) < 2:
        raise InputError(
            f"induction needs at least 2 human pairs with a winner; the file has {len(pairs)} "
            f"({ties} tie(s) left out)",
            file=source or None,
            fix="Give more labelled pairs (`cai import-human` brings labels in).",
        )
    held_in, held_out = split_pairs(pairs, config.holdout, config.seed)
    proposing = sorted(held_in, key=lambda p: _rank(config.seed, p.key, "sample"))
    if config.sample is not None:
        proposing = proposing[: config.sample]
    found, unusable = propose(backend, templates, proposing, config)
    candidates = merge_proposals(found, config.dedupe_threshold)
    for extra in candidates[config.max_candidates :]:
        extra.reason = f"not tested: beyond max_candidates ({config.max_candidates})"
    tested = candidates[: config.max_candidates]
    score_candidates(backend, templates, tested, held_in, config, judge_config)
    select(tested, config)
    _name_kept(candidates)
    kept = [c for c in candidates if c.kept]
    result = InduceResult(
        source=source,
        judge_model=getattr(backend, "model_id", type(backend).__name__),
        config=config,
        pairs=len(pairs),
        ties_skipped=ties,
        held_in=len(held_in),
        held_out=len(held_out),
        proposing_pairs=len(proposing),
        proposals=len(found) + len(unusable),
        unusable_proposals=unusable,
        candidates=candidates,
    )
    result.held_out_report = evaluate_held_out(backend, templates, kept, held_out, judge_config)
    if kept:
        result.constitution_yaml = constitution_yaml(result, name)
    return result


def _name_kept(candidates: list[Candidate]) -> None:
    """Readable ids for the kept candidates, from their content words (unique)."""

    used: set[str] = set()
    for c in candidates:
        if not c.kept:
            continue
        words = [w for w in normalise(c.text) if w not in ("follows", "principle")][:4]
        base = re.sub(r"[^a-z0-9-]", "", "-".join(words).replace("'", "")) or "principle"
        pid, n = base, 2
        while pid in used:
            pid, n = f"{base}-{n}", n + 1
        used.add(pid)
        c.id = pid


def constitution_yaml(result: InduceResult, name: str) -> str:
    """The induced constitution as commented YAML (each principle's evidence above it)."""
    kept = sorted(result.kept, key=lambda c: (-(c.agreement or 0.0), -c.coverage))
    held = result.held_out_report
    lines = [
        f"# Induced by `cai constitution induce` from {result.pairs} human pairs"
        + (f" in {result.source}" if result.source else "")
        + f" (judge: {result.judge_model}).",
        f"# {result.proposals} proposals from {result.proposing_pairs} held-in pairs, "
        f"{len(result.candidates)} candidates, {len(kept)} kept.",
    ]
    if held is not None and held.agreement is not None:
        lines.append(
            f"# Held-out: agrees with people on {held.agreement:.0%} of the {held.decided} "
            f"of {held.pairs} held-out pairs it decides."
        )
    lines += [
        f"name: {json.dumps(name)}",
        'version: "0.1"',
        "description: >",
        f"  Principles induced from human preference pairs ({result.pairs} pairs).",
        f"judge_system_prompt: {json.dumps(JUDGE_PROMPT)}",
        "defaults:",
        f"  principles_per_judgment: {min(3, len(kept))}",
        "",
        "principles:",
    ]
    for c in kept:
        lines += [
            f"  # agreement {c.agreement:.2f} on the {c.covered} of {c.judged} held-in pairs it "
            f"decides (coverage {c.coverage:.2f}); support: {c.support} proposal(s)",
            f"  - id: {c.id}",
            "    tags: [induced]",
            f"    comparison_question: {json.dumps(c.text, ensure_ascii=False)}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def report_paths(out: str | Path) -> dict[str, Path]:
    """Where `write_result` puts the report beside the constitution file `out`."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".yaml", ".yml") else out
    return {
        "json": stem.with_name(stem.name + ".report.json"),
        "markdown": stem.with_name(stem.name + ".report.md"),
    }


def write_result(result: InduceResult, out: str | Path) -> dict[str, Path]:
    """The constitution (checked to load) and the report (.report.md, .report.json) beside it."""

    out = Path(out)
    paths = report_paths(out)
    atomic_write_text(paths["json"], result.model_dump_json(indent=2))
    atomic_write_text(paths["markdown"], render_report(result))
    if result.constitution_yaml is not None:
        paths["constitution"] = atomic_write_text(out, result.constitution_yaml)
        load_constitution(out)  # what we write must validate; a failure here is a bug
    return paths


def render_report(result: InduceResult) -> str:
    """The Markdown report: the split, every candidate with its numbers, held-out results."""
    cfg = result.config
    lines = [
        "# Induced constitution",
        "",
        f"- source: `{result.source}`; judge: `{result.judge_model}`",
        f"- pairs: {result.pairs} with a winner ({result.ties_skipped} ties left out); "
        f"held-in {result.held_in}, held-out {result.held_out} (seed {cfg.seed})",
        f"- proposals: {result.proposals} from {result.proposing_pairs} pairs "
        f"({len(result.unusable_proposals)} unusable), merged into "
        f"{len(result.candidates)} candidates",
        f"- kept when agreement >= {cfg.min_agreement:.2f} and coverage >= "
        f"{cfg.min_coverage:.2f} (a pair is decided when abs(p - 0.5) >= "
        f"{cfg.coverage_margin}); at most {cfg.max_principles}",
        "",
        "## Candidates (held-in pairs)",
        "",
        "| id | principle | support | coverage | agreement | outcome |",
        "|---|---|---|---|---|---|",
    ]
    for c in result.candidates:
        agreement = "n/a" if c.agreement is None else f"{c.agreement:.2f}"
        lines.append(
            f"| {c.id} | {c.text} | {c.support} | {c.coverage:.2f} | {agreement} | {c.reason} |"
        )
    held = result.held_out_report
    lines += ["", "## Held-out pairs", ""]
    if held is None or not held.pairs:
        lines.append("No held-out pairs (holdout 0).")
    elif not result.kept:
        lines.append("No principle was kept, so nothing was judged.")
    else:
        overall = "n/a" if held.agreement is None else f"{held.agreement:.0%}"
        lines.append(
            f"The induced constitution (mean over its principles) agrees with people on "
            f"{overall} of the {held.decided} of {held.pairs} held-out pairs it decides."
        )
        lines += ["", "| principle | agrees | decided |", "|---|---|---|"]
        for pid, (agreed, decided) in held.per_principle.items():
            lines.append(f"| {pid} | {agreed} | {decided} |")
    if result.unusable_proposals:
        lines += ["", "## Unusable proposals", ""]
        lines += [
            f"- {json.dumps(text[:200], ensure_ascii=False)}"
            for text in result.unusable_proposals[:20]
        ]
    lines.append("")
    return "\n".join(lines)
