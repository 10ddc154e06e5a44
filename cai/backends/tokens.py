"""One definition of "the token sequence of a request", shared by every backend.

Scores from different engines only agree when they score the identical token sequence, so
all backends build prompts here:

- chat: the model's chat template rendered as text with the generation prompt added, then
  tokenized without extra special tokens (the template already holds any BOS), followed by
  the `assistant_prefix` tokenized on its own, as the model would have generated it;
- raw text: tokenized with the tokenizer's special tokens (BOS added exactly once).

A choice such as "A" must be exactly one token; anything else is a clear error, because the
probability of a multi-token answer is not the probability of its first token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cai.backends.base import BackendError, ChoiceRequest, ContextOverflowError, Message

Encode = Callable[[str, bool], list[int]]
"""encode(text, add_special_tokens) -> token ids."""


class ChoiceTokenError(BackendError):
    """A candidate answer is not exactly one token of the model's vocabulary."""


def render_chat(tokenizer, messages: list[Message]) -> str:
    """The chat template as text, generation prompt added."""
    if not getattr(tokenizer, "chat_template", None):
        raise BackendError(
            "The model's tokenizer has no chat template, so chat messages cannot be rendered. "
            "Use a chat/instruct model, or send raw text (ChoiceRequest.text / generate_text)."
        )
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
    )


def hf_encoder(tokenizer) -> Encode:
    """An Encode function over a Hugging Face tokenizer."""

    def encode(text: str, add_special_tokens: bool) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))

    return encode


def chat_prompt_ids(
    tokenizer, encode: Encode, messages: list[Message], assistant_prefix: str = ""
) -> list[int]:
    ids = encode(render_chat(tokenizer, messages), False)
    if assistant_prefix:
        ids += encode(assistant_prefix, False)
    return ids


def text_prompt_ids(encode: Encode, text: str) -> list[int]:
    return encode(text, True)


def request_prompt_ids(tokenizer, encode: Encode, request: ChoiceRequest) -> list[int]:
    """Token ids of a ChoiceRequest's prompt (chat or raw text)."""
    if request.messages is not None:
        return chat_prompt_ids(tokenizer, encode, request.messages, request.assistant_prefix)
    if request.text is None:
        raise BackendError("A ChoiceRequest needs `messages` or `text`; both are empty.")
    return text_prompt_ids(encode, request.text + request.assistant_prefix)


def batch_request_prompt_ids(tokenizer, requests: Sequence[ChoiceRequest]) -> list[list[int]]:
    """`request_prompt_ids` for a whole batch, identical ids, with one tokenizer call per kind
    of text: fast tokenizers encode a batch in parallel, and assistant prefixes repeat."""
    bodies: list[tuple[str, bool]] = []
    for request in requests:
        if request.messages is not None:
            bodies.append((render_chat(tokenizer, request.messages), False))
        elif request.text is None:
            raise BackendError("A ChoiceRequest needs `messages` or `text`; both are empty.")
        else:
            bodies.append((request.text + request.assistant_prefix, True))
    encoded: list[list[int] | None] = [None] * len(bodies)
    for special in (False, True):
        picked = [i for i, (_, flag) in enumerate(bodies) if flag is special]
        if picked:
            ids = _encode_many(tokenizer, [bodies[i][0] for i in picked], special)
            for i, row in zip(picked, ids, strict=True):
                encoded[i] = row
    prefixes = sorted(
        {r.assistant_prefix for r in requests if r.messages is not None and r.assistant_prefix}
    )
    prefix_ids = dict(zip(prefixes, _encode_many(tokenizer, prefixes, False), strict=True))
    out = []
    for request, row in zip(requests, encoded, strict=True):
        assert row is not None
        if request.messages is not None and request.assistant_prefix:
            row = row + prefix_ids[request.assistant_prefix]
        out.append(row)
    return out


def _encode_many(tokenizer, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    if not texts:
        return []
    batch = tokenizer(texts, add_special_tokens=add_special_tokens, return_attention_mask=False)
    return [list(ids) for ids in batch["input_ids"]]


def choice_token_ids(encode: Encode, choices: Sequence[str]) -> list[int]:
    """The single token id of each choice, or ChoiceTokenError naming the culprit."""
    if len(choices) < 2:
        raise ChoiceTokenError(f"Need at least two choices to score, got {list(choices)!r}.")
    if len(set(choices)) != len(choices):
        raise ChoiceTokenError(f"Choices must be distinct, got {list(choices)!r}.")
    ids = []
    for choice in choices:
        tokens = encode(choice, False)
        if len(tokens) != 1:
            raise ChoiceTokenError(
                f"Choice {choice!r} is {len(tokens)} tokens ({tokens}) for this tokenizer; "
                "each choice must be exactly one token. Use short labels such as 'A'/'B' "
                "and put any leading space or bracket in the assistant_prefix instead."
            )
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise ChoiceTokenError(f"Choices {list(choices)!r} map to the same token ids {ids}.")
    return ids


def check_context(prompt_lengths: list[int], extra_tokens: int, max_model_len: int | None) -> None:
    """Raise ContextOverflowError listing every prompt that cannot fit."""
    if not max_model_len:
        return
    over = [i for i, n in enumerate(prompt_lengths) if n + extra_tokens > max_model_len]
    if over:
        err = ContextOverflowError(
            f"{len(over)} prompt(s) do not fit the context window of {max_model_len} tokens "
            f"(prompt + {extra_tokens} new tokens); indices {over[:20]}"
            f"{' ...' if len(over) > 20 else ''}, longest "
            f"{max(prompt_lengths[i] for i in over)} tokens. Shorten the inputs or raise "
            "max_model_len."
        )
        err.indices = over  # type: ignore[attr-defined]
        raise err
