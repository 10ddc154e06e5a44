"""The loop as a new user runs it: `cai loop examples/loop.yaml` on SmolLM2, time per round and
per stage, engine starts, and the engines left running.

Each variant runs the real command in a subprocess (`--rounds 2`, fresh output directory);
stage times come from the loop's own "round r: <stage>" lines, timed as they are printed, so
the baseline (an older commit, which did not record stage times yet) is measured the same way.
Engine starts are the "Initializing a V1 LLM engine" lines of the run's engine log, each
attributed to the stage that was running; every two seconds the engine processes alive in
the command's process tree (zombies excluded) and the tree's resident memory are sampled.

The variants run one after the other (never together: this machine has 2 cores); with
`--repeats N` each runs N times, the order alternating (before, after, after, before, ...) so
that a load that drifts during the runs favours neither. The baseline is `--before REF` checked out in a temporary git worktree and
put first on PYTHONPATH; the candidate is this working tree.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import fmt_ratio, median, record_result, table

ROOT = Path(__file__).resolve().parent.parent
STAGE_LINE = re.compile(r"^round (\d+): (\w+)(?: \(resuming\))?$")
ENGINE_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ .*Initializing a V1 LLM engine")
STAGES = ("prompts", "label", "data", "reward_model", "policy", "eval")


def _tree(pid: int):
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _sample(pid: int, samples: list[tuple[float, int, float]], stop: threading.Event) -> None:
    """(time, live engine processes, resident MiB of the tree) every 2 s."""
    import psutil

    while not stop.is_set():
        engines, rss = 0, 0
        for proc in _tree(pid):
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                rss += proc.memory_info().rss
                engines += proc.name().startswith("VLLM::EngineCor")
            except psutil.NoSuchProcess:
                continue
        samples.append((time.time(), engines, rss / 2**20))
        stop.wait(2.0)


def run_variant(name: str, out: Path, sets: list[str], pythonpath: str | None) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, "-m", "cai.cli.app", "loop", str(ROOT / "examples" / "loop.yaml")]
    command += ["--rounds", "2", "--out", str(out)]
    for item in sets:
        command += ["--set", item]
    load_start = os.getloadavg()[0]
    started = time.time()
    # `python -m` puts the working directory first on sys.path: run the baseline from its tree
    proc = subprocess.Popen(
        command,
        cwd=pythonpath or ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc.pid, samples, stop), daemon=True)
    sampler.start()
    marks: list[tuple[float, int, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        match = STAGE_LINE.match(line.strip())
        if match:
            marks.append((time.time(), int(match[1]), match[2]))
    proc.wait()
    ended = time.time()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{name}: cai loop exited with {proc.returncode}")
    stage_s: dict[tuple[int, str], float] = {}
    bounds = [*marks, (ended, 0, "end")]
    for (t0, r, stage), (t1, _, _) in itertools.pairwise(bounds):
        stage_s[(r, stage)] = t1 - t0
    starts = _engine_starts(out / "logs" / "engine.log", marks, ended)
    return {
        "name": name,
        "seconds": ended - started,
        "stage_s": stage_s,
        "engine_starts": starts,
        "max_engines_alive": max((e for _, e, _ in samples), default=0),
        "max_rss_gib": max((m for _, _, m in samples), default=0.0) / 1024,
        "engines_during_training": max(
            (e for t, e, _ in samples if _stage_at(t, marks) in ("reward_model", "policy")),
            default=0,
        ),
        "load": (load_start, os.getloadavg()[0]),
    }


def _stage_at(when: float, marks: list[tuple[float, int, str]]) -> str | None:
    current = None
    for t, _, stage in marks:
        if t <= when:
            current = stage
    return current


def _engine_starts(log: Path, marks, ended: float) -> dict[tuple[int, str], int]:
    counts: dict[tuple[int, str], int] = {}
    if not log.is_file():
        return counts
    for line in log.read_text(errors="replace").splitlines():
        match = ENGINE_LINE.match(line)
        if not match:
            continue
        when = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S"))
        key = None
        for t, r, stage in marks:
            if t <= when + 1:  # the log has whole seconds
                key = (r, stage)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return counts


def _rows(result: dict) -> list[list]:
    rows = []
    for r in (1, 2):
        cells = [f"{result['stage_s'].get((r, s), 0.0):.0f}" for s in STAGES]
        total = sum(result["stage_s"].get((r, s), 0.0) for s in STAGES)
        starts = sum(v for (rr, _), v in result["engine_starts"].items() if rr == r)
        rows.append([result["name"], result["run"], r, *cells, f"{total:.0f}", starts])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="git ref of the baseline (none: skip)")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per variant, in alternating order"
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cai-loop-bench-"))
    results = []
    try:
        if args.before:
            tree = scratch / "before-tree"
            subprocess.run(
                ["git", "worktree", "add", "-f", str(tree), args.before],
                cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
        variants = (
            [(f"before ({args.before})", str(scratch / "before-tree"))] if args.before else []
        )
        variants.append(("after (this tree)", None))
        for repeat in range(args.repeats):
            # alternate the order, so a load that drifts during the runs favours neither
            for name, path in variants if repeat % 2 == 0 else variants[::-1]:
                out = scratch / f"{len(results)}"
                results.append(run_variant(name, out, args.sets, path))
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if args.before:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(scratch / "before-tree")],
                cwd=ROOT,
                capture_output=True,
            )
        shutil.rmtree(scratch, ignore_errors=True)
    for number, result in enumerate(results, 1):
        result["run"] = number
    header = ["variant", "run", "round", *STAGES, "round s", "engine starts"]
    rows = [row for result in results for row in _rows(result)]
    notes = [
        f"- run {r['run']}, {r['name']}: {r['seconds']:.0f} s in all; at most {r['max_engines_alive']} engine(s) "
        f"alive at once, {r['engines_during_training']} during training stages; peak resident "
        f"memory of the command's processes {r['max_rss_gib']:.1f} GiB; 1-minute load average "
        f"{r['load'][0]:.1f} at the start, {r['load'][1]:.1f} at the end"
        for r in results
    ]
    summary = []
    names = list(dict.fromkeys(r["name"] for r in results))
    if len(names) == 2:
        runs = {n: [r for r in results if r["name"] == n] for n in names}
        before, after = (median([r["seconds"] for r in runs[n]]) for n in names)
        summary.append(["2 rounds, after / before (median wall time)", fmt_ratio(after / before)])
        for r in (1, 2):
            b, a = (
                sum(v for (rr, _), v in runs[n][0]["engine_starts"].items() if rr == r)
                for n in names
            )
            summary.append([f"round {r} engine starts, before -> after", f"{b} -> {a}"])
    details = "\n".join(
        [
            "`cai loop examples/loop.yaml --rounds 2` on smollm2-135m-instruct (vLLM on CPU, "
            "float32), seconds per stage as the loop printed them"
            + (f", with {' '.join('--set ' + s for s in args.sets)}" if args.sets else "")
            + ".",
            "",
            table(header, rows),
            "",
            *notes,
        ]
    )
    command = "python bench/loop_rounds.py" + (f" --before {args.before}" if args.before else "")
    command += f" --repeats {args.repeats}" if args.repeats > 1 else ""
    command += "".join(f" --set {s}" for s in args.sets)
    record_result(
        "loop_rounds",
        {"title": "13. The loop on SmolLM2: time per round and stage", "summary": summary,
         "details": details, "command": command},
    )  # fmt: skip
    print(details)


if __name__ == "__main__":
    main()
