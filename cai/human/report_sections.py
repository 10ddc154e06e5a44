"""What the agreement report says, as a list of blocks that report.py renders to Markdown and
HTML alike (so both formats always carry the same numbers)."""

from __future__ import annotations

from dataclasses import dataclass

from cai.human.agreement import AgreementReport
from cai.human.bootstrap import Interval
from cai.tables import counted


@dataclass(frozen=True)
class Block:
    """kind: h2 | p | table | img | ul. `text` for h2 / p / img alt, `key` names an image."""

    kind: str
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    key: str = ""


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fmt_ci(ci: Interval | None) -> str:
    return "n/a" if ci is None else f"[{ci.low:.3f}, {ci.high:.3f}]"


def _table(header: list[str], rows: list[list[str]]) -> Block:
    return Block("table", header=tuple(header), rows=tuple(tuple(r) for r in rows))


def _summary(report: AgreementReport) -> list[Block]:
    ir, pct = report.inter_rater, f"{report.bootstrap.confidence:.0%}"
    rows = [
        ["pairs with both labels", str(report.n_pairs), ""],
        ["decisive pairs (no tie on either side)", str(report.n_decisive), ""],
        ["human ties / AI ties", f"{report.n_human_ties} / {report.n_ai_ties}", ""],
        ["accuracy", fmt(report.accuracy), fmt_ci(report.accuracy_ci)],
        ["Cohen's kappa", fmt(report.cohen_kappa), fmt_ci(report.cohen_kappa_ci)],
        ["expected calibration error", fmt(report.ece), ""],
        [
            "position-disagreement rate (all AI rows)",
            f"{fmt(report.position_disagreement_rate)} (of {report.n_position_known})",
            fmt_ci(report.position_disagreement_ci),
        ],
        ["accuracy when orders agree", fmt(report.accuracy_orders_agree), ""],
        ["accuracy when orders disagree", fmt(report.accuracy_orders_disagree), ""],
        ["pairs rated by several people", f"{ir.n_pairs} ({ir.n_ratings} ratings)", ""],
        ["inter-rater observed agreement", fmt(ir.observed_agreement), ""],
        ["inter-rater Fleiss' kappa", fmt(ir.fleiss_kappa), ""],
    ]
    b = report.bootstrap
    return [
        _table(["metric", "value", f"{pct} interval"], rows),
        Block(
            "p",
            f"Intervals: percentile bootstrap over pairs, {b.n_resamples} resamples, seed "
            f"{b.seed}. How ties count: {report.tie_policy}",
        ),
    ]


def _calibration(report: AgreementReport) -> list[Block]:
    rows = [
        [f"{b.lo:.2f}-{b.hi:.2f}", str(b.count), fmt(b.mean_confidence), fmt(b.mean_outcome)]
        for b in report.calibration
    ]
    return [
        Block("h2", "Calibration"),
        Block("img", "reliability diagram", key="reliability"),
        _table(["confidence bin", "pairs", "mean confidence", "human agreement"], rows),
    ]


def _position(report: AgreementReport) -> list[Block]:
    return [
        Block("h2", "Position bias"),
        Block(
            "p",
            f"The judge reads every pair in both answer orders. On "
            f"{report.n_position_known} AI rows that record both, the two orders picked "
            f"different winners in a share of {fmt(report.position_disagreement_rate)} "
            f"(interval {fmt_ci(report.position_disagreement_ci)}); "
            f"{report.n_position_ties} rows had "
            "an order giving exactly 0.5 (an order tie, not a flip). A judge that reads the "
            "slot instead of the content flips often, and its labels lean on the answer order.",
        ),
    ]


def _length(report: AgreementReport) -> list[Block]:
    lb = report.length_bias
    if lb is None:
        return []
    unit = "characters" if lb.unit == "chars" else "whitespace-separated words"
    rows = [
        [
            f"{b.lo:.0%}-{b.hi:.0%}",
            str(b.n),
            fmt(b.judge_longer_rate),
            fmt(b.human_longer_rate),
        ]
        for b in lb.bins
    ]
    left_out = (
        f"Left out: {counted(lb.n_equal_length, 'pair')} of equal length, {lb.n_undecided} "
        "with a tie on either side."
    )
    if not lb.n_pairs:
        text = f"Length is measured in {unit}. No pair of unequal length was decided by both."
        return [Block("h2", "Length bias"), Block("p", f"{text} {left_out}")]
    return [
        Block("h2", "Length bias"),
        Block(
            "p",
            f"Length is measured in {unit}. On {lb.n_pairs} pairs of unequal length that both "
            f"the judge and the people decided, the judge chose the longer response in a share "
            f"of {fmt(lb.judge_longer_rate)} (interval {fmt_ci(lb.judge_longer_ci)}), the "
            f"people in {fmt(lb.human_longer_rate)} (interval {fmt_ci(lb.human_longer_ci)}); "
            f"0.5 is no preference for length. {left_out} A judge well above the people "
            "rewards length itself, and a policy trained on its labels learns to pad.",
        ),
        Block("img", "length bias by relative length difference", key="length_bias"),
        _table(
            ["relative length difference", "pairs", "judge chose longer", "people chose longer"],
            rows,
        ),
    ]


def _health(report: AgreementReport) -> list[Block]:
    if report.judge_health is None:
        return []
    return [
        Block("h2", "Judge health (all AI rows, no human labels needed)"),
        Block("ul", rows=tuple((line,) for line in report.judge_health.lines())),
    ]


def _self_preference(report: AgreementReport) -> list[Block]:
    sp = report.self_preference
    if sp is None:
        text = (
            "Not checked: the policy model that wrote the responses is unknown (pass "
            "--policy-model, or audit a dataset whose run directory holds summary.json)."
        )
    elif sp.same_family:
        text = (
            f"WARNING: the judge ({', '.join(sp.judge_models)}) and the policy "
            f"({', '.join(sp.policy_models)}) share the model family "
            f"{', '.join(sp.shared_families)}. {sp.note}"
        )
    else:
        text = (
            f"The judge ({', '.join(sp.judge_models)}) and the policy "
            f"({', '.join(sp.policy_models)}) are of different model families."
        )
    return [Block("h2", "Self-preference"), Block("p", text)]


def _principles(report: AgreementReport) -> list[Block]:
    if not report.per_principle:
        return []
    rows = [
        [
            p.principle,
            str(p.n),
            fmt(p.accuracy),
            fmt_ci(p.accuracy_ci),
            fmt(p.cohen_kappa),
            fmt_ci(p.cohen_kappa_ci),
            p.basis,
        ]
        for p in report.per_principle
    ]
    header = ["principle", "decisive pairs", "accuracy", "interval", "kappa", "interval", "basis"]
    return [
        Block("h2", "Agreement per principle"),
        Block("img", "per-principle accuracy", key="principles"),
        _table(header, rows),
    ]


def _panel(report: AgreementReport) -> list[Block]:
    if not report.panel_members:
        return []
    rows = [[m.member, str(m.n), fmt(m.accuracy)] for m in report.panel_members]
    text = (
        "Each judge of the panel against people, on the pairs where neither that judge nor the "
        "people are at exactly 0.5. A member far below the others is worth dropping or "
        "down-weighting (`panel.weights`)."
    )
    return [
        Block("h2", "Panel members against people"),
        Block("p", text),
        _table(["member", "decisive pairs", "accuracy"], rows),
    ]


def report_blocks(report: AgreementReport) -> list[Block]:
    """The whole report, in order."""
    notes = [Block("h2", "Notes"), Block("ul", rows=tuple((n,) for n in report.notes))]
    return [
        *_summary(report),
        *_calibration(report),
        *_position(report),
        *_length(report),
        *_self_preference(report),
        *_health(report),
        *_panel(report),
        *_principles(report),
        *(notes if report.notes else []),
    ]
