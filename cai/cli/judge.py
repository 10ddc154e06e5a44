"""`cai judge`: pairwise AI judgments of samples -> TRL-ready preference dataset."""

from __future__ import annotations

from typing import Any

import typer

from cai.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    ConfigOpt,
    ConstitutionOpt,
    CotOpt,
    FormatOpt,
    JudgeMethodOpt,
    JudgeModelOpt,
    MinConfidenceOpt,
    PrinciplesOpt,
    TemplatesOpt,
)
from cai.cli.run import backend_options, execute, labeling_command


def register(app: typer.Typer) -> None:
    @app.command()
    @labeling_command
    def judge(
        samples: str = typer.Argument(..., help="Samples directory (from cai sample) or .jsonl."),
        out: str = typer.Option(..., "--out", "-o", help="Output directory."),
        config: ConfigOpt = None,
        constitution: ConstitutionOpt = None,
        templates: TemplatesOpt = None,
        model: JudgeModelOpt = None,
        backend: BackendOpt = None,
        base_url: BaseUrlOpt = [],  # noqa: B006 - typer reads the default, never mutates it
        principles: PrinciplesOpt = None,
        seed: int | None = typer.Option(None, help="Seed of the principle choice."),
        cot: CotOpt = None,
        method: JudgeMethodOpt = None,
        min_confidence: MinConfidenceOpt = None,
        require_orders_agree: bool | None = typer.Option(
            None, "--require-orders-agree", help="Drop pairs whose two orders disagree."
        ),
        kwise: str | None = typer.Option(None, help="n>2 responses: best_vs_worst | all_pairs."),
        fmt: FormatOpt = None,
        push_to_hub: str | None = typer.Option(None, help="Also push to this Hub dataset repo."),
        *,
        shared: dict[str, Any],
        overrides: list[str],
    ) -> None:
        """Label sample pairs with the judge against a constitution (resumable)."""
        options = {
            "stages": ["judge", "preferences"],
            "samples": samples,
            "output_dir": out,
            "constitution": constitution,
            "templates": templates,
            **backend_options("judge_backend", model, backend, base_url),
            "judge.principles_per_pair": principles,
            "judge.seed": seed,
            "judge.chain_of_thought": cot,
            "judge.method": method,
            "preferences.min_confidence": min_confidence,
            "preferences.require_orders_agree": require_orders_agree,
            "preferences.kwise": kwise,
            "preferences.format": fmt,
            "preferences.push_to_hub": push_to_hub,
            **shared,
        }
        execute(config, options, overrides)
