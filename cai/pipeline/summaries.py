"""Typed results of the pipeline's stages, and how each reads in the end-of-run report.

Each stage returns one of these; `summary.json` holds their JSON, and `format_summary` turns
them back into text through `lines()`, so a key is spelled in one place. Paths are relative
to the run directory; `shown(path)` makes one openable from where the user ran cai.
"""

from __future__ import annotations

from cai.executors.base import ExecutorReport
from cai.judge.health import JudgeHealth
from cai.judge.panel import MemberAgreement
from cai.ledger import TokenCount
from cai.preferences import PreferenceCounts
from cai.stage_summary import Shown, StageSummary


class SampleSummary(StageSummary):
    prompts: int
    prompts_sampled_now: int
    prompts_resumed: int
    responses: int
    truncated_responses: int
    seconds: float
    samples_dir: str | None = None
    executor: ExecutorReport | None = None
    """Where the chunks ran: kind, actors, items and seconds per actor, restarts."""
    stopped: bool = False
    """The token budget stopped the stage at a chunk boundary (`prompts` are those done)."""
    tokens: TokenCount | None = None
    """The stage's tokens over its whole job (earlier, resumed runs included)."""

    def lines(self, shown: Shown) -> list[str]:
        if self.stopped:
            return [f"sampled: {self.prompts} prompts before the token budget stopped it"]
        return [
            f"sampled: {self.prompts} prompts ({self.prompts_resumed} resumed), "
            f"{self.responses} responses, {self.truncated_responses} hit max_tokens",
            *(self.executor.lines() if self.executor else []),
        ]

    def requests_made(self) -> str:
        return f"{self.prompts_sampled_now} generation requests"


class JudgeSummary(StageSummary):
    prompts: int
    prompts_judged_now: int
    prompts_resumed: int
    choice_requests_scored_now: int
    rationales_generated_now: int
    seconds: float
    executor: ExecutorReport | None = None
    """Where the chunks ran: kind, actors, items and seconds per actor, restarts."""
    judge_health: JudgeHealth | None = None
    """The judge's own numbers over every judged pair (cai.judge.health)."""
    stopped: bool = False
    """The token budget stopped the stage at a chunk boundary (`prompts` are those done)."""
    tokens: TokenCount | None = None
    """The stage's tokens over its whole job (earlier, resumed runs included)."""
    panel: list[MemberAgreement] | None = None
    """Under a judge panel: how often each member's winner is the panel's (cai.judge.panel)."""

    def lines(self, shown: Shown) -> list[str]:
        return [
            f"judged: {self.prompts} prompts ({self.prompts_resumed} resumed), "
            f"{self.choice_requests_scored_now} answer scorings this run",
            *(self.executor.lines() if self.executor else []),
            *(self.judge_health.lines() if self.judge_health else []),
            *([_panel_line(self.panel)] if self.panel else []),
        ]

    def requests_made(self) -> str:
        return f"{self.choice_requests_scored_now + self.rationales_generated_now} judge requests"


class PreferencesSummary(PreferenceCounts, StageSummary):
    dataset: str | None = None
    filtered_file: str | None = None

    def lines(self, shown: Shown) -> list[str]:
        """Position flips and confidence are the judge's: JudgeSummary shows them once."""
        see = f" (see {shown(self.filtered_file)})" if self.filtered_file else ""
        return [
            f"pairs written: {self.rows_written}",
            f"filtered: {self.filtered or 'none'}{see}",
            f"judge failures: {self.judge_failures_by_kind or 'none'}",
        ]


def _panel_line(members: list[MemberAgreement]) -> str:
    parts = []
    for m in members:
        share = "n/a" if m.agreement is None else f"{m.agreement:.1%}"
        abstained = f", abstained on {m.abstained}" if m.abstained else ""
        parts.append(f"{m.member} {share} of {m.pairs}{abstained}")
    return "panel members agreeing with the panel's label: " + "; ".join(parts)
