"""Prompt token sequences, single-token choices and context checks shared by all backends."""

from __future__ import annotations

import pytest

from cai.backends.base import BackendError, ChoiceRequest, ContextOverflowError
from cai.backends.tokens import (
    ChoiceTokenError,
    chat_prompt_ids,
    check_context,
    choice_token_ids,
    request_prompt_ids,
)


class WordTokenizer:
    """Whitespace-word tokenizer with a ChatML-like template and a BOS token (id 0)."""

    chat_template = "chatml"

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {"<bos>": 0}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]
        return ([0] if add_special_tokens else []) + ids

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False
        text = "<bos> " + " ".join(f"<{m['role']}> {m['content']} <end>" for m in messages)
        return text + (" <assistant>" if add_generation_prompt else "")


def encoder(tok):
    return lambda text, special: tok.encode(text, add_special_tokens=special)


def test_chat_prompt_has_one_bos_and_prefix_after_generation_prompt():
    tok = WordTokenizer()
    ids = chat_prompt_ids(tok, encoder(tok), [{"role": "user", "content": "hi"}], "Answer: (")
    assert ids.count(0) == 1 and ids[0] == 0
    words = {v: k for k, v in tok.vocab.items()}
    assert [words[i] for i in ids] == [
        "<bos>",
        "<user>",
        "hi",
        "<end>",
        "<assistant>",
        "Answer:",
        "(",
    ]


def test_text_request_gets_bos_once_and_prefix_appended():
    tok = WordTokenizer()
    ids = request_prompt_ids(tok, encoder(tok), ChoiceRequest(text="q", assistant_prefix=" ("))
    assert ids[0] == 0 and ids.count(0) == 1 and len(ids) == 3


def test_request_without_prompt_is_rejected():
    tok = WordTokenizer()
    with pytest.raises(BackendError, match="needs `messages` or `text`"):
        request_prompt_ids(tok, encoder(tok), ChoiceRequest())


def test_tokenizer_without_chat_template_is_a_clear_error():
    tok = WordTokenizer()
    tok.chat_template = None
    with pytest.raises(BackendError, match="no chat template"):
        chat_prompt_ids(tok, encoder(tok), [{"role": "user", "content": "hi"}])


def test_choice_ids_single_tokens_only():
    tok = WordTokenizer()
    enc = encoder(tok)
    assert choice_token_ids(enc, ["A", "B"]) == [tok.vocab["A"], tok.vocab["B"]]
    with pytest.raises(ChoiceTokenError, match="'A B' is 2 tokens"):
        choice_token_ids(enc, ["A B", "C"])
    with pytest.raises(ChoiceTokenError, match="distinct"):
        choice_token_ids(enc, ["A", "A"])
    with pytest.raises(ChoiceTokenError, match="at least two"):
        choice_token_ids(enc, ["A"])
    with pytest.raises(ChoiceTokenError, match="same token ids"):
        choice_token_ids(enc, ["A", " A"])


def test_context_check_names_every_offending_prompt():
    check_context([10, 20], 5, None)
    check_context([10, 20], 5, 25)
    with pytest.raises(ContextOverflowError) as err:
        check_context([10, 30, 21, 5], 5, 25)
    assert err.value.indices == [1, 2]
    assert "context window of 25 tokens" in str(err.value)


def test_batched_prompt_ids_equal_one_by_one_on_a_real_bpe_tokenizer(tmp_path):
    """The scoring fast path must score exactly the tokens the per-request path would."""
    from transformers import AutoTokenizer

    from cai.backends.tokens import batch_request_prompt_ids, hf_encoder
    from cai.testing import build_tokenizer

    build_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    chat = [{"role": "user", "content": "Which answer is kinder?"}]
    requests = [
        ChoiceRequest(messages=chat, assistant_prefix="The better response is ("),
        ChoiceRequest(messages=[*chat, {"role": "assistant", "content": "Hi"}]),
        ChoiceRequest(text="Question: safe? Answer: (", assistant_prefix=""),
        ChoiceRequest(messages=chat, assistant_prefix=" Let me think. So ("),
        ChoiceRequest(messages=chat, assistant_prefix="The better response is ("),
    ]
    one_by_one = [request_prompt_ids(tok, hf_encoder(tok), r) for r in requests]
    assert batch_request_prompt_ids(tok, requests) == one_by_one
    with pytest.raises(BackendError, match="needs `messages` or `text`"):
        batch_request_prompt_ids(tok, [ChoiceRequest()])


def test_a_tokenizer_without_added_tokens_is_tokenized_as_it_always_was():
    """Nothing to guard: the rendered prompt goes to `encode` unchanged, in one call."""
    from cai.backends.tokens import control_guard

    tok = WordTokenizer()
    calls = []

    def encode(text, special):
        calls.append(text)
        return tok.encode(text, add_special_tokens=special)

    assert control_guard(tok) is None
    chat_prompt_ids(tok, encode, [{"role": "user", "content": "<|im_end|> hi"}], "(")
    assert calls == ["<bos> <user> <|im_end|> hi <end> <assistant>", "("]
