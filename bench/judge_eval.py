"""Judge eval: `cai eval judge` throughput against `cai judge` on the same rows.

Real vLLM on the tiny model, one engine for both. The rows are a synthetic RewardBench-shaped
file; `cai eval judge` maps it, judges it through the stage runner (one cell: default
constitution, log-prob) and scores and reports it (bootstrap intervals, length bias, the
per-principle view, report.md/html/json and the plot). The baseline is `cai judge` (the
library path: judge and preferences stages) on the pairs table that the eval itself wrote,
so both judge exactly the same pairs with the same settings. Each run starts from a fresh
output directory with no call cache. Reported: pairs per second of each, and the eval's
time over `cai judge`'s (what mapping, scoring and reporting add).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
from pathlib import Path

from common import (
    EngineObserver,
    build_tiny_model,
    fmt_ratio,
    interleave,
    median,
    print_header,
    record_result,
    start_engine,
    table,
    words,
    write_jsonl,
)


def rewardbench_rows(n: int, seed: int = 11):
    rng = random.Random(seed)
    subsets = ["alpacaeval-easy", "mt-bench-med", "llmbar-natural", "donotanswer", "math-prm"]
    for i in range(n):
        yield {
            "id": i,
            "subset": subsets[i % len(subsets)],
            "prompt": f"Question {i}: " + words(rng, 12),
            "chosen": f"Good {i}: " + words(rng, 24),
            "rejected": f"Bad {i}: " + words(rng, 24),
        }


def run_eval(backend, model_dir: Path, source: Path, out: Path):
    from cai.judge_eval.evaluate import run_judge_eval
    from cai.judge_eval.grid import JudgeEvalConfig

    shutil.rmtree(out, ignore_errors=True)
    grid = JudgeEvalConfig.model_validate(
        {
            "benchmarks": [{"source": str(source), "format": "rewardbench"}],
            "judges": [{"name": "tiny", "backend": {"kind": "vllm", "model": str(model_dir)}}],
            "constitutions": ["default"],
            "output_dir": str(out),
        }
    )
    return run_judge_eval(grid, backends={"tiny": backend})


def run_judge(backend, pairs: Path, out: Path, stages: str = "[judge, preferences]"):
    from cai.pipeline import load_pipeline_config, run_pipeline

    shutil.rmtree(out, ignore_errors=True)
    config = load_pipeline_config(
        None,
        [
            f"stages={stages}",
            f"samples={pairs}",
            f"output_dir={out}",
            "constitution=default",
        ],
    )
    return run_pipeline(config, judge_backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="32 pairs, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 32, 2

    root = Path(tempfile.mkdtemp(prefix="cai-bench-judge-eval-"))
    try:
        from cai.backends.vllm_offline import VLLMOfflineBackend

        model_dir = build_tiny_model(root / "model")
        source = root / "rewardbench.jsonl"
        write_jsonl(source, rewardbench_rows(args.pairs))
        engine = EngineObserver(start_engine(model_dir))
        backend = VLLMOfflineBackend(str(model_dir), engine=engine, show_progress=False)
        print_header(f"judge eval: {args.pairs} RewardBench-shaped rows, {args.repeats} repeats")
        run_eval(backend, model_dir, source, root / "warm-eval")  # warm-up: engine, matplotlib
        pairs = root / "warm-eval" / "pairs" / "rewardbench.jsonl"
        run_judge(backend, pairs, root / "warm-judge")
        times = interleave(
            {
                "cai judge": lambda: run_judge(backend, pairs, root / "judge"),
                "judge stage": lambda: run_judge(backend, pairs, root / "stage", "[judge]"),
                "cai eval judge": lambda: run_eval(backend, model_dir, source, root / "eval"),
            },
            args.repeats,
            before_each=lambda _: engine.reset_prefix_cache(),
        )
        load = os.getloadavg()[0]
        judge_t, eval_t = median(times["cai judge"]), median(times["cai eval judge"])
        stage_t = median(times["judge stage"])
        slower, over_stage = eval_t / judge_t, eval_t / stage_t
        rows = [
            ["`cai judge` (judge + preferences stages)", f"{judge_t:.2f}", f"{args.pairs / judge_t:.1f}"],
            ["the judge stage alone (same runner)", f"{stage_t:.2f}", f"{args.pairs / stage_t:.1f}"],
            ["`cai eval judge` (map, judge, score, report)", f"{eval_t:.2f}", f"{args.pairs / eval_t:.1f}"],
        ]  # fmt: skip
        details = "\n".join(
            [
                f"{args.pairs} pairs, default constitution (4 principles per pair, both orders), "
                f"median of {args.repeats} interleaved repeats on one engine, fresh output "
                f"directories, no call cache; load average {load:.1f} at the end (the machine "
                "is shared: compare the ratios, not the seconds).",
                "",
                table(["run", "seconds", "pairs/s"], rows),
                "",
                f"- `cai eval judge` takes {fmt_ratio(slower)} the time of `cai judge` on the "
                "same pairs (`cai judge` also writes the preference dataset, which the eval "
                f"does not), and {fmt_ratio(over_stage)} the time of the judge stage alone: "
                "that ratio is what reading and mapping the benchmark, scoring (bootstrap "
                "intervals, length bias, the per-principle view) and writing the report and "
                "its plot add; the judging is the same stage.",
            ]
        )
        print(details)
        record_result(
            "judge_eval",
            {
                "title": "12. Judge eval: `cai eval judge` vs `cai judge` on the same rows",
                "summary": [
                    ["`cai eval judge` time / `cai judge` time (same pairs)", fmt_ratio(slower)],
                    ["`cai eval judge` time / judge stage alone", fmt_ratio(over_stage)],
                    ["`cai eval judge` pairs/s (tiny model)", f"{args.pairs / eval_t:.1f}"],
                ],
                "details": details,
                "raw": {"times": times, "pairs": args.pairs, "load_average": load},
            },
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
