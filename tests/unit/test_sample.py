"""Sampling: per-prompt seeds, chunking independence, resume after a crash."""

from __future__ import annotations

import pytest

from cai.backends.scripted import ScriptedBackend
from cai.records import PromptRecord
from cai.stages.sample import SampleConfig, iter_samples, prompt_seed, sample_prompts


def records(count=7):
    return [
        PromptRecord(prompt_id=f"id-{i}", prompt=[{"role": "user", "content": f"question {i}"}])
        for i in range(count)
    ]


def responses(path):
    return [(s.prompt_id, s.responses, s.seed) for s in iter_samples(path)]


def test_prompt_seed_is_stable_and_depends_on_both_inputs():
    assert prompt_seed(0, "a") == prompt_seed(0, "a")
    assert len({prompt_seed(0, "a"), prompt_seed(1, "a"), prompt_seed(0, "b")}) == 3
    assert 0 <= prompt_seed(123, "x") < 2**31


def test_responses_do_not_depend_on_chunking(tmp_path):
    config = SampleConfig(n=3, seed=5)
    small = sample_prompts(ScriptedBackend(), records(), tmp_path / "a", config, chunk_size=2)
    large = sample_prompts(ScriptedBackend(), records(), tmp_path / "b", config, chunk_size=5)
    assert small.prompts == large.prompts == 7 and small.responses == 21
    assert responses(tmp_path / "a") == responses(tmp_path / "b")
    other = sample_prompts(ScriptedBackend(), records(), tmp_path / "c", SampleConfig(n=3, seed=6))
    assert responses(tmp_path / "c") != responses(tmp_path / "a")
    assert other.prompts_sampled_now == 7


def test_system_prompt_is_added_when_missing(tmp_path):
    seen = []

    def respond(prompt, params, index):
        seen.append(prompt[0])
        return "ok"

    sample_prompts(
        ScriptedBackend(respond=respond),
        records(1),
        tmp_path,
        SampleConfig(n=1, system_prompt="Be kind."),
    )
    assert seen == [{"role": "system", "content": "Be kind."}]


def test_a_crash_mid_run_resumes_to_the_same_samples(tmp_path):
    config = SampleConfig(n=2, seed=1)
    sample_prompts(ScriptedBackend(), records(), tmp_path / "clean", config, chunk_size=2)

    calls = {"n": 0}

    def flaky(prompt, params, index):
        calls["n"] += 1
        if calls["n"] > 7:
            raise RuntimeError("engine died")
        return f"r {prompt[-1]['content']} {params.seed} {index}"

    def steady(prompt, params, index):
        return f"r {prompt[-1]['content']} {params.seed} {index}"

    with pytest.raises(RuntimeError, match="engine died"):
        sample_prompts(
            ScriptedBackend(respond=flaky), records(), tmp_path / "crash", config, chunk_size=2
        )
    stats = sample_prompts(
        ScriptedBackend(respond=steady), records(), tmp_path / "crash", config, chunk_size=2
    )
    assert stats.prompts_resumed == 2 and stats.prompts_sampled_now == 5
    sample_prompts(
        ScriptedBackend(respond=steady), records(), tmp_path / "ref", config, chunk_size=2
    )
    assert responses(tmp_path / "crash") == responses(tmp_path / "ref")


def test_shared_seed_mode_sends_one_batched_call_per_chunk(tmp_path):
    backend = ScriptedBackend()
    batches = []
    original = backend.generate_chat

    def spy(conversations, params):
        batches.append((len(conversations), params.seed))
        return original(conversations, params)

    backend.generate_chat = spy
    sample_prompts(
        backend, records(), tmp_path, SampleConfig(seed=4, seed_mode="shared"), chunk_size=3
    )
    assert batches == [(3, 4), (3, 4), (1, 4)]
    assert {s.seed for s in iter_samples(tmp_path)} == {4}
