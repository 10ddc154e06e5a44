"""Real engines on the tiny model: generation, choice scoring, agreement, cache, clear errors."""

from __future__ import annotations

import pytest

from cai.backends import backend_spec, make_backend
from cai.backends.base import BackendError, ChoiceRequest, ContextOverflowError, GenerationParams
from cai.backends.scripted import ScriptedBackend
from cai.backends.tokens import ChoiceTokenError

pytestmark = pytest.mark.vllm

CONV = [{"role": "user", "content": "Which answer is more helpful? (A) or (B)"}]
REQUESTS = [
    ChoiceRequest(messages=CONV, assistant_prefix="The better response is ("),
    ChoiceRequest(
        messages=[{"role": "system", "content": "Judge fairly."}, *CONV],
        assistant_prefix="Answer: (",
        choices=("A", "B", "C"),
    ),
    ChoiceRequest(text="Question: is water wet?\nAnswer: (", choices=("A", "B", "C", "D")),
    ChoiceRequest(messages=CONV),
]


@pytest.fixture(scope="module")
def transformers_backend(tiny_model_dir):
    return make_backend(backend_spec(kind="transformers", model=str(tiny_model_dir), device="cpu"))


def _check_generations(generations, count, n, max_tokens):
    assert len(generations) == count
    for gen in generations:
        assert len(gen.texts) == n and len(gen.finish_reasons) == n
        assert all(isinstance(t, str) for t in gen.texts)
        assert set(gen.finish_reasons) <= {"stop", "length"}
        assert gen.prompt_tokens and gen.prompt_tokens > 0
    # a random tiny model almost never stops early: n distinct samples per prompt
    assert len(set(generations[0].texts)) == n
    if generations[0].completion_tokens is not None:
        assert max(generations[0].completion_tokens) <= max_tokens


@pytest.mark.parametrize("backend_name", ["vllm_backend", "server_backend", "transformers_backend"])
def test_generation_n_samples_seeded(backend_name, request):
    backend = request.getfixturevalue(backend_name)
    params = GenerationParams(n=3, temperature=1.0, max_tokens=12, seed=11)
    convs = [[{"role": "user", "content": f"Tell me about topic {i}."}] for i in range(3)]
    first = backend.generate_chat(convs, params)
    _check_generations(first, 3, 3, 12)
    assert [g.texts for g in backend.generate_chat(convs, params)] == [g.texts for g in first]
    other_seed = backend.generate_chat(convs, params.model_copy(update={"seed": 12}))
    assert [g.texts for g in other_seed] != [g.texts for g in first]

    texts = backend.generate_text(["Once upon a time", "The answer is"], params)
    _check_generations(texts, 2, 3, 12)


def test_offline_and_server_sample_the_same_tokens(vllm_backend, server_backend):
    """Same prompt tokens, seed and engine settings: the same samples from both vLLM paths."""
    params = GenerationParams(n=2, temperature=0.8, max_tokens=10, seed=5)
    convs = [[{"role": "user", "content": "Say something kind."}]]
    offline = vllm_backend.generate_chat(convs, params)
    served = server_backend.generate_chat(convs, params)
    assert offline[0].texts == served[0].texts


def test_stop_strings_and_greedy(vllm_backend):
    params = GenerationParams(n=1, temperature=0.0, max_tokens=40)
    full = vllm_backend.generate_text(["The"], params)[0].texts[0]
    assert len(full) > 4
    stop = full[2:4]
    cut = vllm_backend.generate_text(["The"], params.model_copy(update={"stop": (stop,)}))[0]
    assert cut.texts[0] == full[: full.index(stop)]
    assert cut.finish_reasons == ["stop"]


def test_choice_scores_agree_across_backends(vllm_backend, server_backend, transformers_backend):
    results = {
        name: backend.score_choices(REQUESTS)
        for name, backend in [
            ("vllm", vllm_backend),
            ("server", server_backend),
            ("transformers", transformers_backend),
        ]
    }
    for scores in results.values():
        assert len(scores) == len(REQUESTS)
        for request, score in zip(REQUESTS, scores, strict=True):
            assert score.choices == list(request.choices)
            assert all(lp < 0 for lp in score.logprobs)
            assert sum(score.probs) == pytest.approx(1.0, abs=1e-9)
    reference = results["transformers"]
    for name in ("vllm", "server"):
        for ref, got in zip(reference, results[name], strict=True):
            assert got.logprobs == pytest.approx(ref.logprobs, abs=1e-3), name
            assert got.probs == pytest.approx(ref.probs, abs=1e-3), name
    # the prompts differ, so the numbers must differ too (the check above is not vacuous)
    assert reference[0].logprobs != reference[3].logprobs


def test_multi_token_choice_is_a_clear_error(vllm_backend, server_backend, transformers_backend):
    bad = [ChoiceRequest(messages=CONV, choices=("A", "Option B is better"))]
    for backend in (vllm_backend, server_backend, transformers_backend):
        with pytest.raises(ChoiceTokenError, match="exactly one token"):
            backend.score_choices(bad)


def test_context_overflow_is_reported(vllm_backend, server_backend):
    long_text = "word " * 5000
    with pytest.raises(ContextOverflowError) as offline:
        vllm_backend.score_choices([ChoiceRequest(text="ok ("), ChoiceRequest(text=long_text)])
    assert offline.value.indices == [1]
    with pytest.raises(ContextOverflowError):
        server_backend.score_choices([ChoiceRequest(text=long_text)])
    with pytest.raises(ContextOverflowError):
        server_backend.generate_text([long_text], GenerationParams(max_tokens=4))


def test_cache_rerun_makes_no_engine_calls(vllm_backend, tmp_path):
    from cai.backends.cached import CachedBackend
    from cai.cache import CallCache

    params = GenerationParams(n=2, max_tokens=6, seed=3)
    convs = [[{"role": "user", "content": f"Question {i}?"}] for i in range(4)]
    first = CachedBackend(vllm_backend, CallCache(tmp_path / "calls.sqlite"))
    gens = first.generate_chat(convs, params)
    scores = first.score_choices(REQUESTS)
    assert (first.stats.hits, first.stats.misses) == (0, 4 + len(REQUESTS))

    def refuse(*args):
        raise AssertionError("engine called although every item was cached")

    refusing = ScriptedBackend(respond=refuse, score=refuse, model_id=vllm_backend.model_id)
    rerun = CachedBackend(refusing, CallCache(tmp_path / "calls.sqlite"))
    assert rerun.generate_chat(convs, params) == gens
    assert rerun.score_choices(REQUESTS) == scores
    assert (rerun.stats.hits, rerun.stats.misses) == (4 + len(REQUESTS), 0)


def test_make_backend_wraps_in_cache(tiny_model_dir, tmp_path):
    spec = backend_spec(
        kind="transformers", model=str(tiny_model_dir), cache_path=str(tmp_path / "c.sqlite")
    )
    backend = make_backend(spec)
    backend.score_choices(REQUESTS[:1])
    backend.score_choices(REQUESTS[:1])
    assert (backend.stats.hits, backend.stats.misses) == (1, 1)
    assert backend.model_id.startswith("transformers:")


@pytest.mark.parametrize("kind", ["vllm", "transformers"])
def test_bad_model_path_is_a_clear_error(kind, tmp_path):
    with pytest.raises(BackendError, match=r"missing-model.* is not a local directory"):
        make_backend(backend_spec(kind=kind, model=str(tmp_path / "missing-model")))


def test_unreachable_server_is_a_clear_error():
    from cai.serving import free_port

    spec = backend_spec(
        kind="openai", base_urls=[f"http://127.0.0.1:{free_port()}/v1"], max_retries=1
    )
    with pytest.raises(BackendError, match="Is the server running"):
        make_backend(spec)


def test_unknown_served_model_is_a_clear_error(vllm_server):
    spec = backend_spec(kind="openai", base_urls=[vllm_server.base_url], served_model_name="nope")
    with pytest.raises(BackendError, match="does not serve model 'nope'"):
        make_backend(spec)


def test_every_backend_names_the_model_by_its_content(
    tiny_model_dir, vllm_backend, server_backend, transformers_backend
):
    """Same directory, same identity on every engine; no local path in any of them."""
    from cai.model_names import model_identity

    identity = model_identity(str(tiny_model_dir))
    assert identity.startswith(f"{tiny_model_dir.name}#")
    assert vllm_backend.model_id == f"vllm:{identity}:float32"
    assert transformers_backend.model_id == f"transformers:{identity}:float32"
    assert server_backend.model_id == f"openai:tiny:{identity}"
    for backend in (vllm_backend, server_backend, transformers_backend):
        assert str(tiny_model_dir.parent) not in backend.model_id


def test_a_server_url_without_v1_is_completed(vllm_server, caplog):
    from cai.backends.openai_server import OpenAIServerBackend

    bare = vllm_server.base_url.removesuffix("/v1")
    with caplog.at_level("WARNING", logger="cai.backends.http"):
        backend = OpenAIServerBackend([bare], "tiny", show_progress=False)
    try:
        assert backend.pool.base_urls == [vllm_server.base_url]
        assert "add /v1" in caplog.text
        [gen] = backend.generate_text(["The"], GenerationParams(max_tokens=3, seed=1))
        assert len(gen.texts) == 1 and gen.finish_reasons[0] in ("stop", "length")
    finally:
        backend.close()
