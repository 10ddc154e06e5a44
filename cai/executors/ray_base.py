"""What the Ray executor's driver and actors share: its error, starting Ray, and the
environment and backend spec an actor gets from the driver."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cai.backends import BackendSpec
from cai.errors import CaiError

#: Environment variables the actors get from the driver (engine settings, log routing, hub).
_FORWARDED_PREFIXES = ("VLLM_", "CAI_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")
_SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")


class ExecutorError(CaiError, RuntimeError):
    """The Ray executor cannot run the stage (Ray missing, no resources, actors keep dying)."""


def import_ray():
    """The `ray` module, or one CaiError line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(
            "the ray executor needs Ray, which is not installed",
            key="executor.kind",
            fix="pip install 'cai[ray]' (or run with --executor local)",
        ) from None
    return ray


def start_local_ray(num_cpus: int, verbose: bool = False) -> None:
    """Start a Ray instance on this machine for one run (no dashboard).

    Ray lowers its workers' CPU priority (nice 15) by default; here the actors do the run's
    work, so they keep the driver's priority unless RAY_worker_niceness says otherwise.
    """
    ray = import_ray()
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=verbose,
        logging_level=logging.INFO if verbose else logging.ERROR,
    )


def retryable(ray) -> tuple[type[BaseException], ...]:
    """Errors that mean the actor (or its node) is gone, not that the chunk is bad."""
    ex = ray.exceptions
    names = (
        "RayActorError",  # ActorDiedError, ActorUnavailableError
        "NodeDiedError",
        "ObjectLostError",  # the result lived on a node that died
        "OutOfMemoryError",
        "WorkerCrashedError",
    )
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))


def raise_task_error(err: BaseException) -> None:
    """An error raised by cai code inside an actor: re-raise what was raised there.

    A CaiError keeps its one-line message; anything else keeps Ray's remote traceback.
    """
    cause = getattr(err, "cause", None)
    if isinstance(cause, CaiError):
        raise cause from None
    raise err


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's engine and logging settings, passed to every actor (no credentials)."""
    environ = dict(os.environ if environ is None else environ)
    return {
        key: value
        for key, value in environ.items()
        if key.startswith(_FORWARDED_PREFIXES) and not any(w in key for w in _SECRET_WORDS)
    }


def portable_spec(spec: BackendSpec) -> BackendSpec:
    """Local paths made absolute, so an actor with another working directory finds them."""
    update: dict[str, Any] = {}
    model = Path(spec.model).expanduser()
    if model.exists():
        update["model"] = str(model.resolve())
    if spec.cache_path:
        update["cache_path"] = str(Path(spec.cache_path).expanduser().resolve())
    return spec.model_copy(update=update) if update else spec


def engine_key(spec: BackendSpec) -> str:
    """Specs that build the same engine (the call cache is set per stage, not per engine)."""
    return spec.model_copy(update={"cache_path": None}).model_dump_json()
