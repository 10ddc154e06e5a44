"""Reward service: the judge behind HTTP for many trainer clients, against the judge in-process.

One vLLM engine on the tiny model. The baseline is the in-process judge (`JudgeScorer`, the
code the service runs) judging the same GRPO-style groups (k responses to one prompt, ranked
by all-pairs judgments and Bradley-Terry) in one call per round, `--clients` groups a call:
what a trainer holding the judge in its own process would do. The candidate is the service
on 127.0.0.1 with `--clients` concurrent HTTP clients (asyncio, in a process of their own as a
trainer would be), each sending its group of the round as its own /v1/rank request, so the
service's micro-batcher has to gather them again.

Reported: throughput (groups/s) of the service over the in-process judge (medians,
interleaved runs), request latency p50 / p99 over every request of every candidate run, and
the answers checked by content: every request answered once (none lost, none duplicated),
each with its own group's rewards (within a tolerance well under the distance between any
two groups' rewards, so an answer delivered to the wrong client would be caught).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common import (
    bench_model,
    fmt_ratio,
    interleave,
    median,
    model_label,
    print_header,
    record_result,
    start_engine,
    table,
    words,
)

TOLERANCE = 1e-6
"""Batch composition may move float32 log-probs by rounding; nothing else may move them."""


def make_groups(clients: int, rounds: int, k: int, seed: int = 0) -> list[list[dict]]:
    """rounds x clients groups, each a prompt and k distinct responses."""
    rng = random.Random(seed)
    return [
        [
            {
                "prompt": [{"role": "user", "content": f"Q{r}-{c}: " + words(rng, 20)}],
                "responses": [f"R{r}-{c}-{i}: " + words(rng, 24) for i in range(k)],
                "key": f"r{r}c{c}",
            }
            for c in range(clients)
        ]
        for r in range(rounds)
    ]


def in_process(scorer, groups: list[list[dict]]) -> list[list[list[float | None]]]:
    """The baseline: each round's groups in one call of the in-process judge."""
    from cai.reward.protocol import RankGroup

    out = []
    for round_groups in groups:
        items = [RankGroup.model_validate(g) for g in round_groups]
        out.append([r.rewards for r in scorer.run([("rank", items)])[0]])
    return out


async def _clients(url: str, groups: list[list[dict]], latencies: list[float]):
    """Each client sends its group of each round as one request, all clients at once."""
    import aiohttp

    answers: list[list[list[float | None] | None]] = [[None] * len(g) for g in groups]
    counts: dict[tuple[int, int], int] = {}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(c: int) -> None:
            for r, round_groups in enumerate(groups):
                started = time.perf_counter()
                body = {"groups": [round_groups[c]]}
                async with session.post(url + "/v1/rank", json=body) as reply:
                    data = await reply.json()
                latencies.append(time.perf_counter() - started)
                counts[(r, c)] = counts.get((r, c), 0) + 1
                if reply.status == 200 and len(data["results"]) == 1:
                    answers[r][c] = data["results"][0]["rewards"]

        await asyncio.gather(*(client(c) for c in range(len(groups[0]))))
    return answers, counts


def run_clients(url: str, groups: list[list[dict]]):
    """One candidate run in the clients' process: (answers, answer counts, latencies)."""
    latencies: list[float] = []
    answers, counts = asyncio.run(_clients(url, groups, latencies))
    return answers, counts, latencies


def check(expected, answers, counts) -> dict[str, float | int]:
    """Lost, duplicated and mixed answers, by content against the in-process rewards."""
    flat_expected = [e for round_expected in expected for e in round_expected]
    lost = sum(1 for round_answers in answers for a in round_answers if a is None)
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    mixed = 0
    ambiguous = 0
    worst = 0.0
    for round_expected, round_answers in zip(expected, answers, strict=True):
        for want, got in zip(round_expected, round_answers, strict=True):
            if got is None:
                continue
            gap = _distance(want, got)
            worst = max(worst, gap)
            mixed += gap > TOLERANCE
            # an answer that would also pass as another group's would not reveal a mix-up
            ambiguous += sum(_distance(o, got) <= TOLERANCE for o in flat_expected) > 1
    nearest_other = min(
        (_distance(a, b) for i, a in enumerate(flat_expected) for b in flat_expected[i + 1 :]),
        default=math.inf,
    )
    return {
        "lost": lost,
        "duplicated": duplicated,
        "mixed": mixed,
        "ambiguous": ambiguous,
        "worst_gap": worst,
        "nearest_other_group": nearest_other,
    }


def _distance(a: list[float | None], b: list[float | None]) -> float:
    if len(a) != len(b) or any(x is None for x in (*a, *b)):
        return math.inf
    return max(abs(x - y) for x, y in zip(a, b, strict=True))  # type: ignore[operator]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--k", type=int, default=4, help="responses per group")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--note", default="", help="a line about the machine (e.g. shared)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.repeats = 2, 2

    from cai.backends.vllm_offline import VLLMOfflineBackend
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig
    from cai.ledger import counting
    from cai.reward.app import ServiceThread
    from cai.reward.scoring import JudgeScorer
    from cai.reward.service import BatchSettings, RewardService
    from cai.templates import TemplateSet

    root = Path(tempfile.mkdtemp(prefix="cai-bench-reward-"))
    try:
        model_dir = bench_model(args.model, root / "model")
        engine = start_engine(model_dir)
        backend = VLLMOfflineBackend(str(model_dir), engine=engine, show_progress=False)
        scorer = JudgeScorer(
            counting(backend, "reward"),
            load_constitution("default"),
            TemplateSet(None),
            JudgeConfig(principles_per_pair=1),
        )
        groups = make_groups(args.clients, args.rounds, args.k)
        load_before = os.getloadavg()[0]
        expected = in_process(scorer, groups)  # warm-up, and the answers to check against
        service = RewardService(scorer, batching=BatchSettings(max_wait_ms=args.batch_wait_ms))
        latencies: list[float] = []
        checks: list[dict] = []
        # the clients live in a process of their own, as a trainer would: their HTTP work
        # does not share the service's interpreter
        spawn = multiprocessing.get_context("spawn")
        with ServiceThread(service) as server, ProcessPoolExecutor(1, mp_context=spawn) as pool:

            def candidate() -> None:
                answers, counts, took = pool.submit(run_clients, server.url, groups).result()
                latencies.extend(took)
                checks.append(check(expected, answers, counts))

            candidate()  # warm-up of the HTTP path
            latencies.clear()
            checks.clear()
            times = interleave(
                {"in_process": lambda: in_process(scorer, groups), "service": candidate},
                args.repeats,
            )
        stats = service.batcher.stats
        load = (load_before, os.getloadavg()[0])
        report(args, times, latencies, checks, stats, load)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(args, times, latencies, checks, stats, load: tuple[float, float]) -> None:
    n_groups = args.clients * args.rounds
    base, cand = median(times["in_process"]), median(times["service"])
    throughput = base / cand  # groups/s of the service over groups/s in-process
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    keys = ("lost", "duplicated", "mixed", "ambiguous")
    totals = {key: sum(c[key] for c in checks) for key in keys}
    worst = max(c["worst_gap"] for c in checks)
    nearest = min(c["nearest_other_group"] for c in checks)
    per_batch = stats.items / max(stats.batches, 1)
    rows = [
        [
            "in-process judge (one call per round)",
            f"{n_groups / base:.1f} groups/s",
            f"{base:.2f} s",
        ],
        [
            f"service, {args.clients} concurrent clients",
            f"{n_groups / cand:.1f} groups/s",
            f"{cand:.2f} s",
        ],
    ]
    details = "\n\n".join(
        [
            f"{model_label(args.model)}; {args.clients} clients (in their own process) x "
            f"{args.rounds} rounds, one "
            f"/v1/rank group of k={args.k} responses per request ({args.k * (args.k - 1) // 2} "
            f"pairs, both orders, 1 principle); batch wait {args.batch_wait_ms:g} ms; medians "
            f"of {args.repeats} interleaved runs.",
            table(["run", "throughput", "time"], rows),
            "Every run (s): in-process "
            + ", ".join(f"{t:.2f}" for t in times["in_process"])
            + "; service "
            + ", ".join(f"{t:.2f}" for t in times["service"])
            + " (the spread is the machine's noise: read ratios near 1 as parity).",
            f"Service / in-process throughput: **{fmt_ratio(throughput)}**. Request latency "
            f"over {len(latencies)} requests: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms. "
            f"The micro-batcher ran {stats.batches} batches, {per_batch:.1f} groups each on "
            f"average (largest {stats.largest_batch}).",
            f"Answers checked by content against the in-process rewards of the same group: "
            f"{totals['lost']} lost, {totals['duplicated']} duplicated, {totals['mixed']} mixed "
            f"(largest gap {worst:.1e}, tolerance {TOLERANCE:g}). The check tells groups "
            f"apart: the nearest two groups' rewards differ by {nearest:.1e}, and "
            f"{totals['ambiguous']} answers would also have passed as another group's.",
            f"Load average (1 min) on this {os.cpu_count()}-core machine: {load[0]:.1f} before "
            f"the runs, {load[1]:.1f} after" + (f"; {args.note}" if args.note else "") + ".",
        ]
    )
    print_header("Reward service")
    print(details)
    record_result(
        "reward_service",
        {
            "title": f"11. Reward service: {args.clients} HTTP clients vs the in-process judge",
            "summary": [
                ["reward service throughput / in-process judge", fmt_ratio(throughput)],
                ["reward service latency p50 / p99", f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms"],
                [
                    "reward service lost / duplicated / mixed answers",
                    f"{totals['lost']} / {totals['duplicated']} / {totals['mixed']}",
                ],
            ],
            "details": details,
            "raw": {"times": times, "checks": checks, "latencies_s": latencies},
        },
    )


if __name__ == "__main__":
    main()
