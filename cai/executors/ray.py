"""The Ray executor: a pool of Ray actors, each holding one backend, processing chunks.

Each actor builds ONE backend from the stage's `BackendSpec` inside itself (for vLLM: one
engine, with `num_gpus` = tensor_parallel_size x pipeline_parallel_size reserved by Ray, so Ray
sets CUDA_VISIBLE_DEVICES for it) and the stage's worker around it from the recipe. Chunks
are the unit of work:

- bounded in-flight work: at most `max_in_flight_per_actor` chunks are queued on one actor,
  and at most 2 x actors x that many chunks are taken from the input before the oldest one
  is committed, so memory stays flat however many items there are;
- results come back in any order and are handed on in input order (completions ahead of
  the oldest outstanding chunk wait in a buffer bounded by that window);
- an actor that dies (its process, or its node) has its in-flight chunks retried on the
  others, and a fresh actor takes its place; after `max_restarts` replacements in one stage
  the run stops with an `ExecutorError` (the chunks committed so far stay: rerun to resume);
- consecutive stages with the same backend (sample, then judge with the policy as judge)
  keep the actors and their engines; another backend replaces the pool.

The driver writes every file (`ChunkedJob` commits each chunk), so a run is byte-identical
to a local one and a driver killed at any point resumes on rerun like a local run. With a
`cache_path` each actor opens the SQLite call cache itself (WAL mode lets several processes
of one machine share it); on a multi-node cluster that path is opened on each node's own
disk, so each node has its own cache.

The driver's side is here and in `ray_session.py` (the pool and one stage's session), the
actor's in `ray_actor.py`, what both share in `ray_base.py`. Ray is an optional dependency
(`pip install 'cai[ray]'`), imported only by these modules.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from typing import Any

from cai.backends import Backend, BackendSpec
from cai.debug import debug_enabled
from cai.executors.base import ChunkWorker, Executor, WorkerRecipe
from cai.executors.config import ExecutorConfig
from cai.executors.ray_actor import ChunkActor
from cai.executors.ray_base import (
    ExecutorError,
    engine_key,
    import_ray,
    one_line,
    portable_spec,
    start_local_ray,
)
from cai.executors.ray_session import Pool, RaySession

__all__ = ["ExecutorError", "RayExecutor", "import_ray", "start_local_ray"]


class RayExecutor(Executor):
    """Chunks processed by a pool of Ray actors; see the module docstring.

    `on_dispatch(seq, actor)` is called just before the chunk numbered `seq` (in input order,
    0-based; a retried chunk keeps its number) is sent to `actor`: for tracing and fault
    injection, e.g. `ray.kill(actor)` to check that nothing is lost.
    """

    kind = "ray"

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        on_dispatch: Callable[[int, Any], None] | None = None,
    ) -> None:
        self.config = config or ExecutorConfig(kind="ray")
        self.on_dispatch = on_dispatch
        self.ray = import_ray()
        self._started_ray = False
        self._pool: Pool | None = None
        self._actor_class: Any = None

    # Ray itself -----------------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        verbose = debug_enabled()
        address = self.config.address or os.environ.get("RAY_ADDRESS")
        try:
            if address:
                ray.init(
                    address=address,
                    log_to_driver=verbose,
                    logging_level=logging.INFO if verbose else logging.ERROR,
                )
            else:
                start_local_ray(self._local_cpus(), verbose)
                self._started_ray = True
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ExecutorError(
                f"cannot start or join Ray ({one_line(err)})",
                key="executor.address",
                fix="Start the cluster first (`ray start --head` on one node), pass its "
                "address (executor.address or RAY_ADDRESS), or leave both unset to start a "
                "local Ray instance.",
            ) from None

    def _local_cpus(self) -> int:
        wanted = math.ceil(self.config.actors * self.config.num_cpus_per_actor)
        return max(os.cpu_count() or 1, wanted, 1)

    def actor_class(self) -> Any:
        if self._actor_class is None:
            self._actor_class = self.ray.remote(ChunkActor)
        return self._actor_class

    def describe_resources(self) -> str:
        total = self.ray.cluster_resources()
        return f"{total.get('GPU', 0):g} GPU(s) and {total.get('CPU', 0):g} CPU(s) in all"

    def resources_for(self, spec: BackendSpec) -> tuple[float, float]:
        """(GPUs, CPUs) one actor reserves for this backend."""
        cpus = float(self.config.num_cpus_per_actor)
        wanted = self.config.num_gpus_per_actor
        if wanted != "auto":
            return float(wanted), cpus
        if self.ray.cluster_resources().get("GPU", 0) <= 0:
            return 0.0, cpus
        if spec.kind == "vllm":
            return float(spec.tensor_parallel_size * spec.pipeline_parallel_size), cpus
        device = str(getattr(spec, "device", "cpu"))
        if device in ("auto", "cuda") or device.startswith("cuda:"):
            return 1.0, cpus
        return 0.0, cpus

    def _check_resources(self, gpus: float, cpus: float) -> None:
        total = self.ray.cluster_resources()
        actors = self.config.actors
        for name, need in (("GPU", gpus), ("CPU", cpus)):
            have = float(total.get(name, 0))
            if need * actors > have + 1e-9:
                raise ExecutorError(
                    f"{actors} actor(s) x {need:g} {name}(s) do not fit: the Ray cluster has "
                    f"{have:g} {name}(s)",
                    key="executor.actors",
                    fix=f"Lower executor.actors, set executor.num_{name.lower()}s_per_actor, or "
                    "add nodes to the cluster (`ray start --address=HEAD:6379` on each).",
                )

    # sessions -----------------------------------------------------------------------------------------
    def open(
        self,
        recipe: WorkerRecipe,
        *,
        backend: Backend | None = None,
        worker: ChunkWorker | None = None,
    ) -> RaySession:
        if backend is not None or worker is not None or recipe.backend is None:
            raise ExecutorError(
                f"the ray executor builds the {recipe.stage} stage's backend inside each "
                "actor from a BackendSpec; a backend object cannot travel there",
                key="executor.kind",
                fix="Describe the model in the config (policy: / judge_backend:) instead of "
                "passing a backend, or use the local executor.",
            )
        self._connect()
        recipe = _with_portable_spec(recipe)
        assert recipe.backend is not None
        if self._pool is not None and (
            self._pool.broken or self._pool.key != engine_key(recipe.backend)
        ):
            self._pool.close()
            self._pool = None
        if self._pool is None:
            gpus, cpus = self.resources_for(recipe.backend)
            self._check_resources(gpus, cpus)
            key = engine_key(recipe.backend)
            self._pool = Pool(self.ray, self.actor_class(), key, gpus, cpus)
        try:
            return RaySession(
                self._pool,
                recipe,
                self.config,
                on_dispatch=self.on_dispatch,
                on_close=self.session_closed,
                resources=self.describe_resources,
            )
        except BaseException:
            self._discard_pool()
            raise

    def session_closed(self, pool: Pool) -> None:
        if pool.broken and pool is self._pool:
            self._discard_pool()

    def _discard_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    def close(self) -> None:
        try:
            self._discard_pool()
        finally:
            if self._started_ray:
                self._started_ray = False
                self.ray.shutdown()


def _with_portable_spec(recipe: WorkerRecipe) -> WorkerRecipe:
    assert recipe.backend is not None
    return dataclasses.replace(recipe, backend=portable_spec(recipe.backend))
