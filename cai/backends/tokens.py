"""One definition of "the token sequence of a request", shared by every backend.

Scores from different engines only agree when they score the identical token sequence, so
all backends build prompts here:

- chat: the model's chat template rendered as text with the generation prompt added, then
  tokenized without extra special tokens (the template already holds any BOS), followed by
  the `assistant_prefix` tokenized on its own, as the model would have generated it;
- raw text: tokenized with the tokenizer's special tokens (BOS added exactly once).

Message contents and the assistant prefix are text, never control tokens: a response that
says `<|im_end|>` and then `<|im_start|>assistant` must not end its turn and open another.
The chat template's own control tokens are found by rendering it once per sequence of roles
with placeholders for the contents (`ControlTokenGuard`). When the contents hold no control
token string, the rendered prompt is tokenized as one text; when one does, the prompt is cut
at the template's control tokens and the text between them is tokenized with special-token
parsing off (`split_special_tokens=True`; added tokens that even that keeps whole, such as
Qwen's `<think>`, are broken after their first character).

This covers the backends that tokenize here (vLLM offline, transformers). An
OpenAI-compatible server tokenizes chat messages itself (its chat endpoint and its
/tokenize alike), so cai cannot control how: there the text-level defusing of
`cai.templates` (`defuse_control`) is the defence.

A choice such as "A" must be exactly one token; anything else is a clear error, because the
probability of a multi-token answer is not the probability of its first token.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cai.backends.base import BackendError, ChoiceRequest, ContextOverflowError, Message
from cai.backends.chat_render import ChatRenderer, split_on
from cai.backends.prompt_split import PromptSplitter, request_tail

Encode = Callable[[str, bool], list[int]]
"""encode(text, add_special_tokens) -> token ids."""
JOINER = "\u200d"
"""ZERO WIDTH JOINER: inserted after the first character of a control string. It does not
change how the text reads, and a tokenizer does not see the control string in it (here and in
`cai.templates.defuse_control`)."""


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
    """Token ids of a chat prompt; contents and prefix never become control tokens."""
    guard = control_guard(tokenizer)
    text = chat_renderer(tokenizer).render(messages)
    plan = guard.plan(text, messages) if guard is not None else None
    if plan is None:
        ids = encode(text, False)
    else:
        assert guard is not None
        ids = guard.encode_plan(plan)
    if assistant_prefix:
        ids += _plain_text_ids(guard, encode, assistant_prefix)
    return ids


def _plain_text_ids(guard: ControlTokenGuard | None, encode: Encode, text: str) -> list[int]:
    """Ids of text that must stay text: tokenized as it is unless it holds a control token
    string."""
    if guard is not None and guard.touches(text):
        return guard.text_ids(text)
    return encode(text, False)


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
    of text: fast tokenizers encode a batch in parallel, and assistant prefixes repeat.

    A request that says which end of its last message it shares with other requests
    (`TailedChoiceRequest`, as the judge's do) is tokenized in two parts, the text before
    that end once per distinct text and the end once per distinct end, where `PromptSplitter`
    has proved the cut exact."""
    guard = control_guard(tokenizer)
    splitter = prompt_splitter(tokenizer)
    renderer = chat_renderer(tokenizer)
    encoded: list[list[int] | None] = [None] * len(requests)
    bodies: dict[int, tuple[str, bool]] = {}
    halves: dict[int, tuple[str, str]] = {}
    for index, request in enumerate(requests):
        if request.messages is not None:
            text = renderer.render(request.messages)
            plan = guard.plan(text, request.messages) if guard is not None else None
            if plan is not None:
                assert guard is not None
                encoded[index] = guard.encode_plan(plan)
            elif (cut := splitter.cut(text, request_tail(request))) is not None:
                halves[index] = cut
            else:
                bodies[index] = (text, False)
        elif request.text is None:
            raise BackendError("A ChoiceRequest needs `messages` or `text`; both are empty.")
        else:
            bodies[index] = (request.text + request.assistant_prefix, True)
    for special in (False, True):
        picked = [i for i, (_, flag) in bodies.items() if flag is special]
        if picked:
            ids = _encode_many(tokenizer, [bodies[i][0] for i in picked], special)
            for i, row in zip(picked, ids, strict=True):
                encoded[i] = row
    if halves:
        for i, row in zip(halves, splitter.encode(list(halves.values())), strict=True):
            encoded[i] = row
    prefix_ids = _prefix_ids(tokenizer, guard, requests)
    out = []
    for request, row in zip(requests, encoded, strict=True):
        assert row is not None
        if request.messages is not None and request.assistant_prefix:
            row = row + prefix_ids[request.assistant_prefix]
        out.append(row)
    return out


def _prefix_ids(
    tokenizer, guard: ControlTokenGuard | None, requests: Sequence[ChoiceRequest]
) -> dict[str, list[int]]:
    """Ids of each distinct assistant prefix of the chat requests, encoded in one call."""
    prefixes = sorted(
        {r.assistant_prefix for r in requests if r.messages is not None and r.assistant_prefix}
    )
    guarded = {p: guard.text_ids(p) for p in prefixes if guard is not None and guard.touches(p)}
    plain = [p for p in prefixes if p not in guarded]
    return {**dict(zip(plain, _encode_many(tokenizer, plain, False), strict=True)), **guarded}


def _encode_many(tokenizer, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    """Ids of each text, as `tokenizer(texts, add_special_tokens=...)` gives them.

    A Hugging Face fast tokenizer is asked through its Rust tokenizer directly when that
    call is the same one `__call__` makes (no truncation, padding or special-token
    splitting configured): `__call__` then only converts each result into Python lists of
    offsets and masks that nobody reads here, which costs about as much as the encoding."""
    if not texts:
        return []
    rust = getattr(tokenizer, "_tokenizer", None)
    if (
        rust is not None
        and hasattr(rust, "encode_batch_fast")
        and rust.truncation is None
        and rust.padding is None
        and getattr(tokenizer, "split_special_tokens", False) is False
    ):
        if rust.encode_special_tokens:  # left on by a split_special_tokens=True call
            rust.encode_special_tokens = False
        return [e.ids for e in rust.encode_batch_fast(texts, add_special_tokens=add_special_tokens)]
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


# ---- control tokens in message contents ---------------------------------------------------

logger = logging.getLogger(__name__)

_MARKUP_TOKEN = re.compile(r"<[^<>]+>|\[[^\[\]]+\]")
"""Added tokens shaped like markup (`<think>`, `[INST]`) are control tokens even when the
tokenizer does not flag them special; other added tokens (runs of spaces, extra words) are
ordinary pieces of text and are left alone."""
_PLACEHOLDER = "\ue000cai-content-{index}-" + secrets.token_hex(6) + "\ue000"
"""Stands in for a message's content when the chat template is rendered to find its own
control tokens (private-use characters, which no template strips or escapes)."""
_MAX_LAYOUTS = 256

Plan = list[str | int]
"""A prompt cut into text (a str, tokenized with special-token parsing off) and control
tokens of the chat template itself (an int: the token id)."""


@dataclass(frozen=True)
class _Layout:
    """The chat template rendered around placeholder contents: the text between them, and
    the control tokens inside that text as (start, end, id) per piece."""

    pieces: list[str]
    tokens: list[list[tuple[int, int, int]]]


class ControlTokenGuard:
    """Tokenizes chat prompts so that no message content can become a control token."""

    def __init__(self, tokenizer: Any, control: dict[str, int]) -> None:
        self.tokenizer = tokenizer
        self.control = control
        self.control_ids = frozenset(control.values())
        self.pattern = _alternation(control)
        self.splits = _splits_special_tokens(tokenizer)
        kept = _kept_whole(tokenizer, control) if self.splits else list(control)
        self.kept_whole = _alternation(kept) if kept else None
        self._layouts: dict[tuple, _Layout | None] = {}
        self._warned = False

    def touches(self, text: str) -> bool:
        """Whether `text` holds a control token string at all (most text does not)."""
        return self.pattern.search(text) is not None

    def plan(self, text: str, messages: list[Message]) -> Plan | None:
        """None when `text`, the rendered chat, can be tokenized as it is because its only
        control tokens are the template's; otherwise the plan that keeps contents text."""
        layout = self._layout(messages)
        contents = [m["content"] for m in messages]
        written = _align(text, layout.pieces, contents) if layout is not None else None
        if layout is None or written is None:
            return self._unaligned(text, messages)
        if self._only_template_tokens(text, layout, written):
            return None
        return _cut_layout(layout, written)

    def encode_plan(self, plan: Plan) -> list[int]:
        ids: list[int] = []
        for part in plan:
            ids.extend([part] if isinstance(part, int) else self.text_ids(part))
        return ids

    def text_ids(self, text: str) -> list[int]:
        """Ids of `text` with no control token among them, whatever the text says."""
        if not text:
            return []
        parts = _break(text, self.kept_whole) if self.kept_whole is not None else [text]
        ids = [i for part in parts for i in self._encode_text(part)]
        if self.control_ids.isdisjoint(ids):
            return ids
        # A token matched only after normalisation (rare): single characters cannot match.
        return [i for char in text for i in self._encode_text(char)]

    # ---- internals ---------------------------------------------------------------------
    def _encode_text(self, text: str) -> list[int]:
        if not self.splits:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        batch = self.tokenizer(
            text, add_special_tokens=False, split_special_tokens=True, return_attention_mask=False
        )
        return list(batch["input_ids"])

    def _layout(self, messages: list[Message]) -> _Layout | None:
        """The template's layout for this sequence of roles (memoised: judges repeat few)."""
        key = tuple(tuple(sorted((k, v) for k, v in m.items() if k != "content")) for m in messages)
        if key not in self._layouts:
            if len(self._layouts) >= _MAX_LAYOUTS:
                self._layouts.clear()
            self._layouts[key] = self._render_layout(messages)
        return self._layouts[key]

    def _render_layout(self, messages: list[Message]) -> _Layout | None:
        holders = [_PLACEHOLDER.format(index=i) for i in range(len(messages))]
        stand_ins = [{**m, "content": h} for m, h in zip(messages, holders, strict=True)]
        try:
            rendered = render_chat(self.tokenizer, stand_ins)
        except Exception:  # a template that inspects contents: handled as unaligned
            return None
        pieces = split_on(rendered, holders)
        if pieces is None:
            return None
        tokens = [
            [(m.start(), m.end(), self.control[m[0]]) for m in self.pattern.finditer(piece)]
            for piece in pieces
        ]
        return _Layout(pieces, tokens)

    def _only_template_tokens(self, text: str, layout: _Layout, written: list[str]) -> bool:
        """Whether the control tokens the tokenizer would find in `text` are exactly the
        template's, at the template's positions."""
        expected = []
        offset = 0
        for index, piece in enumerate(layout.pieces):
            expected += [(offset + start, offset + end) for start, end, _ in layout.tokens[index]]
            offset += len(piece) + (len(written[index]) if index < len(written) else 0)
        return [m.span() for m in self.pattern.finditer(text)] == expected

    def _unaligned(self, text: str, messages: list[Message]) -> Plan | None:
        """The template rewrites contents in a way that cannot be traced in `text`.

        The chat is rendered again with the control token strings of the contents defused
        (a joiner after their first character), so every control token left is the
        template's. If `text` has the same ones, it is tokenized as it is."""
        if not any(self.touches(m["content"]) for m in messages):
            return None
        defused = [
            {**m, "content": JOINER.join(_break(m["content"], self.pattern))} for m in messages
        ]
        safe = render_chat(self.tokenizer, defused)
        if [m[0] for m in self.pattern.finditer(text)] == [
            m[0] for m in self.pattern.finditer(safe)
        ]:
            return None
        if not self._warned:
            self._warned = True
            logger.warning(
                "this chat template rewrites message contents; control token strings in "
                "contents are defused as text before tokenizing (%s)",
                type(self.tokenizer).__name__,
            )
        return _cut_text(safe, self.pattern, self.control)


def control_guard(tokenizer: Any) -> ControlTokenGuard | None:
    """The guard of a tokenizer (memoised per tokenizer object), or None when the tokenizer
    has no added tokens to guard (or does not say which it has)."""
    found = _GUARDS.get(id(tokenizer))
    if found is not None and found[0] is tokenizer:
        return found[1]
    control = _control_tokens(tokenizer)
    guard = ControlTokenGuard(tokenizer, control) if control else None
    if len(_GUARDS) >= 16:
        _GUARDS.clear()
    _GUARDS[id(tokenizer)] = (tokenizer, guard)  # holding the tokenizer keeps its id unique
    return guard


_GUARDS: dict[int, tuple[Any, ControlTokenGuard | None]] = {}


def prompt_splitter(tokenizer: Any) -> PromptSplitter:
    """The `PromptSplitter` of a tokenizer (memoised per tokenizer object, so that the cuts
    it has verified are trusted across batches)."""
    found = _SPLITTERS.get(id(tokenizer))
    if found is not None and found[0] is tokenizer:
        return found[1]
    splitter = PromptSplitter(lambda texts: _encode_many(tokenizer, texts, False))
    if len(_SPLITTERS) >= 16:
        _SPLITTERS.clear()
    _SPLITTERS[id(tokenizer)] = (tokenizer, splitter)
    return splitter


_SPLITTERS: dict[int, tuple[Any, PromptSplitter]] = {}


def chat_renderer(tokenizer: Any) -> ChatRenderer:
    """The `ChatRenderer` of a tokenizer's current chat template (memoised per tokenizer
    object; a template set on the tokenizer later gets a renderer of its own)."""
    template = getattr(tokenizer, "chat_template", None)
    found = _RENDERERS.get(id(tokenizer))
    if found is not None and found[0] is tokenizer and found[1].template is template:
        return found[1]
    renderer = ChatRenderer(template, lambda messages: render_chat(tokenizer, messages))
    if len(_RENDERERS) >= 16:
        _RENDERERS.clear()
    _RENDERERS[id(tokenizer)] = (tokenizer, renderer)
    return renderer


_RENDERERS: dict[int, tuple[Any, ChatRenderer]] = {}


def _control_tokens(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's control tokens: added tokens flagged special or shaped like markup."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if not isinstance(decoder, dict):
        return {}
    control = {}
    for token_id, token in decoder.items():
        content = str(getattr(token, "content", token))
        if len(content) < 2 or content.isspace():
            continue
        if getattr(token, "special", False) or _MARKUP_TOKEN.fullmatch(content):
            control[content] = int(token_id)
    return control


def _alternation(tokens) -> re.Pattern[str]:
    """A pattern that finds tokens leftmost-longest, as tokenizers split added tokens."""
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def _splits_special_tokens(tokenizer: Any) -> bool:
    """Whether the tokenizer takes `split_special_tokens` (Hugging Face tokenizers do)."""
    try:
        tokenizer("x", add_special_tokens=False, split_special_tokens=True)
    except TypeError:
        return False
    return True


def _kept_whole(tokenizer: Any, control: dict[str, int]) -> list[str]:
    """Control tokens that `split_special_tokens` does not split: added tokens that are not
    flagged special (Qwen's `<think>`, `<tool_call>`), found by encoding each one."""
    tokens = list(control)
    rows = tokenizer(
        tokens, add_special_tokens=False, split_special_tokens=True, return_attention_mask=False
    )["input_ids"]
    ids = set(control.values())
    return [token for token, row in zip(tokens, rows, strict=True) if ids.intersection(row)]


def _break(text: str, pattern: re.Pattern[str]) -> list[str]:
    """`text` cut after the first character of every match, so that no part holds one."""
    parts = []
    while (match := pattern.search(text)) is not None:
        cut = match.start() + 1
        parts.append(text[:cut])
        text = text[cut:]
    parts.append(text)
    return parts


def _align(text: str, pieces: list[str], contents: list[str]) -> list[str] | None:
    """Each content as the template wrote it into `text` (as given, or stripped, as many
    templates do), matched piece by piece from the start; None if `text` differs."""
    if not text.startswith(pieces[0]):
        return None
    at = len(pieces[0])
    written = []
    for content, piece in zip(contents, pieces[1:], strict=True):
        for variant in dict.fromkeys(
            (content, content.strip(), content.lstrip(), content.rstrip())
        ):
            if text.startswith(variant + piece, at):
                break
        else:
            return None
        written.append(variant)
        at += len(variant) + len(piece)
    return written if at == len(text) else None


def _cut_layout(layout: _Layout, written: list[str]) -> Plan:
    """Template pieces cut at their control tokens, contents kept as text in between."""
    plan: Plan = []
    for index, piece in enumerate(layout.pieces):
        at = 0
        for start, end, token_id in layout.tokens[index]:
            _add_text(plan, piece[at:start])
            plan.append(token_id)
            at = end
        _add_text(plan, piece[at:])
        if index < len(written):
            _add_text(plan, written[index])
    return plan


def _cut_text(text: str, pattern: re.Pattern[str], control: dict[str, int]) -> Plan:
    """`text` cut at every control token it holds."""
    plan: Plan = []
    at = 0
    for match in pattern.finditer(text):
        _add_text(plan, text[at : match.start()])
        plan.append(control[match[0]])
        at = match.end()
    _add_text(plan, text[at:])
    return plan


def _add_text(plan: Plan, text: str) -> None:
    """Append text, joined to the text before it: the tokenizer sees one run, as it would."""
    if not text:
        return
    if plan and isinstance(plan[-1], str):
        plan[-1] += text
    else:
        plan.append(text)
