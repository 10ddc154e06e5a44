"""The reward service: one judge (backend, constitution, templates, settings) behind HTTP.

`build_service` reads the judge from a pipeline config (the same `constitution`, `templates`,
`judge_backend` (else `policy`), `judge:` and `budget:` keys `cai run` and `cai judge` read),
so a project's one YAML describes its judge for labeling and for rewards alike.
`RewardService` is what the HTTP handlers (`cai.reward.app`) call: it checks each request
against the limits and the token budget, sends its items through the micro-batcher, and keeps
the numbers `/health` and `/metrics` report.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai.backends.base import Backend
from cai.config import ConfigError
from cai.errors import CaiError
from cai.ledger import LedgerBackend, counting
from cai.reward.batcher import MicroBatcher
from cai.reward.limits import RateLimiter, ServiceLimits, bearer_token, known_key
from cai.reward.metrics import Metrics
from cai.reward.protocol import (
    CompareItem,
    Frame,
    ItemError,
    OpenRLHFRequest,
    RankFrame,
    ScoreItem,
    openrlhf_answer,
    parse_item,
    prompt_messages,
    split_query,
)
from cai.reward.scoring import JudgeScorer

LEDGER_STAGE = "reward"


class Refusal(CaiError):
    """A request the service will not serve: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class BatchSettings(BaseModel):
    """How long a batch waits for company, and how big it may grow."""

    model_config = ConfigDict(extra="forbid")

    max_wait_ms: float = Field(5.0, ge=0)
    max_items: int = Field(256, ge=1)


GetRewardMode = Literal["score", "compare"]


class RewardService:
    """The judge, its limits, its batcher and its numbers; the HTTP layer calls `answer`."""

    def __init__(
        self,
        scorer: JudgeScorer,
        limits: ServiceLimits | None = None,
        batching: BatchSettings | None = None,
        get_reward_mode: GetRewardMode = "score",
        max_tokens: int | None = None,
        close: Any = None,
    ) -> None:
        self.scorer = scorer
        self.limits = limits or ServiceLimits()
        self.batching = batching or BatchSettings()
        self.get_reward_mode = get_reward_mode
        self.max_tokens = max_tokens
        self.batcher = MicroBatcher(
            scorer.run, self.batching.max_wait_ms / 1000.0, self.batching.max_items
        )
        self.limiter = RateLimiter(self.limits.rate_limit, self.limits.burst)
        self.metrics = Metrics()
        self._close = close

    # ---- admission --------------------------------------------------------------------------
    def admit(self, authorization: str | None, address: str | None) -> None:
        """Refuse a request without a known bearer token, or over its client's rate."""
        token = bearer_token(authorization)
        if self.limits.api_keys and not known_key(token, self.limits.api_keys):
            raise Refusal(401, "missing or unknown bearer token: send Authorization: Bearer KEY")
        wait = self.limiter.admit(token or address or "anonymous")
        if wait:
            raise Refusal(
                429,
                f"rate limit of {self.limits.rate_limit:g} requests/s per client reached; "
                f"retry after {wait:.2f} s",
                retry_after=wait,
            )
        spent = self.spent_tokens()
        if self.max_tokens is not None and spent >= self.max_tokens:
            raise Refusal(
                402,
                f"the service's token budget of {self.max_tokens} tokens is spent ({spent}); "
                "restart it with a larger --token-budget",
            )

    # ---- the endpoints ----------------------------------------------------------------------
    async def answer(self, mode: str, body: Any) -> dict[str, Any]:
        """/v1/score, /v1/compare and /v1/rank: one result per item, in order."""
        frame_model = RankFrame if mode == "rank" else Frame
        frame = _frame(frame_model, body)
        raws = frame.groups if isinstance(frame, RankFrame) else frame.items
        self._check_size(raws, mode)
        results = await self.batcher.submit(mode, [parse_item(mode, raw) for raw in raws])
        self.metrics.answered(mode, len(results), _error_kinds(results))
        return {
            "model": self.scorer.backend.model_id,
            "results": [r.model_dump(mode="json") for r in results],
        }

    async def get_reward(self, body: Any) -> dict[str, Any]:
        """OpenRLHF's /get_reward: a reward per query (prompt + response as one text)."""
        request = _frame(OpenRLHFRequest, body)
        n = len(request.query)
        self._check_size(request.query, "get_reward")
        prompts = request.prompts if request.prompts is not None else [None] * n
        labels = request.labels if request.labels is not None else [None] * n
        if len(prompts) != n or len(labels) != n:
            raise Refusal(
                422,
                f"query, prompts and labels differ in length ({n}, {len(prompts)}, {len(labels)})",
            )
        items: list[Any] = []
        for query, prompt, label in zip(request.query, prompts, labels, strict=True):
            split = split_query(query, prompt)
            if isinstance(split, ItemError):
                items.append(split)
            elif self.get_reward_mode == "compare":
                items.append(_against_label(split, label))
            else:
                items.append(ScoreItem(prompt=prompt_messages(split[0]), response=split[1]))
        mode = self.get_reward_mode
        results = await self.batcher.submit(mode, items)
        self.metrics.answered("get_reward", len(results), _error_kinds(results))
        rewards = [getattr(r, "reward" if mode == "score" else "prob_chosen") for r in results]
        return openrlhf_answer(rewards, [r.error for r in results])

    def _check_size(self, raws: list[Any], mode: str) -> None:
        if len(raws) > self.limits.max_items:
            raise Refusal(
                413,
                f"{len(raws)} items in one request; the limit is "
                f"{self.limits.max_items} (send smaller requests)",
            )
        if mode != "rank":
            return
        for index, raw in enumerate(raws):
            responses = raw.get("responses") if isinstance(raw, dict) else None
            size = len(responses) if isinstance(responses, list) else 0
            if size > self.limits.max_group_size:
                raise Refusal(
                    413,
                    f"group {index} has {size} responses; the limit is "
                    f"{self.limits.max_group_size} per group",
                )

    # ---- numbers ----------------------------------------------------------------------------
    def spent_tokens(self) -> int:
        backend = self.scorer.backend
        return backend.ledger.spent if isinstance(backend, LedgerBackend) else 0

    def health(self) -> dict[str, Any]:
        stats = self.batcher.stats
        return {
            "status": "ok",
            "model": self.scorer.backend.model_id,
            "constitution": self.scorer.constitution.name,
            "modes": ["score", "compare", "rank"],
            "get_reward_mode": self.get_reward_mode,
            "queue_items": stats.waiting_items,
            "batches": stats.batches,
            "tokens_spent": self.spent_tokens(),
            "token_budget": self.max_tokens,
            "judge_health": self.scorer.health().model_dump(mode="json"),
        }

    def metrics_text(self) -> str:
        stats = self.batcher.stats
        backend = self.scorer.backend
        tokens = backend.ledger.total() if isinstance(backend, LedgerBackend) else None
        cache = backend.stats
        health = self.scorer.health()
        gauges: dict[str, tuple[str, float | None]] = {
            "queue_items": ("Items waiting for a batch.", stats.waiting_items),
            "batches_total": ("Engine batches run.", stats.batches),
            "batched_requests_total": ("Requests answered by those batches.", stats.requests),
            "batched_items_total": ("Items in those batches.", stats.items),
            "largest_batch_items": ("Items in the largest batch so far.", stats.largest_batch),
            "judge_calls_total": (
                "Judge calls counted by the token ledger.",
                tokens.calls if tokens else None,
            ),
            "prompt_tokens_total": (
                "Prompt tokens the judge engine read.",
                tokens.prompt if tokens else None,
            ),
            "cached_calls_total": (
                "Judge calls the call cache answered.",
                tokens.cached_calls if tokens else None,
            ),
            "tokens_spent": (
                "Tokens spent (cached calls free), as the budget counts them.",
                self.spent_tokens(),
            ),
            "token_budget": ("The token budget; absent without one.", self.max_tokens),
            "cache_hits_total": ("Calls served by the call cache.", cache.hits if cache else None),
            "cache_misses_total": (
                "Calls the call cache sent on.",
                cache.misses if cache else None,
            ),
            "judge_pairs_recent": ("Judged pairs the health numbers cover.", health.pairs_judged),
            "judge_mean_confidence": (
                "Mean max(p, 1-p) over recent pairs.",
                health.mean_confidence,
            ),
            "judge_position_flip_rate": (
                "Share of recent pairs whose orders disagree.",
                health.position_flip_rate,
            ),
            "judge_near_tie_rate": (
                "Share of recent pairs with |p-0.5| < 0.05.",
                health.near_tie_rate,
            ),
            "judge_length_bias_rate": (
                "Share of recent pairs won by the longer response.",
                health.length_bias_rate,
            ),
        }
        return self.metrics.render(gauges)

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    def close(self) -> None:
        """Release the judge backend, when the service built it."""
        if self._close is not None:
            self._close()


def _frame(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise Refusal(422, f"bad request body: {where}: {first.get('msg', 'invalid')}") from err


def _against_label(split: tuple[str, str], label: Any) -> CompareItem | ItemError:
    if not isinstance(label, str) or not label.strip():
        return ItemError(
            kind="invalid_item",
            message="compare mode needs each label to be the reference answer (a string)",
        )
    return CompareItem(prompt=prompt_messages(split[0]), chosen=split[1], rejected=label)


def _error_kinds(results: list[Any]) -> list[str]:
    return [r.error.kind for r in results if r.error is not None]


def build_service(
    config,
    limits: ServiceLimits | None = None,
    batching: BatchSettings | None = None,
    get_reward_mode: GetRewardMode = "score",
    backend: Backend | None = None,
) -> RewardService:
    """The service a pipeline config describes; a backend given is the caller's to close."""
    from cai.backends import make_backend
    from cai.constitution import load_constitution
    from cai.templates import TemplateSet

    if config.judge_backends:
        raise ConfigError(
            "the reward service runs one judge model, and the config lists a panel",
            key="judge_backends",
            fix="Set judge_backend to one model for `cai reward serve`.",
        )
    constitution = load_constitution(config.constitution)
    templates = TemplateSet(config.templates)
    built = None
    if backend is None:
        built = backend = make_backend(config.judge_backend or config.policy)
    scorer = JudgeScorer(counting(backend, LEDGER_STAGE), constitution, templates, config.judge)
    return RewardService(
        scorer,
        limits,
        batching,
        get_reward_mode,
        max_tokens=config.budget.max_tokens,
        close=built.close if built is not None else None,
    )


def load_service(
    config_path,
    options: dict[str, Any],
    overrides: list[str],
    limits: ServiceLimits | None = None,
    batching: BatchSettings | None = None,
    get_reward_mode: str = "score",
) -> RewardService:
    """The service of `cai reward serve`: pipeline YAML < flags (`options`) < `--set`."""
    from cai.pipeline import load_pipeline_config

    if get_reward_mode not in ("score", "compare"):
        raise ConfigError(
            f"unknown /get_reward mode {get_reward_mode!r}",
            key="get_reward_mode",
            fix="Use score (P(follows)) or compare (P(beats the label)).",
        )
    config = load_pipeline_config(config_path, overrides, options)
    return build_service(config, limits, batching, get_reward_mode)  # type: ignore[arg-type]
