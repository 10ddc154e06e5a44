"""Memory stays flat as the number of prompts grows: every stage streams chunk by chunk."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from cai.backends.scripted import ScriptedBackend
from cai.pipeline import load_pipeline_config, run_pipeline

pytestmark = pytest.mark.slow


def score(request):
    text = (request.messages or [{}])[-1].get("content", "")
    return [float(len(text) % 7), float(len(text) % 5)]


def peak_bytes(tmp_path, count: int) -> int:
    prompts = tmp_path / f"prompts-{count}.jsonl"
    with prompts.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"prompt": f"Prompt {i} asks about subject {i * 7}."}) + "\n")
    config = load_pipeline_config(
        None,
        [
            f"prompts.path={prompts}",
            f"output_dir={tmp_path / f'out-{count}'}",
            "sample.n=2",
            "judge.principles_per_pair=1",
            "preferences.format=jsonl",
            "chunk_size=50",
        ],
    )
    backend = ScriptedBackend(score=score)
    tracemalloc.start()
    try:
        result = run_pipeline(config, policy_backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.summary["stages"]["preferences"]["prompts"] == count
    return peak


def test_peak_memory_does_not_grow_with_the_number_of_prompts(tmp_path):
    peak_bytes(tmp_path, 50)  # warm imports and caches outside the comparison
    small = peak_bytes(tmp_path, 200)
    large = peak_bytes(tmp_path, 1600)
    assert large < small * 1.5 + 512 * 1024, (small, large)
