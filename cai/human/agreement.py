"""How far the AI judge can be trusted: its labels measured against human labels on the
same pairs (joined by `pair_key`, whatever order each source stored the responses in).

Orientation: for kappa, each pair's responses are ordered alphabetically ("first" /
"second"), which is independent of both sources. For calibration the AI's own choice is the
reference: confidence = the AI's prob_chosen, outcome = the human probability that the AI's
chosen response is better (a tie counts as 0.5, several raters are averaged).

Optional AI columns used when present: `prob_chosen_by_order` (one probability per answer order
that the chosen response wins) and `prob_chosen_by_principle` (one per entry of `principles`).
Without them, position disagreement falls back to `orders_agree` and per-principle agreement
to the pair's overall label.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from cai.errors import InputError
from cai.human.pairs import (
    check_preference_rows,
    prob_first,
    prompt_messages,
    response_text,
    row_key,
)
from cai.io import counted
from cai.records import stable_id

Label = str  # "first" | "second" | "tie"


def label_of(p: float) -> Label:
    """Hard label from the probability that the first response wins."""
    return "first" if p > 0.5 else "second" if p < 0.5 else "tie"


def cohen_kappa(x: list[Label], y: list[Label]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined (p_e = 1)."""
    if len(x) != len(y):
        raise ValueError("both raters must label the same items")
    n = len(x)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(x, y, strict=True)) / n
    cx, cy = Counter(x), Counter(y)
    expected = sum(cx[c] * cy[c] for c in set(cx) | set(cy)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


class CalibrationBin(BaseModel):
    lo: float
    hi: float
    count: int
    mean_confidence: float | None
    mean_outcome: float | None


def calibration_bins(
    confidence: list[float], outcome: list[float], n_bins: int = 5, lo: float = 0.5, hi: float = 1.0
) -> tuple[float | None, list[CalibrationBin]]:
    """Expected calibration error and its bins: ECE = sum_b n_b/N |mean conf_b - mean outcome_b|.
    Bins split [lo, hi] evenly; a value equal to `hi` falls in the last bin."""
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    width = (hi - lo) / n_bins
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(confidence):
        b = min(n_bins - 1, max(0, int((c - lo) / width + 1e-9)))
        members[b].append(i)
    bins, ece, n = [], 0.0, len(confidence)
    for b, idx in enumerate(members):
        mc = sum(confidence[i] for i in idx) / len(idx) if idx else None
        mo = sum(outcome[i] for i in idx) / len(idx) if idx else None
        if idx:
            ece += len(idx) / n * abs(mc - mo)
        bins.append(
            CalibrationBin(
                lo=lo + b * width,
                hi=lo + (b + 1) * width,
                count=len(idx),
                mean_confidence=mc,
                mean_outcome=mo,
            )
        )
    return (ece if n else None), bins


def fleiss_kappa(items: list[list[Label]]) -> tuple[float | None, float | None]:
    """(Fleiss' kappa, mean observed agreement) over items rated by two or more raters each
    (the usual variable-raters form: P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)))."""
    items = [labels for labels in items if len(labels) >= 2]
    if not items:
        return None, None
    per_item, totals, n_total = [], Counter(), 0
    for labels in items:
        counts = Counter(labels)
        n_i = len(labels)
        per_item.append((sum(v * v for v in counts.values()) - n_i) / (n_i * (n_i - 1)))
        totals.update(counts)
        n_total += n_i
    observed = sum(per_item) / len(per_item)
    expected = sum((v / n_total) ** 2 for v in totals.values())
    kappa = None if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    return kappa, observed


class PrincipleAgreement(BaseModel):
    principle: str
    n: int
    """Pairs that used this principle and have a decisive human label."""
    accuracy: float | None
    basis: str
    """"principle probability" (from prob_chosen_by_principle) or "pair label"."""


class InterRater(BaseModel):
    n_pairs: int
    n_ratings: int
    observed_agreement: float | None
    fleiss_kappa: float | None


class AgreementReport(BaseModel):
    n_ai_rows: int
    n_human_rows: int
    n_pairs: int
    """Pairs carrying both an AI and a human label."""
    n_decisive: int
    """Joined pairs where neither the human (mean) label nor the AI is a tie."""
    n_human_ties: int
    n_ai_ties: int
    accuracy: float | None
    cohen_kappa: float | None
    ece: float | None
    calibration: list[CalibrationBin]
    position_disagreement_rate: float | None
    """Share of all AI rows whose answer orders disagree (rows that record it)."""
    n_position_known: int
    accuracy_orders_agree: float | None
    accuracy_orders_disagree: float | None
    per_principle: list[PrincipleAgreement]
    inter_rater: InterRater
    notes: list[str] = Field(default_factory=list)


def orders_disagree(row: dict[str, Any]) -> bool | None:
    """Whether the AI's answer orders disagreed: `orders_agree`, else `prob_chosen_by_order`."""
    if row.get("orders_agree") is not None:
        return not bool(row["orders_agree"])
    orders = row.get("prob_chosen_by_order") or []
    if len(orders) >= 2:
        return any(p > 0.5 for p in orders) and any(p < 0.5 for p in orders)
    return None


def _accuracy(pairs: list[tuple[Label, Label]]) -> tuple[float | None, int]:
    decisive = [(a, h) for a, h in pairs if a != "tie" and h != "tie"]
    if not decisive:
        return None, 0
    return sum(a == h for a, h in decisive) / len(decisive), len(decisive)


def _ai_chosen_is_first(row: dict[str, Any]) -> bool:
    return response_text(row["chosen"]) <= response_text(row["rejected"])


class NoSharedPairsError(InputError):
    """The AI and human datasets have no pair in common, so there is nothing to compare."""


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def _loose_key(row: dict[str, Any]) -> str:
    """A pair key that ignores whitespace and line endings (to explain a failed match)."""
    prompt = [
        {"role": m["role"], "content": _squeeze(m["content"])}
        for m in prompt_messages(row["prompt"])
    ]
    texts = sorted(_squeeze(response_text(row[c])) for c in ("chosen", "rejected"))
    return stable_id(prompt, texts)


def _prompt_key(row: dict[str, Any]) -> str:
    return stable_id(prompt_messages(row["prompt"]))


def _no_shared_pairs(
    ai_rows: list[dict[str, Any]],
    human_rows: list[dict[str, Any]],
    names: tuple[str, str],
    notes: Sequence[str] = (),
) -> NoSharedPairsError:
    """Why no pair matched: how many pairs and prompts each side has, how many prompts both
    share, and whether ignoring whitespace would have matched some."""
    ai_pairs = {row_key(r) for r in ai_rows}
    human_pairs = {row_key(r) for r in human_rows}
    ai_prompts = {_prompt_key(r) for r in ai_rows}
    shared_prompts = ai_prompts & {_prompt_key(r) for r in human_rows}
    loose = {_loose_key(r) for r in ai_rows} & {_loose_key(r) for r in human_rows}
    parts = [
        f"no pair is in both datasets: the {names[0]} has {counted(len(ai_pairs), 'pair')}, "
        f"the {names[1]} {counted(len(human_pairs), 'pair')}",
        f"{counted(len(shared_prompts), 'prompt')} in both, but never with the same two responses"
        if shared_prompts
        else "no prompt appears in both",
    ]
    if loose:
        parts.append(
            f"{counted(len(loose), 'pair')} would match if whitespace and line endings were ignored"
        )
    parts.extend(notes)
    return NoSharedPairsError(
        "; ".join(parts),
        fix="A pair id is computed from the prompt and both responses, so the texts must be "
        "identical: check whitespace and line endings, the prompt format (a plain string is one "
        "user turn), and that people labelled the samples of this AI dataset.",
    )


def compute_agreement(
    ai_rows: list[dict[str, Any]],
    human_rows: list[dict[str, Any]],
    n_bins: int = 5,
    names: tuple[str, str] = ("AI dataset", "human dataset"),
) -> AgreementReport:
    """All agreement metrics between an AI-labelled and a human-labelled dataset (`names`
    name them in errors). Raises `NoSharedPairsError` when no pair carries both labels."""
    check_preference_rows(ai_rows, names[0])
    check_preference_rows(human_rows, names[1])
    notes: list[str] = []
    human_in_ai = [row for row in ai_rows if row.get("source") == "human"]
    if human_in_ai:
        ai_rows = [row for row in ai_rows if row.get("source") != "human"]
        notes.append(f"{len(human_in_ai)} rows with source=human in the AI dataset ignored")
    ai_by_key: dict[str, dict[str, Any]] = {}
    for row in ai_rows:
        ai_by_key.setdefault(row_key(row), row)
    if len(ai_by_key) < len(ai_rows):
        notes.append(f"{len(ai_rows) - len(ai_by_key)} duplicate AI rows ignored (first kept)")
    human_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in human_rows:
        human_by_key[row_key(row)].append(row)

    joined = [k for k in ai_by_key if k in human_by_key]
    if not joined:
        raise _no_shared_pairs(ai_rows, human_rows, names, notes)
    label_pairs: list[tuple[Label, Label]] = []
    split: dict[bool, list[tuple[Label, Label]]] = {True: [], False: []}
    confidence, outcome = [], []
    principle_votes: dict[str, list[tuple[Label, Label]]] = defaultdict(list)
    has_principle_probs = False
    for key in joined:
        ai = ai_by_key[key]
        h_first = sum(prob_first(r) for r in human_by_key[key]) / len(human_by_key[key])
        pair = (label_of(prob_first(ai)), label_of(h_first))
        label_pairs.append(pair)
        disagree = orders_disagree(ai)
        if disagree is not None:
            split[not disagree].append(pair)
        p_chosen = float(ai["prob_chosen"])
        y_chosen = h_first if _ai_chosen_is_first(ai) else 1.0 - h_first
        confidence.append(max(p_chosen, 1.0 - p_chosen))
        outcome.append(y_chosen if p_chosen >= 0.5 else 1.0 - y_chosen)
        principles = list(ai.get("principles") or [])
        per_p = ai.get("prob_chosen_by_principle")
        use_probs = per_p is not None and len(per_p) == len(principles) and principles
        has_principle_probs |= bool(use_probs)
        human_on_chosen = label_of(y_chosen)  # "first" here means: the AI's chosen wins
        for j, principle in enumerate(principles):
            q = float(per_p[j]) if use_probs else p_chosen
            principle_votes[principle].append((label_of(q), human_on_chosen))

    accuracy, n_decisive = _accuracy(label_pairs)
    ece, bins = calibration_bins(confidence, outcome, n_bins=n_bins)
    known = [d for d in (orders_disagree(r) for r in ai_rows) if d is not None]
    per_principle = []
    for principle in sorted(principle_votes):
        acc, n = _accuracy(principle_votes[principle])
        basis = "principle probability" if has_principle_probs else "pair label"
        per_principle.append(
            PrincipleAgreement(principle=principle, n=n, accuracy=acc, basis=basis)
        )
    if not has_principle_probs and principle_votes:
        notes.append(
            "no prob_chosen_by_principle column: per-principle agreement uses each pair's label"
        )

    multi = [
        [label_of(prob_first(r)) for r in rows] for rows in human_by_key.values() if len(rows) >= 2
    ]
    kappa_f, observed = fleiss_kappa(multi)
    return AgreementReport(
        n_ai_rows=len(ai_rows),
        n_human_rows=len(human_rows),
        n_pairs=len(joined),
        n_decisive=n_decisive,
        n_human_ties=sum(h == "tie" for _, h in label_pairs),
        n_ai_ties=sum(a == "tie" for a, _ in label_pairs),
        accuracy=accuracy,
        cohen_kappa=cohen_kappa([a for a, _ in label_pairs], [h for _, h in label_pairs]),
        ece=ece,
        calibration=bins,
        position_disagreement_rate=(sum(known) / len(known)) if known else None,
        n_position_known=len(known),
        accuracy_orders_agree=_accuracy(split[True])[0],
        accuracy_orders_disagree=_accuracy(split[False])[0],
        per_principle=per_principle,
        inter_rater=InterRater(
            n_pairs=len(multi),
            n_ratings=sum(len(m) for m in multi),
            observed_agreement=observed,
            fleiss_kappa=kappa_f,
        ),
        notes=notes,
    )
