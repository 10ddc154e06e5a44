"""Run every benchmark, one after another (one vLLM engine at a time), and update RESULTS.md.

`make bench` calls this; `--quick` runs each benchmark at a small size (a few minutes in
all on a 2-core CPU). Each benchmark runs in its own process, so engines never overlap and a
failing benchmark does not stop the others; the exit code says whether all succeeded.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BENCHMARKS = [
    "overhead",
    "judge_method",
    "prefix_reuse",
    "scale",
    "resume",
    "label_latency",
    "ray_executor",
    "peer_distilabel",
    "http_path",
    "provider_limits",
    "reward_service",
    "judge_eval",
]
TAKES_MODEL = {"overhead", "prefix_reuse"}  # the others run on the tiny random model


def commands(names: list[str], quick: bool, model: str | None = None) -> list[list[str]]:
    """The command line of each named benchmark (`model` goes to those that take one)."""
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    extra = ["--quick"] if quick else []
    return [
        [
            sys.executable,
            str(BENCH_DIR / f"{name}.py"),
            *extra,
            *(["--model", model] if model and name in TAKES_MODEL else []),
        ]
        for name in names
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    parser.add_argument(
        "--only", nargs="+", default=BENCHMARKS, metavar="NAME", help=f"subset of {BENCHMARKS}"
    )
    parser.add_argument(
        "--model", default=None, help=f"model for {sorted(TAKES_MODEL)} (default: tiny)"
    )
    args = parser.parse_args()
    failed = []
    for name, command in zip(args.only, commands(args.only, args.quick, args.model), strict=True):
        print(f"\n##### {name}: {' '.join(command[1:])}", flush=True)
        start = time.monotonic()
        code = subprocess.call(command, cwd=BENCH_DIR.parent)
        print(f"##### {name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    print(f"\nResults: {BENCH_DIR / 'RESULTS.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
