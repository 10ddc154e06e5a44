"""The agreement report as files: agreement.json (all numbers), report.md and a
self-contained report.html (plots embedded as base64 PNG), with the reliability diagram,
the length-bias chart and the per-principle chart beside them as PNG files."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from cai.files import atomic_write_text
from cai.human.agreement import AgreementReport
from cai.human.plots import length_bias_chart, principle_chart, reliability_diagram
from cai.human.report_sections import Block, report_blocks

TITLE = "AI judge vs human labels"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_block(block: Block, images: dict[str, str]) -> list[str]:
    if block.kind == "h2":
        return [f"## {block.text}", ""]
    if block.kind == "p":
        return [block.text, ""]
    if block.kind == "ul":
        return [f"- {row[0]}" for row in block.rows] + [""]
    if block.kind == "img":
        return [f"![{block.text}]({images[block.key]})", ""] if block.key in images else []
    lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
    return [*lines, ""]


def render_markdown(report: AgreementReport, images: dict[str, str]) -> str:
    """Markdown; `images` maps an image key to the path written in the link."""
    lines = [f"# {TITLE}", ""]
    for block in report_blocks(report):
        lines += _markdown_block(block, images)
    return "\n".join(lines).rstrip() + "\n"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html_block(block: Block, images: dict[str, Path]) -> str:
    esc = html.escape
    if block.kind == "h2":
        return f"<h2>{esc(block.text)}</h2>"
    if block.kind == "p":
        return f"<p>{esc(block.text)}</p>"
    if block.kind == "ul":
        return "<ul>" + "".join(f"<li>{esc(row[0])}</li>" for row in block.rows) + "</ul>"
    if block.kind == "img":
        return _img(images[block.key], block.text) if block.key in images else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: AgreementReport, images: dict[str, Path]) -> str:
    """One HTML file with every plot inlined, so it opens anywhere on its own."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{TITLE}</title>",
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{TITLE}</h1>",
        *(_html_block(block, images) for block in report_blocks(report)),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _plots(report: AgreementReport, out: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    if report.n_pairs:
        images["reliability"] = reliability_diagram(
            report.calibration, out / "reliability.png", report.ece
        )
    if report.length_bias is not None and report.length_bias.n_pairs:
        images["length_bias"] = length_bias_chart(report.length_bias, out / "length_bias.png")
    if any(p.accuracy is not None for p in report.per_principle):
        images["principles"] = principle_chart(report.per_principle, out / "principles.png")
    return images


def write_report(report: AgreementReport, out_dir: str | Path) -> dict[str, Path]:
    """Write agreement.json, the plots that have data (reliability.png, length_bias.png,
    principles.png), report.md and report.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "agreement.json"}
    atomic_write_text(paths["json"], report.model_dump_json(indent=2))
    images = _plots(report, out)
    paths.update(images)
    paths["markdown"] = out / "report.md"
    markdown = render_markdown(report, {k: v.name for k, v in images.items()})
    atomic_write_text(paths["markdown"], markdown)
    paths["html"] = out / "report.html"
    atomic_write_text(paths["html"], render_html(report, images))
    return paths
