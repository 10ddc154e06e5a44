"""distilabel's side of `peer_distilabel.py`: label pairs with PrometheusEval (relative mode).

Runs in the peer virtualenv (`bench/.venv-peer`, made by `bench/peer_setup.sh`), never in
cai's: it imports only distilabel and the standard library. Reads the pairs the benchmark
wrote (JSONL rows `{"instruction", "generations": [a, b]}`), sends them through distilabel's
`OpenAILLM` to an OpenAI-compatible server, and prints one JSON line: rows labeled, results
parsed, seconds inside `pipeline.run`. distilabel's cache lives in `--cache-dir`, so a rerun
with the same arguments (the same pipeline signature) reuses what an earlier run finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path


def build_pipeline(args: argparse.Namespace):
    """LoadDataFromDicts -> PrometheusEval(relative) on OpenAILLM pointed at the server."""
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import PrometheusEval

    rows = [json.loads(line) for line in Path(args.pairs).read_text().splitlines() if line]
    with Pipeline(name="cai-bench-peer", cache_dir=args.cache_dir) as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=args.batch_size)
        judge = PrometheusEval(
            llm=OpenAILLM(
                model=args.model,
                base_url=args.base_url,
                api_key="unused",  # the local server checks no key
                generation_kwargs={"max_new_tokens": args.max_new_tokens, "temperature": 0.0},
            ),
            mode="relative",
            rubric="harmlessness",
            reference=False,
            input_batch_size=args.batch_size,
        )
        load >> judge
    return pipeline, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--no-cache", action="store_true", help="ignore distilabel's cache")
    parser.add_argument("--verbose", action="store_true", help="keep distilabel's logs")
    args = parser.parse_args()
    if not args.verbose:
        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
    pipeline, total = build_pipeline(args)
    start = time.perf_counter()
    distiset = pipeline.run(use_cache=not args.no_cache)
    seconds = time.perf_counter() - start
    out = distiset["default"]["train"]
    results = list(out["result"])
    print(
        json.dumps(
            {
                "total": total,
                "rows": len(results),
                "parsed": sum(r in ("A", "B") for r in results),
                "seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
