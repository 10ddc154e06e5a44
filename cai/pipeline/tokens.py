"""The run's token ledger and budget across stages: one gate per stage, one report per run.

Each stage gets a `TokenBudget` that knows what the run's earlier stages spent; the gate sees
every chunk of its stage (reused or new), so after the stage it holds the stage's whole
ledger. A stage the budget stopped leaves a one-line message in `ctx.loaded`, and the run
stops there: later stages would read unfinished results.
"""

from __future__ import annotations

from typing import Any

from cai.budget import TokenBudget, TokensReport, tokens_report
from cai.ledger import TokenLedger
from cai.pipeline.context import RunContext

_LEDGER = "token_ledger"
_STOP = "budget_stop"


def stage_gate(ctx: RunContext, stage: str) -> TokenBudget:
    """The budget gate of one stage, counting what the run's earlier stages spent."""
    return TokenBudget(ctx.config.budget.max_tokens, stage, spent_before=run_ledger(ctx).spent)


def finish_stage(ctx: RunContext, gate: TokenBudget, stopped: bool, total: int | None) -> None:
    """Add the stage's ledger to the run's; on a budget stop, record the one-line message."""
    ctx.loaded[_LEDGER] = run_ledger(ctx).merged(gate.ledger)
    if stopped:
        ctx.loaded[_STOP] = stop_message(gate, total)


def stop_message(gate: TokenBudget, total: int | None) -> str:
    of = f" of {total}" if total else ""
    return (
        f"token budget reached: the {gate.stage} stage stopped after {gate.items_done}{of} "
        f"prompts, {gate.spent:,} of {gate.max_tokens:,} tokens spent; rerun with a larger "
        "budget.max_tokens (--token-budget) to continue where it stopped"
    )


def run_ledger(ctx: RunContext) -> TokenLedger:
    return ctx.loaded.get(_LEDGER) or TokenLedger()


def budget_stop(ctx: RunContext) -> str | None:
    """The message of a stage the budget stopped this run (None: none stopped)."""
    return ctx.loaded.get(_STOP)


def run_tokens(ctx: RunContext, labels: int | None) -> TokensReport:
    return tokens_report(run_ledger(ctx), ctx.config.budget, labels)


def card_details(ctx: RunContext, labels: int) -> dict[str, Any]:
    """The dataset card's `panel` and `tokens` entries (tokens of the finished jobs when this
    run judged nothing itself, as when `preferences` runs alone)."""
    from cai.ledger import job_tokens

    ledger = run_ledger(ctx)
    if not ledger.stages:
        ledger = job_tokens(ctx.judgments_dir).merged(job_tokens(ctx.samples_dir))
    report = tokens_report(ledger, ctx.config.budget, labels)
    out: dict[str, Any] = {
        "tokens": report.model_dump(mode="json", exclude={"max_tokens", "unpriced_models"})
    }
    if ctx.config.judge_backends is not None:
        from cai.pipeline.judges import panel_fingerprint

        out["panel"] = panel_fingerprint(ctx)
    return out
