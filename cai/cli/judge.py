"""`cai judge`: pairwise AI judgments of samples -> TRL-ready preference dataset."""

from __future__ import annotations

import typer

from cai.cli.options import (
    ActorsOpt,
    BackendOpt,
    BaseUrlOpt,
    ConfigOpt,
    ConstitutionOpt,
    CotOpt,
    ExecutorOpt,
    FormatOpt,
    JudgeModelOpt,
    MinConfidenceOpt,
    OverwriteOpt,
    PrinciplesOpt,
    SetOpt,
    TemplatesOpt,
    TokenBudgetOpt,
)
from cai.cli.run import execute, run_options


def register(app: typer.Typer) -> None:
    @app.command()
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
        min_confidence: MinConfidenceOpt = None,
        require_orders_agree: bool | None = typer.Option(
            None, "--require-orders-agree", help="Drop pairs whose two orders disagree."
        ),
        kwise: str | None = typer.Option(None, help="n>2 responses: best_vs_worst | all_pairs."),
        fmt: FormatOpt = None,
        push_to_hub: str | None = typer.Option(None, help="Also push to this Hub dataset repo."),
        executor: ExecutorOpt = None,
        actors: ActorsOpt = None,
        token_budget: TokenBudgetOpt = None,
        overwrite: OverwriteOpt = None,
        overrides: SetOpt = [],  # noqa: B006
    ) -> None:
        """Label sample pairs with the judge against a constitution (resumable)."""
        options = {
            "stages": ["judge", "preferences"],
            "samples": samples,
            "output_dir": out,
            "constitution": constitution,
            "templates": templates,
            "judge_backend.model": model,
            "judge_backend.kind": backend,
            "judge_backend.base_urls": base_url or None,
            "judge.principles_per_pair": principles,
            "judge.seed": seed,
            "judge.chain_of_thought": cot,
            "preferences.min_confidence": min_confidence,
            "preferences.require_orders_agree": require_orders_agree,
            "preferences.kwise": kwise,
            "preferences.format": fmt,
            "preferences.push_to_hub": push_to_hub,
            **run_options(executor, actors, token_budget, overwrite),
        }
        execute(config, options, list(overrides))
