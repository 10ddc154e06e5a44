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

Ray is an optional dependency (`pip install 'cai[ray]'`), imported only here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends import Backend, BackendSpec
from cai.errors import CaiError
from cai.executors.base import (
    Chunk,
    ChunkWorker,
    Executor,
    ExecutorReport,
    ExecutorSession,
    Ledger,
    WorkerRecipe,
    counter_delta,
)
from cai.executors.config import ExecutorConfig
from cai.jobs import EncodedRows

#: Environment variables the actors get from the driver (engine settings, log routing, hub).
_FORWARDED_PREFIXES = ("VLLM_", "CAI_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")
_SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
_SHUTDOWN_WAIT_S = 60.0


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


def _retryable(ray) -> tuple[type[BaseException], ...]:
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


def _raise_task_error(err: BaseException) -> None:
    """An error raised by cai code inside an actor: re-raise what was raised there.

    A CaiError keeps its one-line message; anything else keeps Ray's remote traceback.
    """
    cause = getattr(err, "cause", None)
    if isinstance(cause, CaiError):
        raise cause from None
    raise err


def _one_line(err: BaseException) -> str:
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


def _engine_key(spec: BackendSpec) -> str:
    """Specs that build the same engine (the call cache is set per stage, not per engine)."""
    return spec.model_copy(update={"cache_path": None}).model_dump_json()


# ---- inside the actor ----------------------------------------------------------------------------
class ChunkActor:
    """The process-side half: one backend, the current stage's worker, and `process`."""

    def __init__(self) -> None:
        self._engine: Backend | None = None
        self._engine_key: str | None = None
        self._cache: Any = None
        self._worker: ChunkWorker | None = None

    def setup(self, recipe: WorkerRecipe, env: dict[str, str]) -> dict[str, Any]:
        """Build (or keep) the engine, wrap this stage's call cache, build the worker."""
        self._apply_env(env)
        spec = recipe.backend
        assert spec is not None
        key = _engine_key(spec)
        if self._engine is not None and self._engine_key != key:
            self.shutdown()
        if self._engine is None:
            from cai.backends import make_backend
            from cai.platform import prepare_vllm_env

            prepare_vllm_env()
            self._engine = make_backend(spec.model_copy(update={"cache_path": None}))
            self._engine_key = key
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        backend = self._engine
        if spec.cache_path:
            from cai.backends.cached import CachedBackend
            from cai.cache import CallCache

            self._cache = CallCache(spec.cache_path)
            backend = CachedBackend(self._engine, self._cache)
        self._worker = recipe.build(backend)
        return {
            "model_id": self._worker.model_id,
            "node": _node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    @staticmethod
    def _apply_env(env: dict[str, str]) -> None:
        for key, value in env.items():
            os.environ[key] = value
        config = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
        if config and not Path(config).is_file():
            # The driver routes engine logs to a file on its own node; elsewhere vLLM logs
            # through Ray's worker logs instead.
            os.environ.pop("VLLM_LOGGING_CONFIG_PATH", None)
        elif config:
            import json
            import logging.config

            with contextlib.suppress(OSError, ValueError, TypeError):
                logging.config.dictConfig(json.loads(Path(config).read_text(encoding="utf-8")))

    def process(self, chunk: Chunk) -> tuple[EncodedRows, float, dict[str, int]]:
        """The chunk's rows, encoded here as the JSONL text the driver commits."""
        from cai.jobs import encode_rows

        worker = self._worker
        assert worker is not None, "setup() runs before process()"
        before = worker.counters()
        started = time.perf_counter()
        rows = encode_rows(worker.process(chunk))
        seconds = time.perf_counter() - started
        return rows, seconds, counter_delta(before, worker.counters())

    def shutdown(self) -> None:
        self._worker = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._engine is not None:
            engine, self._engine = self._engine, None
            self._engine_key = None
            engine.close()


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # pragma: no cover - outside Ray
        return None


# ---- the driver side ---------------------------------------------------------------------------
@dataclass
class _Slot:
    name: str
    handle: Any
    alive: bool = True
    inflight: set[Any] = field(default_factory=set)


@dataclass
class _Task:
    seq: int
    index: int
    chunk: Chunk
    slot: _Slot | None = None


class _Pool:
    """The actors of one engine key; survives from stage to stage while that key is asked for."""

    def __init__(self, executor: RayExecutor, spec: BackendSpec) -> None:
        self.executor = executor
        self.key = _engine_key(spec)
        self.spec = spec
        self.ray = executor.ray
        self.gpus, self.cpus = executor.resources_for(spec)
        self.slots: list[_Slot] = []
        self._count = 0
        self.broken = False

    def new_slot(self) -> _Slot:
        actor_class = self.executor.actor_class()
        options: dict[str, Any] = {
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
            "max_restarts": 0,
            "max_task_retries": 0,
            "scheduling_strategy": "SPREAD",
        }
        handle = actor_class.options(**options).remote()
        slot = _Slot(name=f"actor-{self._count}", handle=handle)
        self._count += 1
        self.slots.append(slot)
        return slot

    def live(self) -> list[_Slot]:
        return [s for s in self.slots if s.alive]

    def drop(self, slot: _Slot) -> None:
        slot.alive = False
        with contextlib.suppress(Exception):
            self.ray.kill(slot.handle, no_restart=True)

    def close(self) -> None:
        live = self.live()
        refs = []
        for slot in live:
            with contextlib.suppress(Exception):
                refs.append(slot.handle.shutdown.remote())
        if refs:
            with contextlib.suppress(Exception):
                self.ray.wait(refs, num_returns=len(refs), timeout=_SHUTDOWN_WAIT_S)
        for slot in live:
            self.drop(slot)
        self.slots.clear()


class RaySession(ExecutorSession):
    kind = "ray"

    def __init__(self, executor: RayExecutor, pool: _Pool, recipe: WorkerRecipe) -> None:
        self.executor = executor
        self.config = executor.config
        self.pool = pool
        self.ray = executor.ray
        self.recipe = recipe
        self.label = f"ray x{self.config.actors}"
        self._env = forwarded_env()
        self._ledger = Ledger("ray", actors=self.config.actors)
        self._setups: dict[Any, _Slot] = {}
        self._last_death: str | None = None
        self._start()

    # starting ---------------------------------------------------------------------------------
    def _setup(self, slot: _Slot) -> Any:
        ref = slot.handle.setup.remote(self.recipe, self._env)
        self._setups[ref] = slot
        return ref

    def _start(self) -> None:
        """Every actor set up for this stage (engines loaded, or kept from the last stage).

        An actor that dies while loading is replaced like one that dies later (it counts
        toward max_restarts); an error raised by cai while loading (a missing model, bad
        templates) stops the run at once.
        """
        ray = self.ray
        retryable = _retryable(ray)
        while len(self.pool.live()) < self.config.actors:
            self.pool.new_slot()
        for slot in self.pool.live():
            self._ledger.actor(slot.name)  # the report lists actors in the pool's order
            self._setup(slot)
        deadline = time.monotonic() + self.config.start_timeout_s
        model_ids = set()
        while self._setups:
            remaining = max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(self._setups), num_returns=1, timeout=remaining)
            if not ready:
                self.pool.broken = True
                raise ExecutorError(
                    f"{len(self._setups)} of {self.config.actors} Ray actors did not start "
                    f"within {self.config.start_timeout_s:.0f} s (each asks for "
                    f"{self.pool.gpus:g} GPU(s) and {self.pool.cpus:g} CPU(s); the cluster has "
                    f"{self.executor.describe_resources()})",
                    key="executor",
                    fix="Check `ray status` for free resources and the actors' logs, lower "
                    "executor.actors, or raise executor.start_timeout_s for slow model loads.",
                )
            slot = self._setups.pop(ready[0])
            try:
                info = ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                self.pool.broken = True
                _raise_task_error(err)
            except retryable as err:
                self._lost(slot, err, {}, [])
                continue
            self._note(slot, info)
            model_ids.add(info["model_id"])
        if len(model_ids) != 1:
            self.pool.broken = True
            raise ExecutorError(
                f"the Ray actors loaded different models: {sorted(model_ids)}",
                key="executor",
                fix="Give every node the same model files (or the same hub revision).",
            )
        self.model_id = model_ids.pop()

    def _note(self, slot: _Slot, info: dict[str, Any]) -> None:
        node = info.get("node")
        where = f"{info.get('host')}/{node[:8]}" if node else info.get("host")
        self._ledger.actor(slot.name, node=where, pid=info.get("pid"))

    # running ----------------------------------------------------------------------------------
    def _free_slot(self) -> _Slot | None:
        limit = self.config.max_in_flight_per_actor
        free = [s for s in self.pool.live() if len(s.inflight) < limit]
        return min(free, key=lambda s: len(s.inflight)) if free else None

    def _lost(self, slot: _Slot, err: BaseException, refs: dict[Any, _Task], retry: list) -> None:
        """An actor died: its chunks go back in the queue and a fresh actor takes its place."""
        self._last_death = _one_line(err)
        for ref in list(slot.inflight):
            task = refs.pop(ref, None)
            if task is not None:
                retry.append(task)
        slot.inflight.clear()
        for ref in [r for r, s in self._setups.items() if s is slot]:
            self._setups.pop(ref)
        self._ledger.actor(slot.name, died=True)
        self.pool.drop(slot)
        self._ledger.restarts += 1
        if self._ledger.restarts > self.config.max_restarts:
            self.pool.broken = True
            raise ExecutorError(
                f"gave up after {self._ledger.restarts} Ray actor deaths in the "
                f"{self.recipe.stage} stage (max_restarts={self.config.max_restarts}); last: "
                f"{self._last_death}",
                key="executor.max_restarts",
                fix="Chunks committed so far are kept: find why the actors die (`ray logs`, "
                "node health, memory), then rerun the same command to resume.",
            )
        fresh = self.pool.new_slot()
        self._ledger.actor(fresh.name, replaces=slot.name)
        self._setup(fresh)

    def map(self, chunks: Iterable[tuple[int, Chunk]]) -> Iterator[tuple[int, EncodedRows]]:
        ray = self.ray
        retryable = _retryable(ray)
        window = 2 * self.config.actors * self.config.max_in_flight_per_actor
        source = iter(chunks)
        exhausted = False
        next_seq = next_out = 0
        retry: list[_Task] = []
        refs: dict[Any, _Task] = {}
        done: dict[int, tuple[int, EncodedRows]] = {}
        on_dispatch = self.executor.on_dispatch
        self._ledger.start()
        finished = False
        try:
            while True:
                # Hand out work while some actor has room.
                while True:
                    slot = self._free_slot()
                    if slot is None:
                        break
                    if retry:
                        retry.sort(key=lambda t: t.seq)
                        task = retry.pop(0)
                    elif not exhausted and next_seq - next_out < window:
                        try:
                            index, chunk = next(source)
                        except StopIteration:
                            exhausted = True
                            continue
                        task = _Task(next_seq, index, chunk)
                        next_seq += 1
                    else:
                        break
                    if on_dispatch is not None:
                        on_dispatch(task.seq, slot.handle)
                    ref = slot.handle.process.remote(task.chunk)
                    task.slot = slot
                    refs[ref] = task
                    slot.inflight.add(ref)
                # Hand on finished chunks in input order.
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
                if exhausted and not refs and not retry:
                    finished = True
                    return
                waiting = list(refs) + list(self._setups)
                [ref], _ = ray.wait(waiting, num_returns=1)
                if ref in self._setups:
                    slot = self._setups.pop(ref)
                    try:
                        info = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        self.pool.broken = True
                        _raise_task_error(err)
                    except retryable as err:
                        self._lost(slot, err, refs, retry)
                        continue
                    if info["model_id"] != self.model_id:
                        self.pool.broken = True
                        raise ExecutorError(
                            f"a replacement Ray actor loaded {info['model_id']!r}, not "
                            f"{self.model_id!r}",
                            key="executor",
                            fix="Give every node the same model files (or hub revision).",
                        )
                    self._note(slot, info)
                    continue
                task = refs.pop(ref)
                slot = task.slot
                assert slot is not None
                slot.inflight.discard(ref)
                try:
                    rows, seconds, counters = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    self.pool.broken = True
                    _raise_task_error(err)
                except retryable as err:
                    retry.append(task)
                    if slot.alive:
                        self._lost(slot, err, refs, retry)
                    continue
                self._ledger.record(slot.name, len(task.chunk), seconds, counters)
                done[task.seq] = (task.index, rows)
        finally:
            self._ledger.stop()
            if not finished:
                # Stopped early (an error, or the caller stopped reading): whatever the actors
                # still hold is abandoned, so the pool is not reused.
                self.pool.broken = True

    def report(self) -> ExecutorReport:
        return self._ledger.report()

    def close(self, failed: bool = False) -> None:
        if failed:
            self.pool.broken = True
        self.executor.session_closed(self.pool)


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
        self._pool: _Pool | None = None
        self._actor_class: Any = None

    # Ray itself -----------------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        from cai.debug import debug_enabled

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
                f"cannot start or join Ray ({_one_line(err)})",
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
            self._pool.broken or self._pool.key != _engine_key(recipe.backend)
        ):
            self._pool.close()
            self._pool = None
        if self._pool is None:
            pool = _Pool(self, recipe.backend)
            self._check_resources(pool.gpus, pool.cpus)
            self._pool = pool
        try:
            return RaySession(self, self._pool, recipe)
        except BaseException:
            self._discard_pool()
            raise

    def session_closed(self, pool: _Pool) -> None:
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
    import dataclasses

    assert recipe.backend is not None
    return dataclasses.replace(recipe, backend=portable_spec(recipe.backend))
