"""What the stages of one run share: the config, its paths, backends built on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends.base import Backend
from cai.executors.base import Executor
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
    _owned: list[Backend] = field(default_factory=list)
    _executor: Executor | None = None

    def executor(self) -> Executor:
        """The run's executor (`config.executor`), made on first use and closed by `close()`.

        A Ray executor builds every backend inside its actors from the specs in the config,
        so it refuses backends passed in by the caller (they cannot travel to an actor).
        """
        if self._executor is None:
            from cai.executors import make_executor

            if self.config.executor.kind != "local" and (
                self.policy_backend is not None or self.judge_backend is not None
            ):
                from cai.pipeline.config import PipelineConfigError

                raise PipelineConfigError(
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
            from cai.backends import make_backend

            self.policy_backend = make_backend(self.config.policy)
            self._owned.append(self.policy_backend)
        return self.policy_backend

    def judge(self) -> Backend:
        if self.judge_backend is None:
            spec = self.config.judge_backend
            if spec is None or spec == self.config.policy:
                self.judge_backend = self.policy()
            else:
                from cai.backends import make_backend

                self.judge_backend = make_backend(spec)
                self._owned.append(self.judge_backend)
        return self.judge_backend

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
        from cai.files import relative_to_run

        return relative_to_run(path, self.output_dir)

    @property
    def samples_dir(self) -> Path:
        return Path(self.config.samples) if self.config.samples else self.output_dir / "samples"

    @property
    def judgments_dir(self) -> Path:
        return self.output_dir / "judgments"

    @property
    def dataset_path(self) -> Path:
        fmt = self.config.preferences.format
        name = {"save_to_disk": "preferences", "parquet": "preferences.parquet"}
        return self.output_dir / name.get(fmt, "preferences.jsonl")
