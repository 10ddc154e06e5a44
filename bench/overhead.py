"""Overhead: `cai judge` end to end against a minimal script that calls vLLM directly.

Candidate: the library path `cai judge` runs (load_pipeline_config + run_pipeline with the
judge and preferences stages: rendering, tokenizing, chunked resumable job, preference
dataset), on VLLMOfflineBackend, with the call cache off and with a fresh cache.
Baseline: the identical token sequences (recorded from cai's own judge, tokenized as cai's
backends do) sent in one `LLM.generate` call with the same SamplingParams (max_tokens=1,
logprob_token_ids). Same engine; the prefix cache is reset before every run so no run
profits from an earlier one. Reported: labels (pairs) per second and the ratio cai / raw.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import tempfile
from pathlib import Path

from common import (
    EngineObserver,
    bench_model,
    fmt_ratio,
    interleave,
    median,
    model_label,
    print_header,
    raw_score,
    record_choice_requests,
    record_result,
    start_engine,
    synthetic_samples,
    table,
    text_prompts,
    timed,
    token_prompts,
    write_jsonl,
)


def run_cai(
    engine,
    model_dir: Path,
    samples: Path,
    work: Path,
    cache: bool,
    fresh: bool = True,
    chunk_size: int | None = None,
    share: bool = True,
) -> dict:
    """One `cai judge` run into `work` (emptied first when `fresh`), call cache in `work`.

    `share=False` renders and tokenizes every prompt whole, as cai did before it shared the
    start common to a pair's prompts (`cai.backends.prompt_split.SHARE_PREFIXES`)."""
    from cai.backends import prompt_split
    from cai.backends.cached import CachedBackend
    from cai.backends.vllm_offline import VLLMOfflineBackend
    from cai.cache import CallCache
    from cai.pipeline import load_pipeline_config, run_pipeline

    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    backend = VLLMOfflineBackend(
        str(model_dir),
        engine=engine,
        show_progress=False,
    )
    store = None
    if cache:
        store = CallCache(work / "calls.sqlite")
        backend = CachedBackend(backend, store)
    config = load_pipeline_config(
        None,
        [
            "stages=[judge, preferences]",
            f"samples={samples}",
            f"output_dir={work / 'out'}",
            "constitution=default",
            *([f"chunk_size={chunk_size}"] if chunk_size else []),
        ],
    )
    prompt_split.SHARE_PREFIXES = share
    try:
        result = run_pipeline(config, judge_backend=backend)
    finally:
        prompt_split.SHARE_PREFIXES = True
        if store is not None:
            store.close()
    return result.summary


def batch_request_prompt_ids(tokenizer, requests):
    """Prompt ids as cai's vLLM backend builds them for a batch (shared starts once)."""
    from cai.backends.tokens import batch_request_prompt_ids as batch_ids

    return batch_ids(tokenizer, requests)


def label_logprobs(out_dir: Path) -> list[tuple[float, ...]]:
    from cai.judge.judged import iter_judged

    found = []
    for judged in iter_judged(out_dir / "judgments"):
        assert judged.pair is not None
        for principle in judged.pair.per_principle:
            found += [tuple(o.label_logprobs) for o in principle.orders]
    return sorted(found)


def _defaults() -> tuple[int, int]:
    """The chunk sizes a default `cai judge` uses (read, not assumed)."""
    import inspect

    from cai.backends.cached import CachedBackend
    from cai.pipeline import PipelineConfig

    cache_batch = inspect.signature(CachedBackend.__init__).parameters["chunk_size"].default
    return PipelineConfig.model_fields["chunk_size"].default, cache_batch


DEFAULT_CHUNK, CACHE_BATCH = _defaults()

# Where a cai run spends its time: (label, file suffix, function name) of cumulative timers.
BREAKDOWN = [
    ("whole run (run_pipeline)", "cai/pipeline/run.py", "run_pipeline"),
    ("judge stage", "cai/pipeline/stages.py", "_judge_stage"),
    ("  inside vLLM LLM.generate", "vllm/entrypoints/llm.py", "generate"),
    ("  queueing groups in vLLM (LLM.enqueue)", "vllm/entrypoints/llm.py", "enqueue"),
    (
        "  waiting for the engine (LLM.wait_for_completion)",
        "vllm/entrypoints/llm.py",
        "wait_for_completion",
    ),
    ("  rendering templates", "cai/templates.py", "render"),
    ("  tokenizing prompts", "cai/backends/tokens.py", "batch_request_prompt_ids"),
    ("  choice token ids", "cai/backends/tokens.py", "choice_token_ids"),
    ("  principle sampling", "cai/judge/compare.py", "principles_for"),
    ("  assembling judgments", "cai/judge/compare.py", "_assemble"),
    (
        "  call cache (lookups, writes and the engine calls it makes)",
        "cai/backends/cached.py",
        "_cached",
    ),
    ("  chunk commits (fsync)", "cai/jobs.py", "_commit"),
    ("preferences stage (dataset + card)", "cai/pipeline/stages.py", "_preferences_stage"),
]


def profile_breakdown(fn) -> tuple[list[list[str]], str]:
    """Run once under cProfile: cumulative seconds of the named steps, and the top own-time list."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for label, suffix, name in BREAKDOWN:
        total = sum(
            value[3]
            for (filename, _, function), value in stats.stats.items()  # type: ignore[attr-defined]
            if function == name and filename.endswith(suffix)
        )
        rows.append([label, f"{total:.3f}"])
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
    return rows, text.getvalue()


VARIANTS = [
    "raw",
    "raw_tuned",
    "raw_text",
    "cai",
    "cai_cache",
    "cai_whole",
    "cai_big",
]


def variant_labels(pairs: int) -> dict[str, str]:
    return {
        "raw": "raw LLM.generate (baseline)",
        "raw_tuned": "raw LLM.generate tuned like cai's backend (detokenize off, no per-request "
        "copy)",
        "raw_text": "raw LLM.generate tuned, from the prompt texts (chat template applied by the "
        "script; vLLM tokenizes inside the call)",
        "cai": "cai judge, cache off",
        "cai_cache": "cai judge, fresh call cache",
        "cai_whole": "cai judge, fresh call cache, shared prefixes off (each prompt rendered and "
        "tokenized whole)",
        "cai_big": f"cai judge, cache off, chunk_size={pairs} (one engine batch)",
    }


def summary_rows(t: dict[str, float], stage_t: float | None, pairs: int) -> list[list[str]]:
    """The overview figures whose two runs were both measured."""
    wanted = [
        ("cai judge / raw LLM.generate throughput (cache off)", "raw", "cai"),
        ("cai judge / raw tuned like cai's backend (cache off)", "raw_tuned", "cai"),
        ("cai judge / raw throughput (fresh call cache)", "raw", "cai_cache"),
        ("cai judge (fresh call cache) / raw tuned like cai's backend", "raw_tuned", "cai_cache"),
        ("cai judge (fresh call cache) / raw tuned, from prompt texts", "raw_text", "cai_cache"),
        ("shared prefixes: with / without (fresh call cache)", "cai_whole", "cai_cache"),
        (f"cai judge, chunk_size={pairs} / raw throughput", "raw", "cai_big"),
    ]
    rows = [[label, fmt_ratio(t[a] / t[b])] for label, a, b in wanted if a in t and b in t]
    if stage_t is not None and "raw" in t:
        rows.append(["judge stage only / raw throughput", fmt_ratio(t["raw"] / stage_t)])
    return rows


def engine_shares(times: dict[str, list[float]], engine_seconds: dict[str, list[float]]):
    """Per cai variant, the median share of each run spent inside vLLM: a ratio within one run,
    so a machine that slows down between runs does not move it (the raw script's run is all
    engine time)."""
    return {
        name: median([e / s for e, s in zip(engine_seconds[name], runs, strict=True)])
        for name, runs in times.items()
        if name.startswith("cai") and engine_seconds.get(name)
    }


def share_rows(shares: dict[str, float]) -> list[list[str]]:
    labels = {"cai": "cache off", "cai_cache": "fresh call cache"}
    return [
        [
            f"share of a cai judge run inside vLLM ({labels[name]}; 100% = no overhead)",
            f"{shares[name]:.1%}",
        ]
        for name in ("cai_cache", "cai")
        if name in shares
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="32 pairs, 3 repeats")
    parser.add_argument("--profile", action="store_true", help="always print a profile")
    parser.add_argument(
        "--model", default=None, help="a model directory or pulled embedded name (default: tiny)"
    )
    parser.add_argument(
        "--only",
        default=",".join(VARIANTS),
        help="comma-separated runs to measure (a real model on a CPU is slow): "
        + ", ".join(VARIANTS),
    )
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 32, 3
    only = [v for v in VARIANTS if v in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(VARIANTS)
    if unknown or not {"raw", "raw_tuned"} & set(only):
        parser.error(f"--only takes {', '.join(VARIANTS)}, with raw or raw_tuned among them")

    root = Path(tempfile.mkdtemp(prefix="cai-bench-overhead-"))
    try:
        model_dir = bench_model(args.model, root / "model")
        samples = root / "samples.jsonl"
        write_jsonl(samples, synthetic_samples(args.pairs, seed=1))
        requests = record_choice_requests(samples)
        engine = EngineObserver(start_engine(model_dir))
        prompts, choices = token_prompts(engine.get_tokenizer(), requests)
        texts = text_prompts(engine.get_tokenizer(), requests) if "raw_text" in only else []
        tokens = sum(len(p) for p in prompts)
        print_header(
            f"overhead: {args.pairs} pairs, {len(prompts)} scored prompts, "
            f"{tokens / len(prompts):.0f} tokens each on average"
        )
        # cai's own work measured alone, without the engine: the judge's rendering and
        # bookkeeping (a recording backend answers), and tokenizing the prompts.
        render_t = median([timed(lambda: record_choice_requests(samples))[0] for _ in range(3)])
        tokenizer = engine.get_tokenizer()
        tokenize_t = median(
            [timed(lambda: batch_request_prompt_ids(tokenizer, requests))[0] for _ in range(3)]
        )
        # Warm up both paths once (imports, first-call setup), then measure interleaved.
        raw_score(engine, prompts[:8], choices[:8])
        run_cai(engine, model_dir, samples, root / "warm", cache=False)

        results: dict[str, object] = {}
        engine_seconds: dict[str, list[float]] = {n: [] for n in VARIANTS}
        engine_calls: dict[str, int] = {}
        stage_seconds: dict[str, list[float]] = {n: [] for n in VARIANTS}

        def before(name: str) -> None:
            engine.reset_prefix_cache()
            engine.reset()

        def cai_variant(name: str, cache: bool, **options):
            def go():
                summary = run_cai(engine, model_dir, samples, root / name, cache, **options)
                engine_seconds[name].append(engine.generate_seconds)
                engine_calls[name] = engine.generate_calls
                stage_seconds[name].append(summary["stages"]["judge"]["seconds"])
                results[name] = summary

            return go

        def raw_run():
            results["raw"] = raw_score(engine, prompts, choices)

        runs = {
            "raw": raw_run,
            "raw_tuned": lambda: raw_score(engine, prompts, choices, tuned=True),
            "raw_text": lambda: raw_score(engine, texts, choices, tuned=True),
            "cai": cai_variant("cai", cache=False),
            "cai_cache": cai_variant("cai_cache", cache=True),
            "cai_whole": cai_variant("cai_whole", cache=True, share=False),
            "cai_big": cai_variant("cai_big", cache=False, chunk_size=args.pairs),
        }
        times = interleave({n: runs[n] for n in only}, args.repeats, before_each=before)
        t = {name: median(times[name]) for name in only}
        shares = engine_shares(times, engine_seconds)
        base = "raw" if "raw" in t else "raw_tuned"
        labels = variant_labels(args.pairs)
        rows = [
            [
                labels[name] + (" (baseline)" if name == base and name != "raw" else ""),
                f"{t[name]:.2f}",
                f"{args.pairs / t[name]:.1f}",
                fmt_ratio(t[base] / t[name]),
            ]
            for name in only
        ]
        stage_t = median(stage_seconds["cai"]) if "cai" in t else None
        if stage_t is not None:
            rows.append(
                [
                    "judge stage only (cache off)",
                    f"{stage_t:.2f}",
                    f"{args.pairs / stage_t:.1f}",
                    fmt_ratio(t[base] / stage_t),
                ]
            )
        details = [
            f"{model_label(args.model)}; "
            f"{args.pairs} pairs x 4 principles x 2 orders = {len(prompts)} scored prompts of "
            f"{tokens / len(prompts):.0f} tokens on average; median of {args.repeats} interleaved "
            "repeats, prefix cache reset before each run.",
            "",
            table(["path", "seconds", "labels/s", f"throughput vs {base}"], rows),
            "",
            *detail_lines(t, args.pairs, engine_seconds, engine_calls),
            *[
                f"- {label}: {value} (median over the runs of each run's own ratio, which "
                "machine drift between runs does not move)."
                for label, value in share_rows(shares)
            ],
            f"- cai's own work measured alone (no engine): rendering and judge bookkeeping "
            f"{render_t:.2f} s, tokenizing the {len(prompts)} prompts {tokenize_t:.2f} s.",
        ]
        if "raw" in results and ("cai" in t or "cai_cache" in t):
            cai_logprobs = label_logprobs(root / ("cai" if "cai" in t else "cai_cache") / "out")
            raw_logprobs = sorted(tuple(v) for v in results["raw"])  # type: ignore[union-attr]
            max_diff = max(
                abs(a - b)
                for x, y in zip(cai_logprobs, raw_logprobs, strict=True)
                for a, b in zip(x, y, strict=True)
            )
            details.append(
                f"- Same prompts: the largest difference between cai's and the raw script's "
                f"label log-probs is {max_diff:.2e}."
            )
        print("\n".join(details))
        slow = "raw" in t and "cai" in t and t["raw"] / t["cai"] < 0.9
        if slow or args.profile:
            details += profile_section(engine, model_dir, samples, root)
        # a run at another size is a section of its own, beside the default one
        sized = args.pairs != 128 and not args.quick
        name = (
            "overhead"
            + (f"-{Path(args.model).name}" if args.model else "")
            + (f"-{args.pairs}" if sized else "")
        )
        record_result(
            name,
            {
                "title": "1. Overhead: cai judge vs raw vLLM"
                + (f" ({args.model})" if args.model else "")
                + (f" ({args.pairs} pairs)" if sized else ""),
                "command": "python bench/overhead.py"
                + (f" --model {args.model}" if args.model else "")
                + (f" --pairs {args.pairs}" if args.pairs != 128 else "")
                + (f" --repeats {args.repeats}" if args.repeats != 5 else "")
                + (f" --only {','.join(only)}" if only != VARIANTS else ""),
                "summary": summary_rows(t, stage_t, args.pairs) + share_rows(shares),
                "details": "\n".join(details),
                "raw": {
                    "times": times,
                    "stage_seconds": stage_seconds,
                    "engine_seconds": engine_seconds,
                    "render_seconds": render_t,
                    "tokenize_seconds": tokenize_t,
                },
            },
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def detail_lines(t, pairs, engine_seconds, engine_calls) -> list[str]:
    """What each measured step buys, for the runs that were measured."""
    lines = []
    if "raw_tuned" in t and "cai_cache" in t:
        lines.append(
            "- Against the tuned raw script, cai with the call cache (as users run it) is at "
            f"{fmt_ratio(t['raw_tuned'] / t['cai_cache'])}."
        )
    if "cai_whole" in t and "cai_cache" in t:
        lines.append(
            "- Shared prefixes (on by default): the judge template is rendered once per pair "
            "and order for all its principles, and the prompt start they share is tokenized "
            "once (each principle's end once per run), cut only where the cut was checked to "
            f"give the whole prompt's ids: {fmt_ratio(t['cai_whole'] / t['cai_cache'])} the "
            "speed of rendering and tokenizing each prompt whole (fresh call cache)."
        )
    if "cai" in t:
        engine_t = median(engine_seconds["cai"])
        lines.append(
            f"- Inside vLLM (generate, enqueue, wait) during a cai run (cache off): "
            f"{engine_t:.2f} s of {t['cai']:.2f} s ({engine_t / t['cai']:.0%}); the rest is cai "
            "(rendering, tokenizing, records, chunk commits, the preference dataset) and vLLM "
            f"calls split into {engine_calls['cai']} engine calls (one per {DEFAULT_CHUNK}-pair "
            "chunk) where the raw script makes one."
        )
    if "cai_big" in t:
        lines.append(
            f"- Inside `LLM.generate` with chunk_size={pairs} (the whole set in one "
            f"batch, like the raw script): {median(engine_seconds['cai_big']):.2f} s of "
            f"{t['cai_big']:.2f} s."
        )
    return lines


def profile_section(engine, model_dir: Path, samples: Path, root: Path) -> list[str]:
    engine.reset_prefix_cache()
    breakdown, report = profile_breakdown(
        lambda: run_cai(engine, model_dir, samples, root / "profiled", cache=True)
    )
    print(report)
    top = [line for line in report.splitlines() if line.strip()][-14:]
    section = [
        "",
        "Where the time of one cai run goes (fresh call cache, under cProfile, which slows "
        "Python code, so shares matter more than seconds):",
        "",
        table(["step", "cumulative seconds"], breakdown),
        "",
        "The profile's top entries by own time:",
        "",
        "```",
        *top,
        "```",
    ]
    print("\n".join(section))
    return section


if __name__ == "__main__":
    main()
