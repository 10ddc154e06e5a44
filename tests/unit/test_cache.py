"""The call cache: content addressing, zero calls on rerun, per-chunk commits, two processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cai.backends.base import ChoiceRequest, GenerationParams
from cai.backends.cached import CachedBackend
from cai.backends.scripted import ScriptedBackend
from cai.cache import CallCache, call_key


def _convs(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"prompt {i}"}] for i in range(n)]


def test_rerun_makes_zero_inner_calls(tmp_path):
    inner = ScriptedBackend()
    cached = CachedBackend(inner, CallCache(tmp_path / "c.sqlite"), chunk_size=4)
    params = GenerationParams(n=2, seed=7, max_tokens=8)
    first = cached.generate_chat(_convs(10), params)
    assert inner.calls["generate"] == 10
    assert (cached.stats.hits, cached.stats.misses) == (0, 10)

    again_inner = ScriptedBackend(respond=lambda *a: pytest.fail("engine called on rerun"))
    again = CachedBackend(again_inner, CallCache(tmp_path / "c.sqlite"))
    second = again.generate_chat(_convs(10), params)
    assert second == first
    assert again_inner.calls["generate"] == 0
    assert (again.stats.hits, again.stats.misses) == (10, 0)


def test_only_misses_reach_the_engine_and_order_is_kept(tmp_path):
    inner = ScriptedBackend()
    cached = CachedBackend(inner, CallCache(tmp_path / "c.sqlite"))
    params = GenerationParams(seed=1)
    cached.generate_chat(_convs(3), params)
    mixed = _convs(6)[::-1]  # three new, three cached, reversed order
    out = cached.generate_chat(mixed, params)
    assert inner.calls["generate"] == 6
    expected = ScriptedBackend().generate_chat(mixed, params)
    assert [g.texts for g in out] == [g.texts for g in expected]


def test_duplicates_within_a_batch_are_computed_once(tmp_path):
    inner = ScriptedBackend()
    cached = CachedBackend(inner, CallCache(tmp_path / "c.sqlite"))
    out = cached.generate_chat(_convs(1) * 5, GenerationParams(seed=3))
    assert inner.calls["generate"] == 1
    assert len(out) == 5 and len({tuple(g.texts) for g in out}) == 1


def test_key_covers_model_n_seed_and_request():
    request = {"messages": [{"role": "user", "content": "x"}]}
    base = call_key("m", "chat", request, GenerationParams(n=1, seed=1).model_dump(mode="json"))
    variants = [
        call_key("m2", "chat", request, GenerationParams(n=1, seed=1).model_dump(mode="json")),
        call_key("m", "chat", request, GenerationParams(n=2, seed=1).model_dump(mode="json")),
        call_key("m", "chat", request, GenerationParams(n=1, seed=2).model_dump(mode="json")),
        call_key("m", "text", request, GenerationParams(n=1, seed=1).model_dump(mode="json")),
        call_key(
            "m",
            "chat",
            {"messages": [{"role": "user", "content": "y"}]},
            GenerationParams(n=1, seed=1).model_dump(mode="json"),
        ),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    assert base == call_key(
        "m", "chat", request, GenerationParams(n=1, seed=1).model_dump(mode="json")
    )


def test_scores_are_cached_per_request(tmp_path):
    inner = ScriptedBackend(score=lambda r: [-0.5, -1.5] if r.assistant_prefix else [-2.0, -1.0])
    cached = CachedBackend(inner, CallCache(tmp_path / "c.sqlite"))
    requests = [
        ChoiceRequest(text="q", assistant_prefix="("),
        ChoiceRequest(text="q"),
    ]
    first = cached.score_choices(requests)
    second = cached.score_choices(requests)
    assert inner.calls["score"] == 2
    assert first == second and first[0].logprobs == [-0.5, -1.5]


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from cai.backends.base import GenerationParams
    from cai.backends.scripted import ScriptedBackend
    from cai.backends.cached import CachedBackend
    from cai.cache import CallCache

    calls = 0
    def respond(prompt, params, index):
        global calls
        calls += 1
        if calls == 11:  # in the third chunk of 5
            os.kill(os.getpid(), signal.SIGKILL)
        return "answer " + prompt[-1]["content"]

    cached = CachedBackend(ScriptedBackend(respond=respond), CallCache(sys.argv[1]), chunk_size=5)
    convs = [[{"role": "user", "content": f"prompt {i}"}] for i in range(20)]
    cached.generate_chat(convs, GenerationParams(seed=0))
    """
)


def test_sigkill_loses_only_the_chunk_in_flight(tmp_path):
    path = tmp_path / "c.sqlite"
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(path)], check=False)
    assert proc.returncode == -9
    assert CallCache(path).summary().entries == 10

    inner = ScriptedBackend(respond=lambda prompt, params, i: "answer " + prompt[-1]["content"])
    cached = CachedBackend(inner, CallCache(path), chunk_size=5)
    out = cached.generate_chat(_convs(20), GenerationParams(seed=0))
    assert inner.calls["generate"] == 10
    assert [g.texts[0] for g in out] == [f"answer prompt {i}" for i in range(20)]


_WRITER = textwrap.dedent(
    """
    import sys
    from cai.backends.base import GenerationParams
    from cai.backends.scripted import ScriptedBackend
    from cai.backends.cached import CachedBackend
    from cai.cache import CallCache

    tag = sys.argv[2]
    cached = CachedBackend(ScriptedBackend(), CallCache(sys.argv[1]), chunk_size=1)
    for round in range(3):
        convs = [[{"role": "user", "content": f"{i}"}] for i in range(60)]
        cached.generate_chat(convs, GenerationParams(seed=round))
    print(cached.stats.hits, cached.stats.misses)
    """
)


def test_two_processes_share_one_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    totals = [tuple(map(int, out.split())) for out, _ in outs]
    assert all(hits + misses == 180 for hits, misses in totals)
    summary = CallCache(path).summary()
    assert summary.entries == 180
    assert summary.by_model == {"scripted": {"chat": 180}}


def test_clear_and_summary(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    CachedBackend(ScriptedBackend(model_id="m1"), cache).generate_chat(
        _convs(3), GenerationParams()
    )
    CachedBackend(ScriptedBackend(model_id="m2"), cache).generate_text(["a"], GenerationParams())
    assert cache.summary().by_model == {"m1": {"chat": 3}, "m2": {"text": 1}}
    assert cache.clear("m1") == 3
    assert cache.summary().entries == 1
    assert cache.clear() == 1
    assert cache.summary().entries == 0


def test_cached_backend_exposes_the_inner_backend():
    inner = ScriptedBackend(model_id="abc")
    cached = CachedBackend(inner, CallCache(":memory:"))
    assert cached.model_id == "abc"
    assert cached.inner is inner and cached.inner.calls is inner.calls


def test_many_processes_can_create_the_same_new_cache_at_once(tmp_path):
    """Opening a new cache switches it to WAL, which SQLite does not wait for: must retry."""
    code = (
        "import sys; from cai.cache import CallCache; c = CallCache(sys.argv[1]); "
        "c.put_many('m', 'chat', [(sys.argv[2], 'x')])"
    )
    for trial in range(4):
        path = tmp_path / f"new-{trial}.sqlite"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(path), f"key-{i}"],
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(6)
        ]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), errors
        assert CallCache(path).summary().entries == 6
