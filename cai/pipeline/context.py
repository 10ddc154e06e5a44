"""What the stages of one run share: the config, its paths, backends built on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends.base import Backend
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
