"""Judge method: cai's log-prob soft-label judge against a judge that writes a verdict and parses it.

Both judges see the same pairs, the same principles, both answer orders, the same engine and
the same backend layer (VLLMOfflineBackend). The log-prob judge scores one token per order
(PairwiseJudge). The verdict judge is built the way distilabel's and prometheus-eval's
judges work: the same comparison prompt plus an instruction to write short feedback and end
with "[RESULT] A" or "[RESULT] B", greedy generation of up to 64 tokens, then a regex parse;
a reply without a parsable verdict is a parse failure (no label). Reported: the speed ratio
and the verdict judge's parse-failure rate (high on a random tiny model, as expected).
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

from common import (
    build_tiny_model,
    fmt_ratio,
    interleave,
    median,
    print_header,
    record_result,
    start_engine,
    synthetic_samples,
    table,
)

VERDICT_INSTRUCTION = (
    "\n\nFirst write brief feedback on both responses, then end your reply with "
    '"[RESULT] A" or "[RESULT] B".'
)
_VERDICT = re.compile(r"\[RESULT\]\s*\(?\s*([AB])\b")


def parse_verdict(text: str) -> str | None:
    """The label of the last "[RESULT] X" in the text, or None when there is none."""
    found = _VERDICT.findall(text)
    return found[-1] if found else None


def verdict_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The comparison prompt, with the last user turn asking for feedback and a verdict."""
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message["role"] == "user":
            message["content"] += VERDICT_INSTRUCTION
            break
    return out


class VerdictJudge:
    """Generate-then-parse judge over the same templates, principles and orders as cai's."""

    def __init__(self, judge, max_tokens: int = 64) -> None:
        self.judge = judge
        self.max_tokens = max_tokens

    def judge_pairs(self, items) -> dict[str, int]:
        from cai.backends.base import GenerationParams

        conversations = []
        for item in items:
            for principle in self.judge.principles_for(item.key):
                for pair in (
                    [item.response_a, item.response_b],
                    [item.response_b, item.response_a],
                ):
                    rendered = self.judge.templates.render(
                        "compare",
                        conversation=item.conversation,
                        responses=pair,
                        labels=["A", "B"],
                        principle=principle,
                        constitution=self.judge.constitution,
                    )
                    conversations.append(verdict_messages(rendered.messages))
        params = GenerationParams(temperature=0.0, max_tokens=self.max_tokens, seed=0)
        results = self.judge.backend.generate_chat(conversations, params)
        verdicts = [parse_verdict(r.texts[0]) for r in results]
        return {
            "judgments": len(results),
            "parse_failures": sum(v is None for v in verdicts),
            "hit_max_tokens": sum(r.finish_reasons[0] == "length" for r in results),
            "completion_tokens": sum((r.completion_tokens or [0])[0] for r in results),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--principles", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 pairs, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 16, 2

    from cai.backends.vllm_offline import VLLMOfflineBackend
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
    from cai.templates import TemplateSet

    root = Path(tempfile.mkdtemp(prefix="cai-bench-method-"))
    try:
        model_dir = build_tiny_model(root / "model")
        engine = start_engine(model_dir)
        backend = VLLMOfflineBackend(str(model_dir), engine=engine, show_progress=False)
        judge = PairwiseJudge(
            backend,
            load_constitution("default"),
            TemplateSet(),
            JudgeConfig(principles_per_pair=args.principles),
        )
        verdict = VerdictJudge(judge, max_tokens=args.max_tokens)
        items = [
            PairToJudge(
                key=row["prompt_id"],
                conversation=row["prompt"],
                response_a=row["responses"][0],
                response_b=row["responses"][1],
            )
            for row in synthetic_samples(args.pairs, seed=2)
        ]
        n = args.pairs * args.principles * 2
        print_header(
            f"judge method: {args.pairs} pairs x {args.principles} principles x 2 orders = {n}"
        )
        judge.judge_pairs(items[:4])  # warm-up of both paths
        verdict.judge_pairs(items[:4])
        outcome: dict[str, object] = {}
        times = interleave(
            {
                "logprob": lambda: outcome.__setitem__("logprob", judge.judge_pairs(items)),
                "verdict": lambda: outcome.__setitem__("verdict", verdict.judge_pairs(items)),
            },
            args.repeats,
            before_each=lambda _: engine.reset_prefix_cache(),
        )
        lp_t, v_t = median(times["logprob"]), median(times["verdict"])
        labeled = outcome["logprob"]
        lp_failures = sum(not j.ok for j in labeled)  # type: ignore[union-attr]
        stats = outcome["verdict"]
        assert isinstance(stats, dict)
        fail_rate = stats["parse_failures"] / stats["judgments"]
        speed = v_t / lp_t
        rows = [
            [
                "log-prob soft label (cai)",
                f"{lp_t:.2f}",
                f"{args.pairs / lp_t:.1f}",
                "1 scored token",
                f"{lp_failures}/{args.pairs} pairs",
            ],
            [
                f"generate verdict + parse (max {args.max_tokens} tokens)",
                f"{v_t:.2f}",
                f"{args.pairs / v_t:.1f}",
                f"{stats['completion_tokens'] / stats['judgments']:.0f} generated tokens",
                f"{stats['parse_failures']}/{stats['judgments']} replies unparsable",
            ],
        ]
        details = "\n".join(
            [
                f"{args.pairs} pairs x {args.principles} principles x 2 orders = {n} judgments "
                f"per method; median of {args.repeats} interleaved repeats on one engine.",
                "",
                table(["judge", "seconds", "pairs/s", "per judgment", "failures"], rows),
                "",
                f"- The log-prob judge is {fmt_ratio(speed)} faster than the verdict judge.",
                f"- Verdict parse-failure rate on this random tiny model: {fail_rate:.0%} "
                f"({stats['hit_max_tokens']}/{stats['judgments']} replies hit the "
                f"{args.max_tokens}-token limit). A trained judge parses far more often; the "
                "speed ratio is what carries over, and it grows with the verdict length.",
            ]
        )
        print(details)
        record_result(
            "judge_method",
            {
                "title": "2. Judge method: log-prob vs generated verdict",
                "summary": [
                    ["verdict-judge time / log-prob-judge time", fmt_ratio(speed)],
                    ["verdict parse-failure rate (random tiny model)", f"{fail_rate:.0%}"],
                ],
                "details": details,
                "raw": {"times": times, "verdict": stats},
            },
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
