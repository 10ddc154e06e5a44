"""Resume: rerunning a finished `cai judge` job, as a share of the first run's time.

Real vLLM on the tiny model. Each cycle: a first run into a fresh output directory with a
fresh call cache; a rerun of the same command (same directory, same cache), which finds
every chunk committed; and a rerun after the judgments were deleted but the call cache was
kept (the state after a crash that lost the work directory), which rebuilds everything from
the cache without calling the model. Reported: each rerun's time / the first run's time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import (
    EngineObserver,
    build_tiny_model,
    median,
    print_header,
    record_result,
    start_engine,
    synthetic_samples,
    table,
    timed,
    write_jsonl,
)
from overhead import run_cai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="32 pairs, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 32, 2

    root = Path(tempfile.mkdtemp(prefix="cai-bench-resume-"))
    try:
        model_dir = build_tiny_model(root / "model")
        samples = root / "samples.jsonl"
        write_jsonl(samples, synthetic_samples(args.pairs, seed=5))
        engine = EngineObserver(start_engine(model_dir))
        print_header(f"resume: {args.pairs} pairs, {args.repeats} cycles")
        run_cai(engine, model_dir, samples, root / "warm", cache=True)  # warm-up
        times: dict[str, list[float]] = {"first": [], "rerun": [], "from_cache": []}
        model_requests: dict[str, list[int]] = {"first": [], "rerun": [], "from_cache": []}
        for cycle in range(args.repeats):
            work = root / f"cycle{cycle}"
            steps = [
                ("first", True),
                ("rerun", False),
                ("from_cache", False),
            ]
            for name, fresh in steps:
                if name == "from_cache":
                    shutil.rmtree(work / "out")
                engine.reset_prefix_cache()
                engine.reset()
                seconds, summary = timed(
                    lambda w=work, f=fresh: run_cai(engine, model_dir, samples, w, True, fresh=f)
                )
                times[name].append(seconds)
                model_requests[name].append(engine.requests)
                judged = summary["stages"]["judge"]
                print(
                    f"cycle {cycle} {name}: {seconds:.2f} s, {judged['prompts_resumed']} "
                    f"prompts resumed, {engine.requests} prompts sent to vLLM",
                    flush=True,
                )
        first = median(times["first"])
        rerun, cached = median(times["rerun"]), median(times["from_cache"])
        rows = [
            [
                "first run (fresh dir, fresh cache)",
                f"{first:.2f}",
                "100%",
                model_requests["first"][-1],
            ],
            [
                "rerun, same dir and cache",
                f"{rerun:.2f}",
                f"{rerun / first:.1%}",
                model_requests["rerun"][-1],
            ],
            [
                "rerun, judgments deleted, cache kept",
                f"{cached:.2f}",
                f"{cached / first:.1%}",
                model_requests["from_cache"][-1],
            ],
        ]
        details = "\n".join(
            [
                f"`cai judge` library path on real vLLM, {args.pairs} pairs x 4 principles x 2 "
                f"orders; median of {args.repeats} cycles.",
                "",
                table(["run", "seconds", "share of first run", "prompts sent to vLLM"], rows),
                "",
                "- A finished job reruns without touching the model; what remains is "
                "loading the config and rewriting the preference dataset.",
            ]
        )
        print(details)
        record_result(
            "resume",
            {
                "title": "5. Resume: rerunning a finished job",
                "summary": [
                    ["rerun of a finished job / first run time", f"{rerun / first:.1%}"],
                    ["rerun from the call cache alone / first run time", f"{cached / first:.1%}"],
                ],
                "details": details,
                "raw": {"times": times, "model_requests": model_requests},
            },
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
