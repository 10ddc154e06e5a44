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
    overlap: bool = False,
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
        overlap_batch=64 if overlap else None,
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
    from cai.judge.stage import iter_judged

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="32 pairs, 3 repeats")
    parser.add_argument("--profile", action="store_true", help="always print a profile")
    parser.add_argument(
        "--model", default=None, help="a model directory or pulled embedded name (default: tiny)"
    )
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 32, 3

    root = Path(tempfile.mkdtemp(prefix="cai-bench-overhead-"))
    try:
        model_dir = bench_model(args.model, root / "model")
        samples = root / "samples.jsonl"
        write_jsonl(samples, synthetic_samples(args.pairs, seed=1))
        requests = record_choice_requests(samples)
        engine = EngineObserver(start_engine(model_dir))
        prompts, choices = token_prompts(engine.get_tokenizer(), requests)
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
        names = ("cai", "cai_cache", "cai_whole", "cai_big", "cai_overlap")
        engine_seconds: dict[str, list[float]] = {n: [] for n in names}
        engine_calls: dict[str, int] = {}
        stage_seconds: dict[str, list[float]] = {n: [] for n in names}

        def before(name: str) -> None:
            engine.reset_prefix_cache()
            engine.reset()

        def cai_variant(
            name: str,
            cache: bool,
            chunk_size: int | None = None,
            overlap: bool = False,
            share: bool = True,
        ):
            def go():
                summary = run_cai(
                    engine,
                    model_dir,
                    samples,
                    root / name,
                    cache,
                    chunk_size=chunk_size,
                    overlap=overlap,
                    share=share,
                )
                engine_seconds[name].append(engine.generate_seconds)
                engine_calls[name] = engine.generate_calls
                stage_seconds[name].append(summary["stages"]["judge"]["seconds"])
                results[name] = summary

            return go

        times = interleave(
            {
                "raw": lambda: results.__setitem__("raw", raw_score(engine, prompts, choices)),
                "raw_tuned": lambda: raw_score(engine, prompts, choices, tuned=True),
                "cai": cai_variant("cai", cache=False),
                "cai_cache": cai_variant("cai_cache", cache=True),
                "cai_whole": cai_variant("cai_whole", cache=True, share=False),
                "cai_big": cai_variant("cai_big", cache=False, chunk_size=args.pairs),
                "cai_overlap": cai_variant("cai_overlap", cache=True, overlap=True),
            },
            args.repeats,
            before_each=before,
        )
        raw_t, tuned_t, cai_t, cache_t, whole_t, big_t, overlap_t = (
            median(times[n])
            for n in (
                "raw",
                "raw_tuned",
                "cai",
                "cai_cache",
                "cai_whole",
                "cai_big",
                "cai_overlap",
            )
        )
        stage_t = median(stage_seconds["cai"])
        engine_t = median(engine_seconds["cai"])
        cai_logprobs = label_logprobs(root / "cai" / "out")
        raw_logprobs = sorted(tuple(v) for v in results["raw"])  # type: ignore[union-attr]
        max_diff = max(
            abs(a - b)
            for x, y in zip(cai_logprobs, raw_logprobs, strict=True)
            for a, b in zip(x, y, strict=True)
        )
        r_e2e, r_cache, r_stage = raw_t / cai_t, raw_t / cache_t, raw_t / stage_t
        rows = [
            ["raw LLM.generate (baseline)", f"{raw_t:.2f}", f"{args.pairs / raw_t:.1f}", "1.00x"],
            [
                "raw LLM.generate tuned like cai's backend (detokenize off, no per-request copy)",
                f"{tuned_t:.2f}",
                f"{args.pairs / tuned_t:.1f}",
                fmt_ratio(raw_t / tuned_t),
            ],
            ["cai judge, cache off", f"{cai_t:.2f}", f"{args.pairs / cai_t:.1f}", fmt_ratio(r_e2e)],
            [
                "cai judge, fresh call cache",
                f"{cache_t:.2f}",
                f"{args.pairs / cache_t:.1f}",
                fmt_ratio(r_cache),
            ],
            [
                "cai judge, fresh call cache, shared prefixes off (each prompt rendered and "
                "tokenized whole)",
                f"{whole_t:.2f}",
                f"{args.pairs / whole_t:.1f}",
                fmt_ratio(raw_t / whole_t),
            ],
            [
                f"cai judge, cache off, chunk_size={args.pairs} (one engine batch)",
                f"{big_t:.2f}",
                f"{args.pairs / big_t:.1f}",
                fmt_ratio(raw_t / big_t),
            ],
            [
                "judge stage only (cache off)",
                f"{stage_t:.2f}",
                f"{args.pairs / stage_t:.1f}",
                fmt_ratio(r_stage),
            ],
            [
                "cai judge, fresh call cache, overlap on (groups of 64 prompts queued to the "
                "engine as they are tokenized: overlap_batch=64)",
                f"{overlap_t:.2f}",
                f"{args.pairs / overlap_t:.1f}",
                fmt_ratio(raw_t / overlap_t),
            ],
        ]
        details = [
            f"{model_label(args.model)}; "
            f"{args.pairs} pairs x 4 principles x 2 orders = {len(prompts)} scored prompts of "
            f"{tokens / len(prompts):.0f} tokens on average; median of {args.repeats} interleaved "
            "repeats, prefix cache reset before each run.",
            "",
            table(["path", "seconds", "labels/s", "throughput vs raw"], rows),
            "",
            "- Overlap (off by default, `VLLMOfflineBackend(overlap_batch=64)`): each batch "
            "queued in groups of 64 prompts (`LLM.enqueue`) as they are tokenized, so the "
            "engine (its own process) computes while cai tokenizes the next group: "
            f"{fmt_ratio(cache_t / overlap_t)} the speed of the default (each batch tokenized "
            "whole, then one `generate` call), both with the call cache. Against the tuned "
            "raw script, cai with the call cache (as users run it) is at "
            f"{fmt_ratio(tuned_t / cache_t)}.",
            "- Shared prefixes (on by default): the judge template is rendered once per pair "
            "and order for all its principles, and the prompt start they share is tokenized "
            "once (each principle's end once per run), cut only where the cut was checked to "
            f"give the whole prompt's ids: {fmt_ratio(whole_t / cache_t)} the speed of "
            "rendering and tokenizing each prompt whole (fresh call cache); against the tuned "
            f"raw script {fmt_ratio(tuned_t / whole_t)} without, {fmt_ratio(tuned_t / cache_t)} "
            "with.",
            f"- Inside vLLM (generate, enqueue, wait) during a cai run (cache off): "
            f"{engine_t:.2f} s of "
            f"{cai_t:.2f} s ({engine_t / cai_t:.0%}); the rest is cai (rendering, "
            "tokenizing, records, chunk commits, the preference dataset) and vLLM calls split "
            f"into {engine_calls['cai']} engine calls (one per {DEFAULT_CHUNK}-pair chunk) "
            f"where the raw script makes one; with the call cache, {engine_calls['cai_cache']} "
            f"calls (the cache sends at most {CACHE_BATCH} requests per call) and a SQLite "
            "write per batch.",
            f"- Inside `LLM.generate` with chunk_size={args.pairs} (the whole set in one "
            f"batch, like the raw script): {median(engine_seconds['cai_big']):.2f} s of "
            f"{big_t:.2f} s.",
            f"- cai's own work measured alone (no engine): rendering and judge bookkeeping "
            f"{render_t:.2f} s, tokenizing the {len(prompts)} prompts {tokenize_t:.2f} s.",
            f"- Same prompts: the largest difference between cai's and the raw script's label "
            f"log-probs is {max_diff:.2e}.",
        ]
        print("\n".join(details))
        if r_e2e < 0.9 or args.profile:
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
            details += section
        name = "overhead" + (f"-{Path(args.model).name}" if args.model else "")
        record_result(
            name,
            {
                "title": "1. Overhead: cai judge vs raw vLLM"
                + (f" ({args.model})" if args.model else ""),
                "command": "python bench/overhead.py"
                + (f" --model {args.model}" if args.model else ""),
                "summary": [
                    ["cai judge / raw LLM.generate throughput (cache off)", fmt_ratio(r_e2e)],
                    [
                        "cai judge / raw tuned like cai's backend (cache off)",
                        fmt_ratio(tuned_t / cai_t),
                    ],
                    ["cai judge / raw throughput (fresh call cache)", fmt_ratio(r_cache)],
                    [
                        "cai judge (fresh call cache) / raw tuned like cai's backend",
                        fmt_ratio(tuned_t / cache_t),
                    ],
                    [
                        "shared prefixes: with / without (fresh call cache)",
                        fmt_ratio(whole_t / cache_t),
                    ],
                    [
                        "overlap of tokenizing and engine: with / without (fresh call cache)",
                        fmt_ratio(cache_t / overlap_t),
                    ],
                    ["judge stage only / raw throughput", fmt_ratio(r_stage)],
                    [
                        f"cai judge, chunk_size={args.pairs} / raw throughput",
                        fmt_ratio(raw_t / big_t),
                    ],
                ],
                "details": "\n".join(details),
                "raw": {
                    "times": times,
                    "stage_seconds": stage_seconds,
                    "engine_seconds": engine_seconds,
                    "max_logprob_diff": max_diff,
                    "render_seconds": render_t,
                    "tokenize_seconds": tokenize_t,
                },
            },
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
