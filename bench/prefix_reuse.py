"""Prefix reuse: both orders and m principles per pair, vLLM prefix caching on vs off.

cai's compare template puts what is shared first (instructions, conversation, the two
responses) and the principle's question last, so all principles of one answer order share
their prompt up to the question. This measures what that buys: the same judge run
(PairwiseJudge on VLLMOfflineBackend) on an engine with `enable_prefix_caching` on and on
one with it off, conversations of a few hundred tokens, and the share of prompt tokens
vLLM served from its cache (RequestOutput.num_cached_tokens). One engine lives at a time;
engines alternate (on, off, on, ...) and the cache is reset before every run, so each run
only reuses prefixes inside its own batch.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
from functools import partial
from pathlib import Path

from common import (
    EngineObserver,
    bench_model,
    fmt_ratio,
    median,
    model_label,
    print_header,
    record_result,
    reusable_prefix_tokens,
    start_engine,
    synthetic_samples,
    table,
    timed,
)


def measure(model_dir: Path, prefix_caching: bool, items, principles: int, repeats: int):
    """Start an engine, judge `items` `repeats` times (cold cache each time), stop it."""
    from cai.backends.vllm_offline import VLLMOfflineBackend
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig, PairwiseJudge
    from cai.templates import TemplateSet

    llm = start_engine(model_dir, prefix_caching=prefix_caching)
    engine = EngineObserver(llm, keep_prompts=True)
    backend = VLLMOfflineBackend(str(model_dir), engine=engine, show_progress=False)
    judge = PairwiseJudge(
        backend,
        load_constitution("default"),
        TemplateSet(),
        JudgeConfig(principles_per_pair=principles),
    )
    judge.judge_pairs(items[:2])  # warm-up
    seconds, shares, tokens = [], [], 0
    for _ in range(repeats):
        llm.reset_prefix_cache()
        engine.reset()
        elapsed, _ = timed(partial(judge.judge_pairs, items))
        seconds.append(elapsed)
        shares.append(engine.cached_share or 0.0)
        tokens = engine.prompt_tokens
    requests = engine.requests
    block = llm.llm_engine.vllm_config.cache_config.block_size
    ideal = (reusable_prefix_tokens(engine.prompts), reusable_prefix_tokens(engine.prompts, block))
    del judge, backend, engine, llm
    gc.collect()
    return seconds, shares, tokens, requests, block, ideal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--principles", type=int, default=4)
    parser.add_argument("--conversation-words", type=int, default=220)
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine start")
    parser.add_argument("--cycles", type=int, default=2, help="on/off engine pairs")
    parser.add_argument("--quick", action="store_true", help="16 pairs, 2 repeats, 1 cycle")
    parser.add_argument(
        "--model", default=None, help="a model directory or pulled embedded name (default: tiny)"
    )
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats, args.cycles = 16, 2, 1

    from cai.judge.compare import PairToJudge

    root = Path(tempfile.mkdtemp(prefix="cai-bench-prefix-"))
    try:
        model_dir = bench_model(args.model, root / "model")
        items = [
            PairToJudge(
                key=row["prompt_id"],
                conversation=row["prompt"],
                response_a=row["responses"][0],
                response_b=row["responses"][1],
            )
            for row in synthetic_samples(
                args.pairs, seed=3, prompt_words=args.conversation_words, response_words=50
            )
        ]
        print_header(
            f"prefix reuse: {args.pairs} pairs x {args.principles} principles x 2 orders, "
            f"{args.cycles} on/off engine cycle(s) x {args.repeats} runs"
        )
        runs: dict[str, list[float]] = {"on": [], "off": []}
        shares: dict[str, list[float]] = {"on": [], "off": []}
        tokens = requests = 0
        for cycle in range(args.cycles):
            # Alternate which engine goes first so slow phases of the machine hit both.
            modes = ["on", "off"] if cycle % 2 == 0 else ["off", "on"]
            for mode in modes:
                secs, got, tokens, requests, block, ideal = measure(
                    model_dir, mode == "on", items, args.principles, args.repeats
                )
                runs[mode] += secs
                shares[mode] += got
                print(f"caching {mode}: {[round(s, 2) for s in secs]} s", flush=True)
        on_t, off_t = median(runs["on"]), median(runs["off"])
        share = median(shares["on"])
        speed = off_t / on_t
        rows = [
            ["off", f"{off_t:.2f}", f"{args.pairs / off_t:.1f}", f"{median(shares['off']):.0%}"],
            ["on", f"{on_t:.2f}", f"{args.pairs / on_t:.1f}", f"{share:.0%}"],
        ]
        details = "\n".join(
            [
                f"{model_label(args.model)}; "
                f"{args.pairs} pairs x {args.principles} principles x 2 orders = {requests} "
                f"scored prompts, {tokens / max(requests, 1):.0f} tokens each on average; "
                f"median of {len(runs['on'])} runs per setting over {args.cycles} alternating "
                "engine start(s); prefix cache reset before each run.",
                "",
                table(["prefix caching", "seconds", "pairs/s", "prompt tokens from cache"], rows),
                "",
                f"- Prefix caching makes judging {fmt_ratio(speed)} faster; {share:.0%} of "
                "prompt tokens are served from the cache.",
                f"- Upper bounds from the token sequences themselves: {ideal[0] / tokens:.0%} "
                "of prompt tokens repeat an earlier prompt's prefix; in whole cache blocks "
                f"of {block} tokens (what vLLM's CPU backend caches) that is "
                f"{ideal[1] / tokens:.0%}.",
            ]
        )
        print(details)
        record_result(
            "prefix_reuse" + (f"-{Path(args.model).name}" if args.model else ""),
            {
                "title": "3. Prefix reuse: prefix caching on vs off"
                + (f" ({args.model})" if args.model else ""),
                "command": "python bench/prefix_reuse.py"
                + (f" --model {args.model}" if args.model else ""),
                "summary": [
                    ["speed-up from prefix caching (off time / on time)", fmt_ratio(speed)],
                    ["share of prompt tokens served from the prefix cache", f"{share:.0%}"],
                    [
                        "bound: share of prompt tokens that repeat a prefix (in whole blocks)",
                        f"{ideal[0] / tokens:.0%} ({ideal[1] / tokens:.0%})",
                    ],
                ],
                "details": details,
                "raw": {
                    "runs": runs,
                    "cached_share": shares,
                    "reusable_share": ideal[0] / tokens,
                    "reusable_share_in_blocks": ideal[1] / tokens,
                    "block_size": block,
                },
            },
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
