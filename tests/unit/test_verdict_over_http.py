"""A judge that gives no log-probs: the verdict method through the HTTP client, end to end.

The provider is the local OpenAI-compatible stub; what it writes decides whether each
judgment parses. The run summary counts what did not parse and names each server with
the concurrency the client chose for it.
"""

from __future__ import annotations

import json

import pytest
import yaml

from cai.pipeline import format_summary, load_pipeline_config, run_pipeline
from cai.testing.openai_stub import OpenAIStub


def _config(tmp_path, url: str):
    (tmp_path / "samples.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "prompt_id": f"p{i}",
                    "prompt": [{"role": "user", "content": f"Question {i}?"}],
                    "responses": [f"First answer {i}.", f"Second answer {i}, longer."],
                }
            )
            + "\n"
            for i in range(4)
        )
    )
    data = {
        "output_dir": str(tmp_path / "out"),
        "samples": str(tmp_path / "samples.jsonl"),
        "stages": ["judge", "preferences"],
        "constitution": "default",
        "judge_backend": {"kind": "openai", "model": "stub", "base_urls": [url]},
        "judge": {"method": "verdict", "principles_per_pair": 1, "cot_max_tokens": 32},
        "preferences": {"format": "jsonl", "min_confidence": 0.0},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_pipeline_config(path)


@pytest.mark.parametrize(
    ("reply", "labeled"),
    [("Both read well; I pick (A).", 4), ("They are equally good.", 0)],
)
def test_verdicts_through_the_http_client_are_parsed_or_counted(tmp_path, reply, labeled):
    with OpenAIStub(reply=reply) as stub:
        result = run_pipeline(_config(tmp_path, stub.url))
    judge = result.summary["stages"]["judge"]
    health = judge["judge_health"]
    assert health["pairs_judged"] == 4
    assert health["pairs_labeled"] == labeled
    # each pair is judged in both orders: two written verdicts per pair
    assert health["failures_by_kind"] == ({} if labeled else {"unparseable": 8})
    if labeled:  # "(A)" whatever the order: the winner flips with the position, a tie
        assert health["exact_ties"] == 4 and health["position_flips"] == 4
    [server] = judge["executor"]["endpoints"]
    assert server["url"] == stub.url and server["requests"] == 8
    assert server["concurrency"] >= 1
    report = format_summary(result)
    assert f"server {stub.url}: 8 requests, concurrency" in report
    assert ("unparseable" in report) == (not labeled)
