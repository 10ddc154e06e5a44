"""A run's token budget and the cost of its tokens, read from the ledger (`cai.ledger`).

`TokenBudget` stops a stage at a chunk boundary: before a chunk starts, it estimates the
chunk's spend as its item count times the mean spend per item of the stage's chunks finished
so far, and stops when that would take the run past `max_tokens`. A stage's first chunk has
no estimate and runs unless the budget is already spent. With a price table, the report gives
the cost of the tokens spent and the cost per 1,000 labels.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cai.ledger import TokenLedger, chunk_file_tokens


class TokenBudget:
    """Admits a stage's chunks while the run's spend stays within `max_tokens`.

    `spent_before` is what earlier stages of this run spent (their whole jobs). The stage's
    own chunks are added as they are reused or committed; before a new chunk starts,
    its spend is estimated from the mean spend per item of the stage's finished chunks.
    """

    def __init__(self, max_tokens: int | None, stage: str, spent_before: int = 0) -> None:
        self.max_tokens = max_tokens
        self.stage = stage
        self.spent_before = spent_before
        self.ledger = TokenLedger()
        self.items_done = 0
        self.stopped_at: int | None = None
        """Items of the stage done when it stopped (None: it did not stop)."""

    @property
    def spent(self) -> int:
        return self.spent_before + self.ledger.spent

    def estimate(self, size: int) -> int:
        """The expected spend of a chunk of `size` items (0 before any chunk finished)."""
        if not self.items_done:
            return 0
        return round(self.ledger.spent / self.items_done * size)

    def admit(self, size: int) -> bool:
        """Whether a new chunk of `size` items may start; records where the stage stopped."""
        if self.max_tokens is None:
            return True
        over = (
            self.spent >= self.max_tokens
            if not self.items_done
            else self.spent + self.estimate(size) > self.max_tokens
        )
        if over:
            self.stopped_at = self.items_done
        return not over

    def done(self, path: Path, size: int) -> None:
        """A chunk of `size` items is committed at `path` (now or by an earlier run)."""
        self.items_done += size
        self.ledger = self.ledger.merged(chunk_file_tokens(path))


# ---- settings and the report ------------------------------------------------------------------
class TokenPrice(BaseModel):
    """What one model's tokens cost, in dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    prompt: float = Field(0.0, ge=0)
    completion: float = Field(0.0, ge=0)


class BudgetConfig(BaseModel):
    """A token budget for a run, and prices for its cost report (neither changes a result)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(
        None,
        ge=1,
        description="stop at a chunk boundary before the run's stages would spend more tokens "
        "(prompt + completion, cached calls free); a rerun with a larger budget resumes",
    )
    prices: dict[str, TokenPrice] = Field(
        default_factory=dict,
        description="{model name: {prompt: $/M tokens, completion: $/M tokens}} for the cost "
        "per 1,000 labels in the summary",
    )


def model_name(model_id: str) -> str:
    """A model identity's plain name: `vllm:tiny#ab12:float32` -> `tiny`, `openai:gpt:..` -> `gpt`."""
    parts = model_id.split(":")
    name = parts[1] if len(parts) > 1 else parts[0]
    return name.split("#", 1)[0].split("@", 1)[0]


def price_of(model_id: str, prices: dict[str, TokenPrice]) -> TokenPrice | None:
    """The price entry naming this model: by full identity, name, or name without its org."""
    name = model_name(model_id)
    for key in (model_id, name, name.rsplit("/", 1)[-1]):
        if key in prices:
            return prices[key]
    return None


class TokensReport(BaseModel):
    """The `tokens` block of a run summary: the ledger, and its cost when prices are given."""

    ledger: TokenLedger
    spent: int
    cached: int
    uncounted_calls: int
    labels: int | None = None
    """Preference rows written (the labels the cost is spread over)."""
    cost: float | None = None
    """Dollars, for the models the price table names (None without prices)."""
    cost_per_1000_labels: float | None = None
    unpriced_models: list[str] = Field(default_factory=list)
    max_tokens: int | None = None

    def lines(self) -> list[str]:
        """The report's token lines (none when the run called no model)."""
        if not self.ledger.stages:
            return []
        total = self.ledger.total()
        head = (
            f"tokens spent: {self.spent:,} (prompt {total.prompt:,}, "
            f"completion {total.completion:,})"
        )
        if self.cached:
            head += f"; {self.cached:,} served by the call cache"
        if self.max_tokens is not None:
            head += f"; budget {self.max_tokens:,}"
        out = [head]
        for stage, models in self.ledger.stages.items():
            for model, counts in models.items():
                out.append(
                    f"  {stage} {model_name(model)}: {counts.spent:,} tokens in "
                    f"{counts.calls:,} calls"
                    + (f" (+{counts.cached_calls:,} cached)" if counts.cached_calls else "")
                    + (f", {counts.uncounted_calls:,} uncounted" if counts.uncounted_calls else "")
                )
        if self.cost is not None:
            per = (
                f", {_dollars(self.cost_per_1000_labels)} per 1,000 labels"
                if self.cost_per_1000_labels is not None
                else ""
            )
            unpriced = (
                f" (no price for {', '.join(self.unpriced_models)})" if self.unpriced_models else ""
            )
            out.append(f"  cost: {_dollars(self.cost)}{per}{unpriced}")
        return out


def _dollars(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.6f}"


def tokens_report(
    ledger: TokenLedger, budget: BudgetConfig, labels: int | None = None
) -> TokensReport:
    """The ledger with totals and, given prices, its cost overall and per 1,000 labels."""
    total = ledger.total()
    cost = None
    unpriced: list[str] = []
    if budget.prices:
        cost = 0.0
        for model, counts in ledger.by_model().items():
            price = price_of(model, budget.prices)
            if price is None:
                if counts.spent:
                    unpriced.append(model_name(model))
                continue
            cost += (counts.prompt * price.prompt + counts.completion * price.completion) / 1e6
    per_1000 = cost / labels * 1000 if cost is not None and labels else None
    return TokensReport(
        ledger=ledger,
        spent=total.spent,
        cached=total.cached_prompt + total.cached_completion,
        uncounted_calls=total.uncounted_calls,
        labels=labels,
        cost=None if cost is None else round(cost, 6),
        cost_per_1000_labels=None if per_1000 is None else round(per_1000, 6),
        unpriced_models=unpriced,
        max_tokens=budget.max_tokens,
    )
