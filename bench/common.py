"""Shared helpers of the benchmarks: machine facts, timing, peak memory, synthetic data, RESULTS.md.

Every benchmark reports ratios against a baseline measured in the same run, because absolute
numbers on a shared machine are noise. Measurements are interleaved (baseline, candidate,
baseline, ...) and summarised by medians. Results of each benchmark live in one entry of
`bench/results.json`; `bench/RESULTS.md` is rendered from that file, so a script that reruns
updates its own section and leaves the others as they were.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_JSON = BENCH_DIR / "results.json"
RESULTS_MD = BENCH_DIR / "RESULTS.md"

if str(REPO_ROOT) not in sys.path:  # scripts run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))


# ---- machine facts ---------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _total_memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine_facts() -> dict[str, Any]:
    """What the numbers were measured on (no torch or vLLM import needed)."""
    from cai.platform import installed_version, nvidia_gpus, vllm_distribution

    vllm = vllm_distribution()
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_gib": _total_memory_gib(),
        "gpus": nvidia_gpus() or ["none"],
        "python": platform.python_version(),
        "vllm": f"{vllm[0]} {vllm[1]}" if vllm else "not installed",
        "torch": installed_version("torch"),
        "transformers": installed_version("transformers"),
        "trl": installed_version("trl"),
        "cai_commit": _git_commit(),
    }


# ---- timing ------------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    if not values:
        raise ValueError("median of no measurements: run at least one repeat")
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call, on the monotonic high-resolution clock."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleave(
    variants: dict[str, Callable[[], Any]],
    repeats: int,
    before_each: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Run every variant once per round, `repeats` rounds, rotating the start of each round.

    Rotation spreads slow phases of a shared machine over all variants instead of
    charging them to whichever always runs first. Returns the seconds of each run by variant.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if before_each is not None:
                before_each(name)
            seconds, _ = timed(variants[name])
            times[name].append(seconds)
    return times


def ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0:
        raise ValueError(f"cannot divide by a non-positive time {denominator}")
    return numerator / denominator


# ---- memory -----------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib(status_text: str | None = None) -> float:
    """Resident memory now, from /proc/self/status (VmRSS)."""
    text = status_text if status_text is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmRSS line in the process status")


# ---- synthetic inputs ---------------------------------------------------------------------------
_WORDS = (
    "the a and or but if then because so of to in on for with as by from at about into over "
    "after before is are was be have has do can could will would should may might not you we "
    "they it this that what which when where why how all any some more most other only same "
    "answer question help please explain describe safe harmful honest clear kind accurate "
    "people time day work home world life water food money code write read make take give know "
    "think say tell ask want need use find feel try good new first last long great small large"
).split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def synthetic_samples(
    n: int, seed: int = 0, prompt_words: int = 30, response_words: int = 40
) -> Iterator[dict[str, Any]]:
    """`n` sample rows (two distinct responses each) in cai's samples JSONL format."""
    rng = random.Random(seed)
    for i in range(n):
        yield {
            "prompt_id": f"p{i:07d}",
            "prompt": [{"role": "user", "content": f"Q{i}: " + words(rng, prompt_words)}],
            "responses": [
                f"First {i}: " + words(rng, response_words),
                f"Second {i}: " + words(rng, response_words),
            ],
            "finish_reasons": ["stop", "stop"],
            "policy_model": "synthetic",
            "seed": seed,
        }


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            count += 1
    return count


def last_json(text: str) -> dict[str, Any]:
    """The last line of a child's output that is a JSON object: engines log to the same
    stdout, before and after (their shutdown messages), the line the child printed."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict):
                return found
    raise ValueError("the run printed no JSON object")


# ---- the vLLM engine the benchmarks share ---------------------------------------------------------
def build_tiny_model(directory: Path) -> Path:
    """The tiny random Llama the test suite uses (built locally, no hub)."""
    from cai.testing import build_tiny_causal_lm

    if (directory / "config.json").is_file():
        return directory
    return build_tiny_causal_lm(directory)


def bench_model(name: str | None, directory: Path) -> Path:
    """The model a benchmark runs: `--model` as cai resolves it (a directory or an embedded
    name already pulled with `cai models pull`), or the tiny random model built in
    `directory` when none is named."""
    if not name:
        return build_tiny_model(directory)
    from cai.model_names import resolve_model

    return Path(resolve_model(name, pull_if_missing=False))


def model_label(name: str | None) -> str:
    """How a section names the model it ran on."""
    return f"model `{name}`" if name else "the tiny random model"


def start_engine(model_dir: Path, *, prefix_caching: bool = True, max_model_len: int = 2048):
    """A real vLLM offline engine on the tiny model, float32 like cai's judge."""
    from cai.platform import prepare_vllm_env

    prepare_vllm_env()
    from vllm import LLM

    return LLM(
        str(model_dir),
        dtype="float32",
        enforce_eager=True,
        enable_prefix_caching=prefix_caching,
        max_model_len=max_model_len,
        seed=0,
    )


# ---- results --------------------------------------------------------------------------------------
def load_results(path: Path = RESULTS_JSON) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def record_result(
    name: str,
    entry: dict[str, Any],
    *,
    json_path: Path = RESULTS_JSON,
    md_path: Path = RESULTS_MD,
) -> None:
    """Store one benchmark's entry (replacing its previous one) and re-render RESULTS.md.

    `entry` holds `title`, `summary` (a list of [metric, value] rows shown in the overview
    table), `details` (markdown), and optionally `machine` (machine_facts(); filled in here
    when absent).
    """
    for key in ("title", "summary", "details"):
        if key not in entry:
            raise ValueError(f"benchmark entry {name!r} lacks {key!r}")
    entry = dict(entry)
    entry.setdefault("machine", machine_facts())
    results = load_results(json_path)
    results[name] = entry
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md_path.write_text(render_results(results), encoding="utf-8")


ORDER = [
    "overhead",
    "judge_method",
    "prefix_reuse",
    "scale",
    "scale-vllm",
    "resume",
    "label_latency",
    "ray_executor",
    "peer_distilabel",
    "http_path",
    "provider_limits",
    "reward_service",
    "judge_eval",
    "loop_rounds",
]


def _ordered(results: dict[str, Any]) -> list[str]:
    """Sections in ORDER; a variant (`overhead-<model>`) right after its benchmark."""

    def rank(name: str) -> tuple[int, str]:
        bases = [i for i, base in enumerate(ORDER) if name == base or name.startswith(base + "-")]
        return (max(bases, key=lambda i: len(ORDER[i])) if bases else len(ORDER), name)

    return sorted(results, key=rank)


def render_results(results: dict[str, Any]) -> str:
    """RESULTS.md: machine table, one overview table of every ratio, then each benchmark's details."""
    lines = [
        "# Benchmark results",
        "",
        "Written by the scripts in `bench/` (`make bench` or `python bench/run_all.py`); do not",
        "edit by hand. Every figure is a ratio against a baseline measured in the same run, on",
        "the tiny random model on the machine below, as the median of interleaved repeats.",
        "",
    ]
    names = _ordered(results)
    machines = {json.dumps(results[n]["machine"], sort_keys=True) for n in names}
    if names:
        lines += ["## Machine", "", "| | |", "|---|---|"]
        latest = max((results[n]["machine"] for n in names), key=lambda m: m.get("date", ""))
        for key, value in latest.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            lines.append(f"| {key} | {shown} |")
        if (
            len(
                {
                    json.dumps({k: v for k, v in json.loads(m).items() if k != "date"})
                    for m in machines
                }
            )
            > 1
        ):
            lines += [
                "",
                "Some sections were measured on another machine or commit; each says which.",
            ]
        lines += [
            "",
            "## Overview",
            "",
            "| benchmark | metric | value | date |",
            "|---|---|---|---|",
        ]
        for name in names:
            entry = results[name]
            for metric, value in entry["summary"]:
                lines.append(
                    f"| {entry['title']} | {metric} | {value} | {entry['machine']['date']} |"
                )
    for name in names:
        entry = results[name]
        machine = entry["machine"]
        lines += [
            "",
            f"## {entry['title']}",
            "",
            f"_{machine['date']}, {machine['cpu_cores']} cores, {machine['vllm']}, "
            f"commit {machine.get('cai_commit')}; `{entry.get('command', f'python bench/{name}.py')}`_",
            "",
            entry["details"].rstrip(),
        ]
    return "\n".join(lines) + "\n"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A small markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def print_header(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


# ---- observing the real engine ------------------------------------------------------------------
class EngineObserver:
    """Wraps a real `vllm.LLM`: forwards everything, and times and counts each `generate`.

    cai's VLLMOfflineBackend accepts an existing engine, so handing it this wrapper measures
    how much of a run is spent inside vLLM and how many prompt tokens vLLM's prefix cache
    served (RequestOutput.num_cached_tokens), without changing what runs.
    """

    def __init__(self, engine: Any, keep_prompts: bool = False) -> None:
        self._engine = engine
        self.keep_prompts = keep_prompts
        self.reset()

    def reset(self) -> None:
        self.prompts: list[list[int]] = []
        self.generate_seconds = 0.0
        self.generate_calls = 0
        self.requests = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        outputs = self._engine.generate(*args, **kwargs)
        self.generate_seconds += time.perf_counter() - start
        self.generate_calls += 1
        self.observe(outputs)
        return outputs

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        """Queueing (cai's grouped scoring) is engine time too: the engine runs meanwhile."""
        start = time.perf_counter()
        ids = self._engine.enqueue(*args, **kwargs)
        self.generate_seconds += time.perf_counter() - start
        return ids

    def wait_for_completion(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        outputs = self._engine.wait_for_completion(*args, **kwargs)
        self.generate_seconds += time.perf_counter() - start
        self.generate_calls += 1
        self.observe(outputs)
        return outputs

    def observe(self, outputs: list[Any]) -> None:
        for out in outputs:
            self.requests += 1
            self.prompt_tokens += len(out.prompt_token_ids or [])
            self.cached_tokens += int(out.num_cached_tokens or 0)
            if self.keep_prompts:
                self.prompts.append(list(out.prompt_token_ids or []))

    @property
    def cached_share(self) -> float | None:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None


def reusable_prefix_tokens(prompts: list[list[int]], block_size: int = 1) -> int:
    """Prompt tokens a perfect prefix cache could serve, in whole blocks of `block_size`.

    For each prompt: its longest common prefix with any earlier prompt, never the last
    token (its logits must be computed), rounded down to whole blocks.
    """
    total = 0
    for index, prompt in enumerate(prompts):
        best = 0
        for earlier in prompts[:index]:
            limit = min(len(prompt) - 1, len(earlier))
            n = 0
            while n < limit and prompt[n] == earlier[n]:
                n += 1
            best = max(best, n)
        total += best // block_size * block_size
    return total


# ---- the judge path, shared by the engine benchmarks ---------------------------------------------
def record_choice_requests(samples_path: Path, constitution: str = "default", **judge_config):
    """The exact ChoiceRequests cai's judge stage sends for these samples (no model involved).

    A recording backend answers with uniform scores; only the requests matter here, to build
    baselines that send the identical prompts.
    """
    from cai.backends.base import Backend, ChoiceScore
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig, PairwiseJudge
    from cai.judge.judged import judge_chunk
    from cai.stages.sample import iter_samples
    from cai.templates import TemplateSet

    class Recorder(Backend):
        model_id = "recorder"

        def __init__(self) -> None:
            self.requests: list[Any] = []

        def generate_chat(self, conversations, params):  # pragma: no cover - not used
            raise NotImplementedError

        def generate_text(self, prompts, params):  # pragma: no cover - not used
            raise NotImplementedError

        def score_choices(self, requests):
            self.requests.extend(requests)
            return [ChoiceScore.from_logprobs(r.choices, [0.0] * len(r.choices)) for r in requests]

    recorder = Recorder()
    judge = PairwiseJudge(
        recorder, load_constitution(constitution), TemplateSet(), JudgeConfig(**judge_config)
    )
    judge_chunk(judge, list(iter_samples(samples_path)))
    return recorder.requests


def token_prompts(tokenizer, requests) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt token ids and choice token ids of each request, exactly as cai's backends build them."""
    from cai.backends.tokens import choice_token_ids, hf_encoder, request_prompt_ids

    encode = hf_encoder(tokenizer)
    prompts = [request_prompt_ids(tokenizer, encode, r) for r in requests]
    choices = [choice_token_ids(encode, r.choices) for r in requests]
    return prompts, choices


def text_prompts(tokenizer, requests) -> list[str]:
    """Each request's prompt as text (chat template, then the assistant prefix): what a plain
    script that starts from text hands vLLM to tokenize."""
    from cai.backends.tokens import render_chat

    return [render_chat(tokenizer, r.messages) + r.assistant_prefix for r in requests]


def raw_score(
    engine, prompts: list[list[int]] | list[str], choices: list[list[int]], tuned: bool = False
) -> list[list[float]]:
    """The minimal script: one LLM.generate call, max_tokens=1, log-probs of the label tokens.

    `tuned` adds the two settings cai's backend uses (no detokenizing of the sampled token,
    no deep copy of the parameters per request), so cai's own overhead can be read alone.
    Prompts given as text are tokenized by vLLM inside the call."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    extra = {"detokenize": False, "skip_clone": True} if tuned else {}
    params = [
        SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=len(ids), logprob_token_ids=ids, **extra
        )
        for ids in choices
    ]
    outputs = engine.generate(
        [p if isinstance(p, str) else TokensPrompt(prompt_token_ids=p) for p in prompts],
        params,
        use_tqdm=False,
    )
    return [
        [float(out.outputs[0].logprobs[0][i].logprob) for i in ids]
        for out, ids in zip(outputs, choices, strict=True)
    ]
