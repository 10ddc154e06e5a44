"""The revise stage end to end on real vLLM (the tiny model), through the call cache."""

from __future__ import annotations

import pytest

from cai.backends.cached import CachedBackend
from cai.cache import CallCache
from cai.constitution import load_constitution, sample_principles
from cai.pipeline import run_revise
from cai.sft_data import load_split
from cai.stages.revise import ReviseConfig, iter_chains

pytestmark = pytest.mark.vllm


def _config(tmp_path, **changes) -> ReviseConfig:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"prompt": "how do i treat a burn"}\n'
        '{"prompt": "my head hurts, what dose of drug should i take"}\n'
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": '
        '"hello"}, {"role": "user", "content": "tell me about water"}]}\n'
    )
    params = {"temperature": 0.7, "max_tokens": 12}
    values = {
        "prompts": str(prompts),
        "out": str(tmp_path / "out"),
        "constitution": "medical-safety",
        "rounds": 2,
        "seed": 3,
        "max_examples": 1,
        "response": params,
        "critique": params,
        "revision": params,
        "guards": {"policy": "keep"},
        "preferences": True,
    }
    values.update(changes)
    return ReviseConfig(**values)


def test_revise_on_vllm_end_to_end_and_served_from_cache(tmp_path, vllm_backend):
    config = _config(tmp_path)
    constitution = load_constitution("medical-safety")
    cache_path = tmp_path / "calls.sqlite"
    backend = CachedBackend(vllm_backend, CallCache(cache_path))
    summary = run_revise(config, backend=backend)

    # 3 initial answers + 3 prompts x 2 rounds x (critique + revision), all new.
    assert (backend.stats.hits, backend.stats.misses) == (0, 15)
    assert summary.prompts == 3 and summary.failed_chains == 0
    rows = load_split(summary.sft_path)
    assert len(rows) == 3  # policy keep: flagged rows stay, with their flags as columns
    assert summary.guards.kept == 3
    for row in rows:
        assert len(row["rounds"]) == 2
        expected = [
            sample_principles(constitution, key=f"{row['prompt_id']}:{r}", k=1, seed=3)[0].id
            for r in range(2)
        ]
        assert row["principles"] == expected
        assert row["messages"][-1] == {
            "role": "assistant",
            "content": row["rounds"][-1]["revision"],
        }
        assert row["messages"][-2]["role"] == "user"
        assert set(row["revision_finish_reasons"]) <= {"stop", "length"}
        truncated = "length" in row["revision_finish_reasons"]
        assert ("truncated_revision" in row["flags"]) == truncated
        assert row["policy_model"] == vllm_backend.model_id
    assert rows[2]["messages"][:3] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "tell me about water"},
    ]
    chains = list(iter_chains(config.out))
    assert [c.rounds[1].answer_before for c in chains] == [c.rounds[0].revision for c in chains]
    for chain, row in zip(chains, rows, strict=True):
        unchanged = any(
            " ".join(r.revision.split()).casefold() == " ".join(r.answer_before.split()).casefold()
            for r in chain.rounds
        )
        assert ("unchanged_revision" in row["flags"]) == unchanged
    prefs = load_split(summary.preferences_path)
    assert len(prefs) + summary.preferences_skipped == 3

    # Starting again from scratch repeats no model call: the cache answers all of them.
    again = CachedBackend(vllm_backend, CallCache(cache_path))
    rerun = run_revise(_config(tmp_path, overwrite=True), backend=again)
    assert (again.stats.hits, again.stats.misses) == (15, 0)
    assert rerun.prompts_processed_now == 3
    assert load_split(rerun.sft_path)["messages"] == rows["messages"]
    backend.cache.close()
    again.cache.close()
