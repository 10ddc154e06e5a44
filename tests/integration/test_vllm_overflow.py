"""A prompt past the context is refused by index before the engine sees any of the batch."""

from __future__ import annotations

import pytest

from cai.backends.base import ChoiceRequest, ContextOverflowError

pytestmark = pytest.mark.vllm


def _requests(n: int) -> list[ChoiceRequest]:
    return [
        ChoiceRequest(
            messages=[{"role": "user", "content": f"Question {i}: is {i} even? " * (1 + i % 5)}],
            choices=("A", "B") if i % 3 else ("B", "A"),
            assistant_prefix="Answer: " if i % 2 else "",
        )
        for i in range(n)
    ]


def test_an_overflow_names_its_index_and_leaves_nothing_queued(vllm_engine, tiny_model_dir):
    from cai.backends.vllm_offline import VLLMOfflineBackend

    backend = VLLMOfflineBackend(
        str(tiny_model_dir), engine=vllm_engine, show_progress=False
    )
    requests = _requests(10)
    long = "word " * 3000  # past the 2048-token context of the session engine
    requests[6] = ChoiceRequest(messages=[{"role": "user", "content": long}], choices=("A", "B"))
    with pytest.raises(ContextOverflowError) as caught:
        backend.score_choices(requests)
    assert caught.value.indices == [6]  # type: ignore[attr-defined]
    assert vllm_engine.llm_engine.get_num_unfinished_requests() == 0
    assert len(backend.score_choices(requests[:6])) == 6  # the engine is clean for the next call
