"""What the stages of one run share: the config, its paths, backends built on first use, and
the run's token ledger and budget.

Each stage gets a `TokenBudget` (`gate`) that knows what the run's earlier stages spent; the
gate sees every chunk of its stage (reused or new), so after the stage it holds the stage's
whole ledger. A stage the budget stopped leaves a one-line message, and the run stops there:
later stages would read unfinished results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends import make_backend
from cai.backends.base import Backend
from cai.budget import TokenBudget, TokensReport, tokens_report
from cai.config import ConfigError
from cai.executors import make_executor
from cai.executors.base import Executor
from cai.files import relative_to_run
from cai.ledger import TokenLedger
from cai.pipeline.config import PipelineConfig


@dataclass
class RunContext:
    """The config, the output paths, lazily built backends, and what checks already loaded.

    A backend passed in by the caller is the caller's to close; one built here is closed by
    `close()` (the one rule for backend ownership in a run).
    """

    config: PipelineConfig
    output_dir: Path
    policy_backend: Backend | None = None
    judge_backend: Backend | None = None
    provenance: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None
    """Why a stage stopped this run (the token budget), as one line; None: none stopped."""
    _ledger: TokenLedger = field(default_factory=TokenLedger)
    _owned: list[Backend] = field(default_factory=list)
    _executor: Executor | None = None

    def executor(self) -> Executor:
        """The run's executor (`config.executor`), made on first use and closed by `close()`.

        A Ray executor builds every backend inside its actors from the specs in the config,
        so it refuses backends passed in by the caller (they cannot travel to an actor).
        """
        if self._executor is None:
            if self.config.executor.kind != "local" and (
                self.policy_backend is not None or self.judge_backend is not None
            ):
                raise ConfigError(
                    "backends passed to run_pipeline cannot travel to Ray actors",
                    key="executor.kind",
                    fix="Describe the models in the config (policy: / judge_backend:) and pass "
                    "no backend objects, or use executor.kind: local.",
                )
            self._executor = make_executor(self.config.executor)
        return self._executor

    @property
    def runs_here(self) -> bool:
        """True when stages process their chunks in this process (the local executor)."""
        return self.config.executor.kind == "local"

    def policy(self) -> Backend:
        if self.policy_backend is None:
            self.policy_backend = self._build(self.config.policy)
        return self.policy_backend

    def judge(self) -> Backend:
        if self.judge_backend is None:
            spec = self.config.judge_backend
            if spec is None or spec == self.config.policy:
                self.judge_backend = self.policy()
            else:
                self.judge_backend = self._build(spec)
        return self.judge_backend

    def _build(self, spec) -> Backend:
        backend = make_backend(spec)
        self._owned.append(backend)
        return backend

    def close(self) -> None:
        try:
            if self._executor is not None:
                executor, self._executor = self._executor, None
                executor.close()
        finally:
            for backend in reversed(self._owned):
                backend.close()
            self._owned.clear()

    def rel(self, path: str | Path | None) -> str | None:
        """A path as written into the run's files: relative to the output directory."""
        return relative_to_run(path, self.output_dir)

    @property
    def samples_dir(self) -> Path:
        return Path(self.config.samples) if self.config.samples else self.output_dir / "samples"

    @property
    def judgments_dir(self) -> Path:
        return self.output_dir / "judgments"

    # ---- tokens ------------------------------------------------------------------------------
    def gate(self, stage: str) -> TokenBudget:
        """The budget gate of one stage, counting what the run's earlier stages spent."""
        return TokenBudget(self.config.budget.max_tokens, stage, spent_before=self._ledger.spent)

    def finish(self, gate: TokenBudget, stopped: bool, total: int | None) -> None:
        """Add the stage's ledger to the run's; on a budget stop, record the one-line message."""
        self._ledger = self._ledger.merged(gate.ledger)
        if stopped:
            self.stopped = stop_message(gate, total)

    def run_ledger(self) -> TokenLedger:
        return self._ledger

    def tokens(self, labels: int | None) -> TokensReport:
        return tokens_report(self._ledger, self.config.budget, labels)


def stop_message(gate: TokenBudget, total: int | None) -> str:
    of = f" of {total}" if total else ""
    return (
        f"token budget reached: the {gate.stage} stage stopped after {gate.items_done}{of} "
        f"prompts, {gate.spent:,} of {gate.max_tokens:,} tokens spent; rerun with a larger "
        "budget.max_tokens (--token-budget) to continue where it stopped"
    )
