"""The grid file of `cai eval judge`: benchmarks x judges x constitutions x templates x methods.

    benchmarks:                      # files, save_to_disk directories or Hub ids
      - {source: allenai/reward-bench-2, split: test}
    judges:
      - {name: qwen7b, backend: {kind: vllm, model: Qwen/Qwen2.5-7B-Instruct}}
      - {name: pair, panel: [{model: a}, {model: b}]}   # a panel of judge models
    constitutions: [default, helpful-only]
    methods: [logprob, cot]          # logprob | cot | verdict
    limit: 200                       # stratified rows per benchmark

Every combination is a cell; each cell judges each benchmark through the stage runner in
its own run directory, so a rerun resumes and an unchanged cell costs nothing.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cai.backends import BackendSpec
from cai.budget import BudgetConfig
from cai.config import ConfigError, resolve_beside
from cai.executors.config import ExecutorConfig
from cai.human.bootstrap import BootstrapSettings
from cai.judge.compare import JudgeConfig
from cai.judge.panel import PanelConfig
from cai.judge_eval.formats import FORMATS

Method = Literal["logprob", "cot", "verdict"]
"""logprob: the answer-token probability in both orders; cot: a rationale first, then that
probability (clamped to the CoT band); verdict: the judge writes its reasoning and names an
answer, parsed into a hard label per principle and order with no log-probs read (the judge's
`method: verdict`, for APIs without log-probs); an answer naming no label is `unparseable`."""

METHODS: tuple[str, ...] = ("logprob", "cot", "verdict")


class BenchmarkSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    format: str = "auto"
    split: str | None = None
    name: str | None = None
    limit: int | None = Field(None, ge=1, description="rows of this benchmark; default: the grid's")


class JudgeEntry(BaseModel):
    """One judge of the grid: a model (`backend`) or a panel of them (`panel`)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    backend: BackendSpec | None = None
    panel: list[BackendSpec] | None = None
    panel_settings: PanelConfig = Field(default_factory=PanelConfig)

    @model_validator(mode="after")
    def _one_kind(self) -> JudgeEntry:
        if (self.backend is None) == (self.panel is None):
            raise ValueError("a judge needs exactly one of `backend` (one model) or `panel`")
        if self.panel is not None:
            problems = self.panel_settings.problems(len(self.panel))
            if len(self.panel) < 2:
                problems.append("a panel needs at least two judge models")
            if problems:
                raise ValueError("; ".join(problems))
        return self

    def label(self) -> str:
        if self.name:
            return self.name
        specs = self.panel or [self.backend]
        return "+".join(_short(str(s.model)) for s in specs if s is not None)


def _short(text: str) -> str:
    stem = Path(text.rstrip("/")).name or text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem)[:40] or "judge"


class Cell(BaseModel):
    """One judge configuration of the grid."""

    name: str
    judge: JudgeEntry
    constitution: str
    templates: str | None
    method: Method


class JudgeEvalConfig(BaseModel):
    """Everything `cai eval judge` reads: YAML < flags < --set (see `cai.config`)."""

    model_config = ConfigDict(extra="forbid")

    benchmarks: list[BenchmarkSource] = Field(min_length=1)
    judges: list[JudgeEntry] = Field(min_length=1)
    constitutions: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    templates: list[str | None] = Field(default_factory=lambda: [None], min_length=1)
    methods: list[Method] = Field(default_factory=lambda: ["logprob"], min_length=1)
    judge: dict[str, Any] = Field(
        default_factory=dict,
        description="JudgeConfig settings every cell shares (principles_per_pair, seed, ...)",
    )
    format: str = Field("auto", description="the format of benchmarks that do not name one")
    limit: int | None = Field(None, ge=1, description="stratified rows per benchmark")
    seed: int = 0
    tie_margin: float = Field(
        0.0, ge=0.0, lt=0.5, description="|p - 0.5| <= this is the judge saying 'tie'"
    )
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)
    chunk_size: int = Field(64, ge=1)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    budget: BudgetConfig = Field(
        default_factory=BudgetConfig, description="prices per model, for the cost column"
    )
    overwrite: bool = False
    output_dir: str = "runs/judge-eval"

    @model_validator(mode="after")
    def _check(self) -> JudgeEvalConfig:
        for fmt in [self.format, *(b.format for b in self.benchmarks)]:
            if fmt != "auto" and fmt not in FORMATS:
                raise ValueError(f"format {fmt!r} is not auto or one of {', '.join(FORMATS)}")
        JudgeConfig(**self.judge)  # a wrong key fails here, before anything loads
        for key in ("chain_of_thought", "method"):
            if key in self.judge:
                raise ValueError(
                    f"judge.{key} is set by each cell's method; list methods: [cot] "
                    "(or verdict) instead"
                )
        labels = [j.label() for j in self.judges]
        if len(set(labels)) != len(labels):
            raise ValueError(f"two judges share a name ({labels}); give each a `name`")
        self.cells()  # two cells with one name fail here, as a settings error
        return self

    def cells(self) -> list[Cell]:
        """Every combination, grouped by judge (so one engine serves all of its cells)."""
        vary = {
            "c": len(self.constitutions) > 1,
            "t": len(self.templates) > 1,
            "m": len(self.methods) > 1,
        }
        out = []
        for judge, constitution, templates, method in itertools.product(
            self.judges, self.constitutions, self.templates, self.methods
        ):
            parts = [judge.label()]
            if vary["c"]:
                parts.append(_short(constitution).removesuffix(".yaml"))
            if vary["t"]:
                parts.append(_short(templates or "bundled"))
            if vary["m"]:
                parts.append(method)
            out.append(
                Cell(
                    name="__".join(parts),
                    judge=judge,
                    constitution=constitution,
                    templates=templates,
                    method=method,
                )
            )
        names = [c.name for c in out]
        if len(set(names)) != len(names):
            raise ValueError(f"two cells share a name: {names}")
        return out

    def benchmark_format(self, bench: BenchmarkSource) -> str:
        return bench.format if bench.format != "auto" else self.format


def apply_judge_kind(options: dict[str, Any]) -> dict[str, Any]:
    """`--backend KIND` and `--base-url URL` set the backend of the judges named with
    `--judge` (the grid file's judges carry their own)."""
    options = dict(options)
    given = {
        key: options.pop(flag)
        for flag, key in (("judge_kind", "kind"), ("judge_base_urls", "base_urls"))
        if options.get(flag) is not None
    }
    if not given:
        return options
    if "judges" not in options:
        raise ConfigError(
            "--backend and --base-url need --judge: they set the backend of the judges named "
            "on the command line",
            key="judges",
            fix="Add --judge MODEL, or set them in each judge's backend in the grid file.",
        )
    options["judges"] = [{"backend": {**j["backend"], **given}} for j in options["judges"]]
    return options


def resolve_paths(config: JudgeEvalConfig, path: str | Path | None) -> JudgeEvalConfig:
    """Relative paths in a grid file that exist beside it are taken from there (as the
    pipeline config does): benchmark files, constitutions, templates, model directories."""
    if path is None:
        return config
    base = Path(path).resolve().parent
    for bench in config.benchmarks:
        bench.source = resolve_beside(bench.source, base) or bench.source
    config.constitutions = [
        (resolve_beside(c, base) or c) if c.endswith((".yaml", ".yml")) else c
        for c in config.constitutions
    ]
    config.templates = [resolve_beside(t, base) if t else t for t in config.templates]
    for judge in config.judges:
        for spec in [judge.backend, *(judge.panel or [])]:
            if spec is not None and spec.kind in ("vllm", "transformers"):
                spec.model = resolve_beside(spec.model, base) or spec.model
    return config
