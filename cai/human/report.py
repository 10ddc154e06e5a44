"""The agreement report as files: agreement.json (all numbers), report.md and a
self-contained report.html, with the reliability diagram and the per-principle chart."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from cai.human.agreement import AgreementReport
from cai.human.plots import principle_chart, reliability_diagram


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _summary_rows(report: AgreementReport) -> list[tuple[str, str]]:
    ir = report.inter_rater
    return [
        ("pairs with both labels", str(report.n_pairs)),
        ("decisive pairs (no tie on either side)", str(report.n_decisive)),
        ("human ties / AI ties", f"{report.n_human_ties} / {report.n_ai_ties}"),
        ("accuracy", _fmt(report.accuracy)),
        ("Cohen's kappa", _fmt(report.cohen_kappa)),
        ("expected calibration error", _fmt(report.ece)),
        (
            "position-disagreement rate (all AI rows)",
            f"{_fmt(report.position_disagreement_rate)} (of {report.n_position_known})",
        ),
        ("accuracy when orders agree", _fmt(report.accuracy_orders_agree)),
        ("accuracy when orders disagree", _fmt(report.accuracy_orders_disagree)),
        ("pairs rated by several people", f"{ir.n_pairs} ({ir.n_ratings} ratings)"),
        ("inter-rater observed agreement", _fmt(ir.observed_agreement)),
        ("inter-rater Fleiss' kappa", _fmt(ir.fleiss_kappa)),
    ]


def render_markdown(report: AgreementReport, images: dict[str, str]) -> str:
    lines = ["# AI judge vs human labels", ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _summary_rows(report)]
    lines += ["", "## Calibration", ""]
    if "reliability" in images:
        lines += [f"![reliability diagram]({images['reliability']})", ""]
    lines += ["| confidence bin | pairs | mean confidence | human agreement |", "|---|---|---|---|"]
    for b in report.calibration:
        lines.append(
            f"| {b.lo:.2f}-{b.hi:.2f} | {b.count} | {_fmt(b.mean_confidence)} | "
            f"{_fmt(b.mean_outcome)} |"
        )
    if report.per_principle:
        lines += ["", "## Agreement per principle", ""]
        if "principles" in images:
            lines += [f"![per-principle accuracy]({images['principles']})", ""]
        lines += ["| principle | decisive pairs | accuracy | basis |", "|---|---|---|---|"]
        for p in report.per_principle:
            lines.append(f"| {p.principle} | {p.n} | {_fmt(p.accuracy)} | {p.basis} |")
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def render_html(report: AgreementReport, images: dict[str, Path]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>AI judge vs human labels</title>",
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}</style></head><body>",
        "<h1>AI judge vs human labels</h1>",
        _table(["metric", "value"], [list(r) for r in _summary_rows(report)]),
        "<h2>Calibration</h2>",
    ]
    if "reliability" in images:
        parts.append(_img(images["reliability"], "reliability diagram"))
    parts.append(
        _table(
            ["confidence bin", "pairs", "mean confidence", "human agreement"],
            [
                [
                    f"{b.lo:.2f}-{b.hi:.2f}",
                    str(b.count),
                    _fmt(b.mean_confidence),
                    _fmt(b.mean_outcome),
                ]
                for b in report.calibration
            ],
        )
    )
    if report.per_principle:
        parts.append("<h2>Agreement per principle</h2>")
        if "principles" in images:
            parts.append(_img(images["principles"], "per-principle accuracy"))
        parts.append(
            _table(
                ["principle", "decisive pairs", "accuracy", "basis"],
                [[p.principle, str(p.n), _fmt(p.accuracy), p.basis] for p in report.per_principle],
            )
        )
    if report.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{html.escape(n)}</li>" for n in report.notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: AgreementReport, out_dir: str | Path) -> dict[str, Path]:
    """Write agreement.json, reliability.png, principles.png (when any), report.md, report.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "agreement.json"}
    paths["json"].write_text(report.model_dump_json(indent=2), encoding="utf-8")
    images: dict[str, Path] = {}
    if report.n_pairs:
        images["reliability"] = reliability_diagram(
            report.calibration, out / "reliability.png", report.ece
        )
    if any(p.accuracy is not None for p in report.per_principle):
        images["principles"] = principle_chart(report.per_principle, out / "principles.png")
    paths.update(images)
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(
        render_markdown(report, {k: v.name for k, v in images.items()}), encoding="utf-8"
    )
    paths["html"] = out / "report.html"
    paths["html"].write_text(render_html(report, images), encoding="utf-8")
    return paths
