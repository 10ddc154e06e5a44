"""Run every lint check on a constitution and write the report (Markdown, JSON, heatmap).

Kept apart from the checks so `cai.constitution_tools.lint` stays importable without the
judgment, human-label and plotting code it does not need.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from cai.constitution.errors import display_path
from cai.constitution.models import Constitution
from cai.constitution_tools.lint import Finding, LintConfig, sort_findings, static_findings
from cai.constitution_tools.votes import Empirical, analyse, collect_votes, human_labels
from cai.errors import InputError
from cai.files import atomic_write_text
from cai.human.storage import read_preference_rows
from cai.jobs import JOB_FILE, job_fingerprint, job_is_complete
from cai.judge.judged import iter_judged


class LintReport(BaseModel):
    constitution: str
    constitution_hash: str
    source: str | None = None
    judgments: str | None = None
    human: str | None = None
    findings: list[Finding] = Field(default_factory=list)
    empirical: Empirical | None = None

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)

    def summary(self) -> str:
        return (
            f"{self.constitution}: {self.count('error')} error(s), {self.count('warning')} "
            f"warning(s), {self.count('info')} note(s)"
        )


def lint_constitution(
    constitution: Constitution,
    judgments: str | Path | None = None,
    human: str | Path | None = None,
    config: LintConfig | None = None,
    templates_dir: str | Path | None = None,
) -> LintReport:
    """Static findings, plus empirical ones when a judgments directory is given."""

    config = config or LintConfig()
    findings = static_findings(constitution, config, templates_dir)
    empirical = None
    if human is not None and judgments is None:
        raise InputError(
            "--human needs --judgments: agreement with people is measured per principle on "
            "pairs the judge labelled",
            fix="Pass the judgments directory of a `cai judge` run (OUT/judgments).",
        )
    if judgments is not None:
        empirical = _empirical(constitution, Path(judgments), human, config)
        findings += empirical.findings
    return LintReport(
        constitution=constitution.name,
        constitution_hash=constitution.content_hash,
        source=display_path(constitution.source_path) if constitution.source_path else None,
        judgments=str(judgments) if judgments is not None else None,
        human=str(human) if human is not None else None,
        findings=sort_findings(findings),
        empirical=empirical,
    )


def _empirical(
    constitution: Constitution, judgments: Path, human: str | Path | None, config: LintConfig
) -> Empirical:
    if not (judgments / JOB_FILE).is_file() and (judgments / "judgments" / JOB_FILE).is_file():
        judgments = judgments / "judgments"  # the run directory was given
    if not job_is_complete(judgments):
        raise InputError(
            "holds no finished judgments",
            file=judgments,
            fix="Give the judgments directory of a finished `cai judge` run (OUT/judgments).",
        )
    fingerprint = job_fingerprint(judgments) or {}
    settings = fingerprint.get("config") or {}
    margin = settings.get("tier_margin")
    if margin is None:
        margin = constitution.defaults.tier_margin
    votes = collect_votes(iter_judged(judgments))
    labels = None
    if human is not None:
        labels = human_labels(read_preference_rows(human))
    ids = [p.id for p in constitution.principles if p.comparison_question is not None]
    result = analyse(votes, ids, config, margin, labels)
    made_with = fingerprint.get("constitution_hash")
    if made_with and made_with != constitution.content_hash:
        result.notes.append(
            f"the judgments were made with constitution {fingerprint.get('constitution')!r} "
            f"(hash {made_with[:12]}), not this file (hash {constitution.content_hash[:12]}); "
            "principles are matched by id"
        )
    return result


# ---- writing -----------------------------------------------------------------------------------
def write_lint_report(report: LintReport, out_dir: str | Path) -> dict[str, Path]:
    """lint.md, lint.json and (with judgments) agreement.png in `out_dir`; returns the paths."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if report.empirical is not None and report.empirical.matrix.ids:
        paths["heatmap"] = agreement_heatmap(report.empirical, out_dir / "agreement.png")
    paths["json"] = atomic_write_text(out_dir / "lint.json", report.model_dump_json(indent=2))
    paths["markdown"] = atomic_write_text(out_dir / "lint.md", render_markdown(report, paths))
    return paths


def agreement_heatmap(empirical: Empirical, path: Path) -> Path:
    """The principle x principle agreement matrix as a PNG (grey where too few pairs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matrix = empirical.matrix
    n = len(matrix.ids)
    values = np.array(
        [[np.nan if v is None else v for v in row] for row in matrix.agreement], dtype=float
    )
    size = max(4.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size), dpi=110)
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), matrix.ids, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), matrix.ids, fontsize=8)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                if not np.isnan(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("Principle agreement on shared pairs (share voting alike)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def render_markdown(report: LintReport, paths: dict[str, Path]) -> str:
    """The report for people: findings by severity, per-principle table, the matrix."""
    lines = [f"# Lint: {report.constitution}", "", report.summary(), ""]
    inputs = (
        ("file", report.source),
        ("content hash", report.constitution_hash),
        ("judgments", report.judgments),
        ("human labels", report.human),
    )
    lines += [f"- {name}: `{value}`" for name, value in inputs if value]
    lines += ["", "## Findings", ""]
    if not report.findings:
        lines.append("None.")
    for finding in report.findings:
        where = f" ({finding.file}:{finding.line})" if finding.file and finding.line else ""
        fix = f" *Fix:* {finding.fix}." if finding.fix else ""
        lines.append(f"- **{finding.severity}** `{finding.code}`{where}: {finding.message}.{fix}")
    empirical = report.empirical
    if empirical is not None:
        lines += ["", "## Principles on the judged pairs", ""]
        lines.append(f"{empirical.pairs} judged pairs.")
        if empirical.judge_human_agreement is not None:
            lines.append(
                f"The judge agrees with people on {_pct(empirical.judge_human_agreement)} of "
                f"the {empirical.human_pairs} pairs both labelled."
            )
        lines += [
            "",
            "| principle | pairs | decisive | mean abs(p - 0.5) | label moves | orders disagree "
            "| agrees with people |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in empirical.stats:
            conf = "n/a" if s.mean_confidence is None else f"{s.mean_confidence:.3f}"
            human = f"{_pct(s.human_agreement)} of {s.human_pairs}" if s.human_pairs else "n/a"
            lines.append(
                f"| {s.principle} | {s.pairs} | {s.decisive} | {conf} | {s.moves} | "
                f"{_pct(s.order_disagreement)} | {human} |"
            )
        worst = sorted(
            (s for s in empirical.stats if s.order_disagreement),
            key=lambda s: -(s.order_disagreement or 0.0),
        )[:3]
        if worst:
            lines += [
                "",
                "Answer orders disagree most for: "
                + ", ".join(f"`{s.principle}` ({_pct(s.order_disagreement)})" for s in worst)
                + ".",
            ]
        for note in empirical.notes:
            lines.append(f"\nNote: {note}")
        if "heatmap" in paths:
            lines += ["", "## Agreement matrix", "", f"![agreement]({paths['heatmap'].name})"]
    lines.append("")
    return "\n".join(lines)
