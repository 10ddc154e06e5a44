"""The HTTP path: `cai judge` through the offline engine, one `cai serve`, and two, against a
raw async client sending the same scoring requests to the same servers.

The same judge and preferences stages (`load_pipeline_config` + `run_pipeline`, as
`overhead.py` runs them) with three judge backends: vLLM's offline engine in this process, the
`openai` backend on one `cai serve` endpoint, and on two (`base_urls: [a, b]`). The raw client
is aiohttp on one event loop, no cai code: each of the judge's prompts as token ids (built as
cai builds them), `max_tokens=1`, the log-probs of the choice tokens, at the concurrency that
was fastest for it among a few tried before timing. Every engine and server starts before
timing; each run judges (or sends) its own set of pairs, so no server answers a repeat from
its prefix cache. Reported: cai / raw through one server and through two, two servers / one
for both, one server / offline, and each server's chosen concurrency and queueing time.

On a fleet someone else started: `python bench/http_path.py --model M --servers URL1,URL2`
(the offline row is left out; M names the checkpoint the servers serve, for its tokenizer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from itertools import cycle
from pathlib import Path

from common import (
    bench_model,
    fmt_ratio,
    interleave,
    median,
    model_label,
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
RAW = ("raw 1 server", "raw 2 servers")
CONCURRENCIES = (8, 16, 32, 64)  # tried for the raw client, per server


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


def raw_jobs(tokenizer, samples: Path, model: str) -> list[dict]:
    """The request bodies cai's judge sends for `samples`, built without cai's client."""
    requests = record_choice_requests(samples)
    prompts, choices = token_prompts(tokenizer, requests)
    return [
        {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0.0,
         "logprobs": len(labels), "logprob_token_ids": labels,
         "return_tokens_as_token_ids": True}
        for ids, labels in zip(prompts, choices, strict=True)
    ]  # fmt: skip


def raw_http(base_urls: list[str], bodies: list[dict], concurrency: int) -> None:
    """The raw client: aiohttp on one loop, `concurrency` in flight per server, no cai."""
    import aiohttp

    async def run() -> None:
        gates = {url: asyncio.Semaphore(concurrency) for url in base_urls}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def send(url: str, body: dict) -> None:
                async with gates[url], session.post(f"{url}/completions", json=body) as reply:
                    reply.raise_for_status()
                    top = (await reply.json())["choices"][0]["logprobs"]["top_logprobs"][0]
                    assert len(top) >= len(body["logprob_token_ids"])

            await asyncio.gather(*(send(u, b) for u, b in zip(cycle(base_urls), bodies)))

    asyncio.run(run())


def best_concurrency(base_urls: list[str], bodies: list[dict]) -> tuple[int, dict[int, float]]:
    """The raw client's fastest concurrency per server on this machine (tried before timing)."""
    seconds = {}
    for concurrency in CONCURRENCIES:
        started = time.perf_counter()
        raw_http(base_urls, bodies, concurrency)
        seconds[concurrency] = time.perf_counter() - started
    return min(seconds, key=seconds.__getitem__), seconds


def _serve_stub(queue) -> None:
    from cai.testing.openai_stub import OpenAIStub

    with OpenAIStub() as stub:
        queue.put(stub.url)
        time.sleep(3600)


def client_cpu(count: int = 2000) -> dict[str, float]:
    """The client's own CPU per scored prompt (two requests: /tokenize, then the scoring)
    against a stub server in another process that answers at once, for each transport."""
    import multiprocessing

    from cai.backends.base import ChoiceRequest
    from cai.backends.openai_server import OpenAIServerBackend

    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    stub = spawn.Process(target=_serve_stub, args=(queue,), daemon=True)
    stub.start()
    url = queue.get(timeout=60)
    requests = [
        ChoiceRequest(messages=[{"role": "user", "content": f"question {i} " * 20}])
        for i in range(count)
    ]
    cost = {}
    try:
        for transport in ("threads", "async"):
            backend = OpenAIServerBackend([url], show_progress=False, transport=transport)
            backend.score_choices(requests[:50])
            started = time.process_time()
            backend.score_choices(requests)
            cost[transport] = (time.process_time() - started) / count * 1e6
            backend.close()
    finally:
        stub.kill()
    return cost


def make_sets(root: Path, pairs: int, count: int) -> list[Path]:
    sets = []
    for n in range(count):
        path = root / f"pairs{n}.jsonl"
        write_jsonl(path, synthetic_samples(pairs, seed=200 + n))
        sets.append(path)
    return sets


def served_name(url: str) -> str:
    """The one model a running server serves."""
    import httpx

    names = [m["id"] for m in httpx.get(f"{url}/models", timeout=30).json()["data"]]
    if len(names) != 1:
        raise SystemExit(f"{url} serves {names}; this script needs a server with one model")
    return names[0]


def make_backends(args, urls: list[str], model_dir: Path) -> tuple[dict, object]:
    """cai's judge backends by variant (offline only on servers started here) and the
    tokenizer the raw client builds its token ids with."""
    from cai.backends import backend_spec, make_backend

    settings = {"served_model_name": served_name(urls[0]) if args.servers else SERVED_NAME}
    if args.max_concurrency:
        settings["max_concurrency"] = args.max_concurrency

    def openai(base_urls: list[str]):
        return make_backend(backend_spec(kind="openai", base_urls=base_urls, **settings))

    backends = {"1 server": openai(urls[:1])}
    if len(urls) > 1:
        backends["2 servers"] = openai(urls)
    if args.servers:
        from transformers import AutoTokenizer

        return backends, AutoTokenizer.from_pretrained(str(model_dir))
    from cai.backends.vllm_offline import VLLMOfflineBackend

    engine = start_engine(model_dir)
    backends["offline"] = VLLMOfflineBackend(str(model_dir), engine=engine, show_progress=False)
    return backends, engine.get_tokenizer()


def measure(args, root: Path) -> dict:
    """Start everything, warm up, time cai's variants and the raw client interleaved."""
    model_dir = bench_model(args.model, root / "model")
    runs = args.repeats
    sets = make_sets(root, args.pairs, 1 + 3 * runs)  # set 0 warms up; then one set per run
    logs = [root / f"serve{i}.log" for i in range(2)]
    servers = [] if args.servers else start_servers(model_dir, logs)
    urls = args.servers or [s.base_url for s in servers]
    try:
        backends, tokenizer = make_backends(args, urls, model_dir)
        served = backends["1 server"].model
        names = [name for name in VARIANTS if name in backends]
        raw_names = list(RAW[: len(backends) - ("offline" in backends)])
        raw_urls = {"raw 1 server": urls[:1], "raw 2 servers": urls}
        first = {name: 1 + runs * k for k, name in enumerate(raw_names, start=1)}
        bodies = {name: [raw_jobs(tokenizer, sets[first[name] + n], served) for n in range(runs)]
                  for name in raw_names}  # fmt: skip
        done = dict.fromkeys(names + raw_names, 0)
        stage_s: dict[str, list[float]] = {name: [] for name in names}

        def variant(name: str):
            def go() -> None:
                summary = judge_run(backends[name], sets[done[name]], root / "runs" / name)
                done[name] += 1
                stage_s[name].append(summary["stages"]["judge"]["seconds"])

            return go

        def raw_variant(name: str, concurrency: int):
            def go() -> None:
                raw_http(raw_urls[name], bodies[name][done[name]], concurrency)
                done[name] += 1

            return go

        for name in names:
            variant(name)()
        warm = raw_jobs(tokenizer, sets[0], served)
        tried = {name: best_concurrency(raw_urls[name], warm) for name in raw_names}
        stage_s = {name: [] for name in names}
        calls = {name: variant(name) for name in names}
        calls.update({name: raw_variant(name, tried[name][0]) for name in raw_names})
        times = interleave(calls, runs)
        endpoints = {name: backends[name].endpoint_stats() for name in names if name != "offline"}
        for backend in backends.values():
            backend.close()
    finally:
        for server in servers:
            server.stop()
    return {"times": times, "stage_seconds": stage_s, "raw_concurrency": tried,
            "endpoints": endpoints, "scored": len(warm)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="32 pairs, 2 repeats")
    parser.add_argument("--model", help="a model directory or name (default: the tiny model)")
    parser.add_argument(
        "--servers", type=lambda v: [u.strip() for u in v.split(",") if u.strip()],
        help="base URLs of running servers (one or two) serving --model; none are started",
    )  # fmt: skip
    parser.add_argument(
        "--max-concurrency", type=int, default=64,
        help="cai's ceiling per server (its adaptive window stays under it; default 64, the "
        "largest concurrency tried for the raw client)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 32, 2
    if args.servers and not args.model:
        parser.error("--servers needs --model (the checkpoint they serve, for its tokenizer)")
    exit_on_sigterm()
    loads = [os.getloadavg()[0]]
    ceiling = cpu_ceiling()
    print(f"two CPU-bound processes vs one on this machine: {ceiling:.2f}x", flush=True)
    cpu = client_cpu()
    print(f"client CPU per scored prompt: {cpu}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="cai-bench-http-"))
    try:
        print_header(f"http path: {args.pairs} pairs, {args.repeats} repeats")
        got = measure(args, root)
        got["client_cpu_us"] = cpu
    finally:
        shutil.rmtree(root, ignore_errors=True)
    loads.append(os.getloadavg()[0])
    entry = report(args, got, ceiling, loads)
    print(entry["details"])
    record_result("http_path" if not args.model else f"http_path-{Path(args.model).name}", entry)


def ratios(med: dict[str, float]) -> list[list[str]]:
    """The summary rows: cai against the raw client, scaling, and HTTP against offline."""
    rows = [["cai through one server / raw requests to the same server",
             fmt_ratio(med["raw 1 server"] / med["1 server"])]]  # fmt: skip
    if "2 servers" in med:
        cai_scaling = med["1 server"] / med["2 servers"]
        raw_scaling = med["raw 1 server"] / med["raw 2 servers"]
        rows += [
            ["cai through two servers / raw requests to the same two servers",
             fmt_ratio(med["raw 2 servers"] / med["2 servers"])],
            ["two servers / one: cai's scaling / the raw client's", fmt_ratio(cai_scaling / raw_scaling)],
            ["two servers / one server throughput (cai)", fmt_ratio(cai_scaling)],
            ["two servers / one, raw requests", fmt_ratio(raw_scaling)],
        ]  # fmt: skip
    if "offline" in med:
        rows.append(["one server / offline throughput (HTTP overhead)",
                     fmt_ratio(med["offline"] / med["1 server"])])  # fmt: skip
    return rows


def endpoint_lines(endpoints: dict[str, list[dict]]) -> list[str]:
    return [
        f"- cai, {name}: {e['url']} ran at concurrency {e['concurrency']} (peak "
        f"{e['peak_concurrency']}), {e['requests']} requests, {e['throttled']} throttled, "
        f"{e['mean_queue_ms']:.1f} ms queued per request"
        for name, stats in endpoints.items()
        for e in stats
    ]


def report(args, got: dict, ceiling: float, loads: list[float]) -> dict:
    med = {name: median(values) for name, values in got["times"].items()}
    stage = {name: median(values) for name, values in got["stage_seconds"].items()}
    rows = [
        [name, f"{med[name]:.2f}", f"{got['scored'] / med[name]:.0f}",
         f"{stage[name]:.2f}" if name in stage else "-",
         fmt_ratio(med["raw 1 server"] / med[name])]
        for name in med
    ]  # fmt: skip
    tried = [
        f"- raw client, {name}: {best} in flight per server was fastest of "
        + ", ".join(f"{c} ({t:.2f} s)" for c, t in seconds.items())
        for name, (best, seconds) in got["raw_concurrency"].items()
    ]
    where = f"the servers at {', '.join(args.servers)}" if args.servers else "`cai serve` here"
    details = "\n".join(
        [
            f"{model_label(args.model)}; {args.pairs} pairs x 4 principles x 2 orders = "
            f"{got['scored']} scored prompts per run through {where}; `cai judge` library path "
            f"(judge + preferences stages) against a raw aiohttp client sending the same "
            f"scoring requests; cai's `max_concurrency` (the ceiling of its adaptive window per "
            f"server) {args.max_concurrency}; median of {args.repeats} interleaved repeats, a fresh set of "
            "pairs per run; every engine and server started before timing.",
            "",
            table(["variant", "seconds", "prompts/s", "judge stage s", "vs raw 1 server"], rows),
            "",
            *tried,
            "- The client's own CPU per scored prompt (a `/tokenize` request and a scoring "
            "request) against a stub server in another process that answers at once: "
            f"{got['client_cpu_us']['threads']:.0f} µs with a thread per request over httpx "
            f"(`transport: threads`), {got['client_cpu_us']['async']:.0f} µs on one event loop "
            "over aiohttp (the default). Against `cai serve` here the client tokenizes the "
            "prompts itself (the checkpoint is local), so one request goes out per prompt.",
            *endpoint_lines(got["endpoints"]),
            f"- Two CPU-bound processes / one on this machine: {fmt_ratio(ceiling)}; on "
            f"{os.cpu_count()} cores two servers share the same CPUs, so two servers cannot "
            "beat one here; with a GPU per server the ceiling is the number of servers.",
            f"- 1-minute load average at the start and at the end: "
            f"{', '.join(f'{x:.1f}' for x in loads)}"
            + (" (other processes shared the machine)." if max(loads) > 1.5 else "."),
        ]
    )
    command = f"python bench/http_path.py --pairs {args.pairs} --repeats {args.repeats}"
    command += f" --max-concurrency {args.max_concurrency}"
    if args.model:
        command += f" --model {args.model}"
    if args.servers:
        command += f" --servers {','.join(args.servers)}"
    return {
        "title": f"9. HTTP path: cai against a raw client, one server and two ({model_label(args.model)})",
        "command": command,
        "summary": ratios(med),
        "details": details,
        "raw": {**got, "cpu_ceiling": ceiling, "load": loads},
    }


if __name__ == "__main__":
    main()
