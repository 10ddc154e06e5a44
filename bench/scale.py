"""Scale: wall time and peak memory of the judge stage for 1k, 10k and 100k pairs.

The engine is replaced by cai's ScriptedBackend (deterministic, content-dependent scores, no
model) at these sizes, so what is measured is cai's own machinery: streaming the samples,
principle sampling, rendering every prompt, the chunked resumable job with its atomic
commits. Each size runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its
own. Reported: seconds per 1k pairs at each size relative to the smallest size (1.0 =
linear) and peak memory relative to the smallest size (1.0 = flat).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    current_rss_mib,
    fmt_ratio,
    last_json,
    peak_rss_mib,
    print_header,
    record_result,
    synthetic_samples,
    table,
    write_jsonl,
)

DEFAULT_SIZES = "1000,10000,100000"


def _score(request) -> list[float]:
    text = "".join(m["content"] for m in request.messages or []) + request.assistant_prefix
    digest = hashlib.sha256(text.encode()).digest()
    return [-digest[0] / 64, -digest[1] / 64]


def _backend(engine: str, work: Path):
    """The scripted stand-in, or real vLLM on the tiny model (started before timing)."""
    if engine == "scripted":
        from cai.backends.scripted import ScriptedBackend

        return ScriptedBackend(score=_score, model_id="scripted-scale")
    from common import build_tiny_model, start_engine

    from cai.backends.vllm_offline import VLLMOfflineBackend

    model_dir = build_tiny_model(work / "model")
    return VLLMOfflineBackend(str(model_dir), engine=start_engine(model_dir), show_progress=False)


def worker(pairs: int, principles: int, work: Path, engine: str = "scripted") -> dict:
    """Judge `pairs` synthetic pairs on `engine`; returns time and memory."""
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig, PairwiseJudge
    from cai.stages.judge import judge_samples
    from cai.stages.sample import iter_samples
    from cai.templates import TemplateSet

    samples = work / "samples.jsonl"
    write_jsonl(samples, synthetic_samples(pairs, seed=4))
    judge = PairwiseJudge(
        _backend(engine, work),
        load_constitution("default"),
        TemplateSet(),
        JudgeConfig(principles_per_pair=principles),
    )
    rss_before = current_rss_mib()
    start = time.perf_counter()
    stats = judge_samples(judge, iter_samples(samples), work / "judgments", total=pairs)
    seconds = time.perf_counter() - start
    return {
        "pairs": pairs,
        "seconds": seconds,
        "items": stats.items_processed,
        "scored_requests": judge.requests_scored,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_size(pairs: int, principles: int, engine: str = "scripted") -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"cai-bench-scale-{pairs}-"))
    try:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                str(pairs),
                "--principles",
                str(principles),
                "--work",
                str(work),
                "--engine",
                engine,
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        return last_json(out.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES)
    parser.add_argument("--principles", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="sizes 500, 2000, 8000")
    parser.add_argument(
        "--engine",
        choices=["scripted", "vllm"],
        default="scripted",
        help="vllm: real vLLM on the tiny model (default sizes 1000,10000)",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.principles, args.work, args.engine)))
        return
    real = args.engine == "vllm"
    if real and args.sizes == DEFAULT_SIZES:
        args.sizes = "1000,10000"
    sizes = [500, 2000, 8000] if args.quick else [int(s) for s in args.sizes.split(",")]
    print_header(f"scale: judge stage on the {args.engine} backend, sizes {sizes}")
    results = []
    for pairs in sizes:
        load_before = os.getloadavg()[0]
        got = run_size(pairs, args.principles, args.engine)
        got["load"] = [load_before, os.getloadavg()[0]]
        results.append(got)
        print(
            f"{pairs} pairs: {got['seconds']:.1f} s, peak RSS {got['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    base = results[0]
    base_rate = base["seconds"] / base["pairs"]
    rows = []
    for got in results:
        rate = got["seconds"] / got["pairs"]
        rows.append(
            [
                f"{got['pairs']:,}",
                f"{got['scored_requests']:,}",
                f"{got['seconds']:.1f}",
                f"{1000 * rate:.2f}",
                fmt_ratio(rate / base_rate),
                f"{got['peak_rss_mib']:.0f}",
                fmt_ratio(got["peak_rss_mib"] / base["peak_rss_mib"]),
            ]
        )
    last = results[-1]
    time_ratio = (last["seconds"] / last["pairs"]) / base_rate
    mem_ratio = last["peak_rss_mib"] / base["peak_rss_mib"]
    about = (
        "**Real vLLM on the tiny random model** (engine started before timing; peak RSS is "
        "cai's process, the engine core runs in a process of its own)"
        if real
        else "**The ScriptedBackend stands in for the engine at these sizes** (no model runs)"
    )
    details = "\n".join(
        [
            f"{about}; the judge stage is otherwise the real one: {args.principles} principles "
            "x 2 orders per pair, every prompt rendered, chunks of 16 pairs committed "
            "atomically. One run per size, each in its own process.",
            "",
            table(
                [
                    "pairs",
                    "scored prompts",
                    "seconds",
                    "s per 1k pairs",
                    "vs smallest",
                    "peak RSS MiB",
                    "vs smallest",
                ],
                rows,
            ),
            "",
            f"- Time per pair at {last['pairs']:,} pairs is {fmt_ratio(time_ratio)} that at "
            f"{base['pairs']:,} (1.00x = linear); peak memory is {fmt_ratio(mem_ratio)} "
            "(1.00x = flat).",
            "- The sizes run one after another, not interleaved, so a change in the machine's "
            "load between them shows in the time ratio; 1-minute load average before and "
            "after each size: "
            + "; ".join(f"{g['pairs']:,}: {g['load'][0]:.1f} / {g['load'][1]:.1f}" for g in results)
            + f" ({os.cpu_count()} cores).",
        ]
    )
    print(details)
    record_result(
        "scale-vllm" if real else "scale",
        {
            "title": "4b. Scale on real vLLM: judge stage, tiny model"
            if real
            else "4. Scale: judge stage, 1k to 100k pairs (scripted engine)",
            "command": f"python bench/scale.py --engine {args.engine} --sizes {args.sizes}",
            "summary": [
                [
                    f"time per pair, {last['pairs']:,} vs {base['pairs']:,} pairs (1.0 = linear)",
                    fmt_ratio(time_ratio),
                ],
                [
                    f"peak memory, {last['pairs']:,} vs {base['pairs']:,} pairs (1.0 = flat)",
                    fmt_ratio(mem_ratio),
                ],
            ],
            "details": details,
            "raw": {"runs": results},
        },
    )


if __name__ == "__main__":
    main()
