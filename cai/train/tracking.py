"""Experiment trackers (TensorBoard, W&B, Trackio, MLflow) for every trainer and the loop.

One setting, `report_to`, names them. The TRL trainers get it as their own `report_to`;
cai's PPO passes it to its Accelerator (`log_with`), and the loop, which trains through other
trainers, opens one run of its own with accelerate's tracker classes directly, so that no
Accelerator (a process-wide state) is made in the loop's process before its trainers make
theirs.

Nothing is sent anywhere unless asked: the default is no tracker, and "all" (whatever
happens to be installed, transformers' old default) is refused, so an installed `wandb`
never uploads a run nobody asked for. Local trackers write under `<output_dir>/runs/`,
where TRL's TensorBoard callback writes too: `tensorboard --logdir <output_dir>/runs`.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator

from cai.errors import CaiError

TRACKERS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "trackio": ("trackio",),
    "mlflow": ("mlflow",),
}
"""The trackers cai offers, each with the packages that provide it (any one will do)."""
RUNS_DIR = "runs"
"""Where local trackers write inside an output directory (TRL's TensorBoard default too)."""


class TrackerError(CaiError, ValueError):
    """A `report_to` entry names no tracker, or one whose package is not installed."""


def normalize_report_to(values: str | Iterable[str] | None) -> list[str]:
    """`report_to` as a checked list: "none" or nothing -> [], commas split, repeats dropped.

    An unknown name, "all", or a tracker whose package is missing is an error that names
    the fix, instead of accelerate's silent skip of a tracker it cannot import."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    names: list[str] = []
    for item in items:
        for name in (part.strip().lower() for part in str(item).split(",")):
            if name and name != "none" and name not in names:
                names.append(name)
    for name in names:
        _check_tracker(name)
    return names


def _check_tracker(name: str) -> None:
    if name == "all":
        raise TrackerError(
            "report_to=all would send the run to every tracker that happens to be installed",
            key="report_to",
            fix=f"Name the trackers you want: {', '.join(TRACKERS)} (or none).",
        )
    if name not in TRACKERS:
        raise TrackerError(
            f"unknown tracker {name!r}",
            key="report_to",
            fix=f"Use one or more of {', '.join(TRACKERS)}, or none.",
        )
    packages = TRACKERS[name]
    if not any(importlib.util.find_spec(package) for package in packages):
        raise TrackerError(
            f"report_to names {name}, but its package is not installed",
            key="report_to",
            fix=f"pip install {packages[0]}, or leave {name} out of report_to.",
        )


ReportTo = Annotated[list[str], BeforeValidator(normalize_report_to)]
"""The `report_to` setting of every trainer and the loop: tracker names, checked on load."""


def trl_report_to(report_to: Iterable[str]) -> list[str] | str:
    """The value for a TRL/transformers config: the checked list, or "none" (never the
    library default)."""
    names = normalize_report_to(list(report_to))
    return names or "none"


def runs_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / RUNS_DIR


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested settings dict as one level of `a.b` keys holding str / int / float / bool
    (lists as JSON text): the only values every tracker's hyper-parameter table takes."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{name}."))
        elif value is None or isinstance(value, bool | int | float | str):
            flat[name] = "none" if value is None else value
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a metrics row (trackers plot numbers; None and text are left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def accelerator_trackers(report_to: Iterable[str], output_dir: str | Path) -> dict[str, Any]:
    """An Accelerator's `log_with` (the checked names, or None: no tracker at all) and, for
    local trackers, `project_dir` (they write under `<output_dir>/runs/<project>`)."""
    names = normalize_report_to(list(report_to))
    if not names:
        return {"log_with": None}
    return {"log_with": names, "project_dir": str(runs_dir(output_dir))}


def start_accelerator_run(
    accelerator, project: str, run_name: str, config: Mapping[str, Any]
) -> None:
    """Open the Accelerator's trackers (named by `log_with`) and log the run's settings."""
    if not accelerator.log_with:
        return
    init_kwargs = {
        "wandb": {"name": run_name},
        "trackio": {"name": run_name},
        "mlflow": {"run_name": run_name},
    }
    accelerator.init_trackers(project, config=flat_config(config), init_kwargs=init_kwargs)


def finish_accelerator_run(accelerator) -> None:
    """Close the trackers; the process group stays (`end_training` would destroy it, and
    it belongs to the caller, e.g. a loop that trains again in the same process)."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []


class TrackerRun:
    """One tracker run outside any Accelerator (the loop's): start, log rows, finish.

    Built from accelerate's own tracker classes, so a loop run looks like a PPO run in the
    tracker. Logging happens on the calling process only."""

    def __init__(
        self,
        report_to: Iterable[str],
        output_dir: str | Path,
        project: str,
        run_name: str,
        config: Mapping[str, Any],
    ) -> None:
        self.trackers = []
        names = normalize_report_to(list(report_to))
        if not names:
            return
        from accelerate import PartialState
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        PartialState()  # the trackers' logging and main-process checks read it
        for name in names:
            cls = LOGGER_TYPE_TO_CLASS[name]
            if cls.requires_logging_directory:
                tracker = cls(project, str(runs_dir(output_dir)))
            elif name in ("wandb", "trackio"):
                tracker = cls(project, name=run_name)
            elif name == "mlflow":
                tracker = cls(project, run_name=run_name)
            else:
                tracker = cls(project)
            tracker.start()
            tracker.store_init_configuration(flat_config(config))
            self.trackers.append(tracker)

    def log(self, values: Mapping[str, Any], step: int) -> None:
        row = numeric(values)
        for tracker in self.trackers:
            tracker.log(row, step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []

    def __enter__(self) -> TrackerRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
