"""The HTTP path: `cai judge` through the offline engine, one `cai serve`, and two.

The same judge and preferences stages (`load_pipeline_config` + `run_pipeline`, as
`overhead.py` runs them) with three judge backends on the tiny model: vLLM's offline engine in
this process, the `openai` backend on one `cai serve` endpoint, and on two (two server
processes, `base_urls: [a, b]`). Every engine and server starts before timing; the n-th run of
each variant judges its own n-th set of pairs, so no server answers a repeat from the prefix
cache of the previous one. Reported: one server / offline (what HTTP costs) and two servers /
one (scaling), next to the ceilings of this machine: two CPU-bound processes vs one (as
`ray_executor.py` measures it) and the raw requests (the same token ids, `max_tokens=1`, no
cai) sent to two servers vs one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle
from pathlib import Path

from common import (
    build_tiny_model,
    fmt_ratio,
    interleave,
    median,
    print_header,
    record_choice_requests,
    record_result,
    start_engine,
    synthetic_samples,
    table,
    token_prompts,
    write_jsonl,
)
from ray_executor import cpu_ceiling
from servers import SERVED_NAME, exit_on_sigterm, start_servers

VARIANTS = ("offline", "1 server", "2 servers")
CONCURRENCY = 16  # the openai backend's default max_concurrency


def judge_run(backend, samples: Path, work: Path) -> dict:
    """One `cai judge` library run (judge + preferences) into a fresh `work`."""
    from cai.pipeline import load_pipeline_config, run_pipeline

    shutil.rmtree(work, ignore_errors=True)
    config = load_pipeline_config(
        None,
        [
            "stages=[judge, preferences]",
            f"samples={samples}",
            f"output_dir={work}",
            "constitution=default",
        ],
    )
    return run_pipeline(config, judge_backend=backend).summary


def raw_http(base_urls: list[str], prompts: list[list[int]]) -> None:
    """The raw requests: each prompt's token ids, one token, no cai; 16 in flight in all."""
    import httpx

    with httpx.Client(timeout=120) as client:

        def send(job: tuple[str, list[int]]) -> None:
            url, ids = job
            body = {"model": SERVED_NAME, "prompt": ids, "max_tokens": 1, "temperature": 0.0}
            client.post(f"{url}/completions", json=body).raise_for_status()

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(send, zip(cycle(base_urls), prompts, strict=False)))


def make_sets(root: Path, pairs: int, count: int) -> list[Path]:
    sets = []
    for n in range(count):
        path = root / f"pairs{n}.jsonl"
        write_jsonl(path, synthetic_samples(pairs, seed=200 + n))
        sets.append(path)
    return sets


def measure(args, root: Path) -> dict:
    """Start everything, warm up, time the judge variants and the raw ceilings interleaved."""
    from cai.backends import backend_spec, make_backend
    from cai.backends.vllm_offline import VLLMOfflineBackend

    model_dir = build_tiny_model(root / "model")
    sets = make_sets(root, args.pairs, args.repeats + 1)  # set 0 warms every path up
    servers = start_servers(model_dir, [root / f"serve{i}.log" for i in range(2)])
    try:
        engine = start_engine(model_dir)
        urls = [s.base_url for s in servers]
        backends = {
            "offline": VLLMOfflineBackend(str(model_dir), engine=engine, show_progress=False),
            "1 server": make_backend(
                backend_spec(kind="openai", model=SERVED_NAME, base_urls=urls[:1])
            ),
            "2 servers": make_backend(
                backend_spec(kind="openai", model=SERVED_NAME, base_urls=urls)
            ),
        }
        runs = dict.fromkeys(VARIANTS, 0)
        stage_s: dict[str, list[float]] = {name: [] for name in VARIANTS}

        def variant(name: str):
            def go() -> None:
                summary = judge_run(backends[name], sets[runs[name]], root / "runs" / name)
                runs[name] += 1
                stage_s[name].append(summary["stages"]["judge"]["seconds"])

            return go

        for name in VARIANTS:
            variant(name)()
        stage_s = {name: [] for name in VARIANTS}
        times = interleave({name: variant(name) for name in VARIANTS}, args.repeats)
        prompts, _ = token_prompts(engine.get_tokenizer(), record_choice_requests(sets[0]))
        raw = interleave(
            {"raw 1 server": lambda: raw_http(urls[:1], prompts),
             "raw 2 servers": lambda: raw_http(urls, prompts)},
            args.repeats,
        )  # fmt: skip
        for backend in backends.values():
            backend.close()
    finally:
        for server in servers:
            server.stop()
    return {"times": times, "stage_seconds": stage_s, "raw": raw, "scored": len(prompts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="32 pairs, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 32, 2
    exit_on_sigterm()
    loads = [os.getloadavg()[0]]
    ceiling = cpu_ceiling()
    print(f"two CPU-bound processes vs one on this machine: {ceiling:.2f}x", flush=True)
    root = Path(tempfile.mkdtemp(prefix="cai-bench-http-"))
    try:
        print_header(f"http path: {args.pairs} pairs, {args.repeats} repeats")
        got = measure(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    loads.append(os.getloadavg()[0])
    entry = report(args, got, ceiling, loads)
    print(entry["details"])
    record_result("http_path", entry)


def report(args, got: dict, ceiling: float, loads: list[float]) -> dict:
    med = {name: median(values) for name, values in got["times"].items()}
    stage = {name: median(values) for name, values in got["stage_seconds"].items()}
    raw = {name: median(values) for name, values in got["raw"].items()}
    http = med["offline"] / med["1 server"]
    scaling = med["1 server"] / med["2 servers"]
    raw_scaling = raw["raw 1 server"] / raw["raw 2 servers"]
    rows = [
        [name, f"{med[name]:.2f}", f"{args.pairs / med[name]:.1f}", f"{stage[name]:.2f}",
         fmt_ratio(med["offline"] / med[name]), fmt_ratio(med["1 server"] / med[name])]
        for name in VARIANTS
    ]  # fmt: skip
    raw_rows = [
        [name, f"{raw[name]:.2f}", f"{got['scored'] / raw[name]:.0f}",
         fmt_ratio(raw["raw 1 server"] / raw[name])]
        for name in raw
    ]  # fmt: skip
    details = "\n".join(
        [
            f"The tiny random model; {args.pairs} pairs x 4 principles x 2 orders = "
            f"{got['scored']} scored prompts per run; `cai judge` library path (judge + "
            f"preferences stages), median of {args.repeats} interleaved repeats, a fresh set "
            "of pairs per repeat; every engine and server started before timing. The openai "
            f"backend keeps up to {CONCURRENCY} requests in flight over all its servers.",
            "",
            table(
                [
                    "judge backend",
                    "seconds",
                    "pairs/s",
                    "judge stage s",
                    "vs offline",
                    "vs 1 server",
                ],
                rows,
            ),
            "",
            "The ceiling of two servers: the same scored prompts as raw HTTP requests (token "
            f"ids, `max_tokens=1`, {CONCURRENCY} in flight, no cai), to one server and dealt "
            "in turn to two:",
            "",
            table(["raw requests", "seconds", "prompts/s", "vs 1 server"], raw_rows),
            "",
            f"- HTTP: one server / offline throughput {fmt_ratio(http)} (the same engine "
            "behind an API server: requests, JSON, the server's own tokenizing).",
            f"- Scaling: two servers / one {fmt_ratio(scaling)} through cai; raw requests "
            f"{fmt_ratio(raw_scaling)}; two CPU-bound processes / one {fmt_ratio(ceiling)} "
            f"(ray_executor.py's ceiling). On {os.cpu_count()} cores two servers share the "
            "same CPUs (each engine uses every core it is given), so two servers cannot "
            "beat the ceilings; with a GPU per server the ceiling is the number of servers. "
            "Below 1.00x, two engines cost more than they give: vLLM's CPU engine binds its "
            "threads to every core (its log: `core ids=[0, 1]`) and both engines' threads "
            "then compete for the same two cores, while the pure-Python ceiling has no such "
            "contention.",
            f"- 1-minute load average at the start and at the end: "
            f"{', '.join(f'{x:.1f}' for x in loads)} (other processes shared the machine).",
        ]
    )
    return {
        "title": "9. HTTP path: offline engine, one cai serve, two",
        "command": f"python bench/http_path.py --pairs {args.pairs} --repeats {args.repeats}",
        "summary": [
            ["one server / offline throughput (HTTP overhead)", fmt_ratio(http)],
            ["two servers / one server throughput (cai)", fmt_ratio(scaling)],
            ["two servers / one, raw requests (ceiling)", fmt_ratio(raw_scaling)],
            ["2 processes / 1 on this machine (CPU ceiling)", fmt_ratio(ceiling)],
        ],
        "details": details,
        "raw": {**got, "cpu_ceiling": ceiling, "load": loads},
    }


if __name__ == "__main__":
    main()
