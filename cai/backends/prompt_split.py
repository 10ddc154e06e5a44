"""Tokenizing prompts that share a long beginning: each beginning once, each end once.

A judge scores every pair under several principles, and its template puts the principle's
question last, so the prompts of one pair and answer order differ only in their end. When a
request says which end of its last message varies (`TailedChoiceRequest`, see
`cai.templates.RenderedPrompt.choice_request`), the rendered chat is cut where that end
begins: the text before the cut (`left`) is tokenized once per distinct text, the text from
the cut on (`right`: the end plus the chat template's closing) once per distinct end, and
the ids are concatenated.

Why this can be exact, and how it is made sure: a BPE tokenizer pre-tokenizes first (splits
the text into words, spaces, punctuation) and never merges across those splits, so
ids(left + right) == ids(left) + ids(right) whenever the cut is one of the pre-tokenizer's
split points and nothing else (a normalizer, an added space at the start) reacts to the cut.
Whether it is depends on the text near the cut: on the left, the template's text in front
of the end (the key holds the left's last line, from the line break before its last
non-blank line: the pre-tokenizers in use split at or right after a line break, so text
before it cannot change the split at the cut), and the whole right part. For a judge that
key is fixed per template and principle, so one check covers every pair; each key is still
checked against the full tokenization on two different prompts before it is trusted, to
catch a tokenizer whose splits are less local, and a mismatch refuses the key for good:
those prompts are tokenized whole. Two cuts are tried: where the end begins, and
before the whitespace in front of it (GPT-2 style pre-tokenizers split there, Llama 3 style
ones after the newlines).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import PrivateAttr

from cai.backends.base import ChoiceRequest

SHARE_PREFIXES = True
"""Render and tokenize the shared start of judge prompts once (`TemplateSet.render_each`,
`PromptSplitter`). Benchmarks turn it off to measure what it buys; results are identical."""
MAX_WINDOW = 256
"""At most this many characters before the cut are part of a cut's key."""
CHECKS = 2
"""Different prompts a key is verified on before it is trusted."""
MAX_CHECKS_PER_END = 8
"""Verifications one end may cost (text just before the cut that keeps changing means the
cut is not next to fixed template text: those prompts are then tokenized whole)."""
_MAX_KEYS = 4096

EncodeMany = Callable[[list[str]], list[list[int]]]


class TailedChoiceRequest(ChoiceRequest):
    """A ChoiceRequest that also says which end of its last message varies between requests
    that otherwise share their text. A tokenizing hint, not content: its dump (hence its
    call-cache key) and its equality are those of the plain request."""

    _tail: str = PrivateAttr("")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChoiceRequest):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]


def with_tail(request: ChoiceRequest, tail: str) -> ChoiceRequest:
    """`request` carrying the hint that its last message ends with `tail` (unchecked here:
    a wrong hint only costs the verification, never a wrong id)."""
    if not tail or request.messages is None:
        return request
    tailed = TailedChoiceRequest.model_construct(
        request.model_fields_set, **{k: getattr(request, k) for k in type(request).model_fields}
    )
    tailed._tail = tail
    return tailed


def request_tail(request: ChoiceRequest) -> str:
    return request._tail if isinstance(request, TailedChoiceRequest) else ""


class PromptSplitter:
    """Cuts rendered prompts before their varying end, where the cut is proved exact."""

    def __init__(self, encode_many: EncodeMany) -> None:
        self._encode_many = encode_many
        self._keys: dict[tuple[str, str], tuple[int, str]] = {}
        """(left window, right) -> (prompts verified, -1 if refused; the last left verified)."""
        self._checks: dict[str, int] = {}
        self._right_ids: dict[str, list[int]] = {}

    def cut(self, text: str, tail: str) -> tuple[str, str] | None:
        """(left, right) with left + right == text, or None: tokenize `text` whole."""
        if not tail or not SHARE_PREFIXES:
            return None
        at = text.rfind(tail)
        if at <= 0:
            return None
        for boundary in _boundaries(text, at):
            left, right = text[:boundary], text[boundary:]
            key = (_window(left), right)
            verified, last = self._keys.get(key, (0, ""))
            if verified >= CHECKS or (verified > 0 and left == last):
                return left, right  # trusted, or verified on this very text
            if verified < 0:
                continue
            if self._verify(key, text, left, right, verified):
                return left, right
        return None

    def _verify(self, key: tuple[str, str], text: str, left: str, right: str, done: int) -> bool:
        """Compare the cut's ids with the whole text's; record the verdict for the key."""
        spent = self._checks.get(right, 0)
        if spent >= MAX_CHECKS_PER_END:
            return False
        if len(self._keys) >= _MAX_KEYS:
            self._keys.clear()
            self._checks.clear()
        self._checks[right] = spent + 1
        whole, left_ids, right_ids = self._encode_many([text, left, right])
        exact = whole == left_ids + right_ids
        self._keys[key] = (done + 1, left) if exact else (-1, left)
        return exact

    def encode(self, halves: Sequence[tuple[str, str]]) -> list[list[int]]:
        """Ids of each left + right, tokenizing each distinct left and right once."""
        lefts = list(dict.fromkeys(left for left, _ in halves))
        left_ids = dict(zip(lefts, self._encode_many(lefts), strict=True))
        new = list(dict.fromkeys(r for _, r in halves if r not in self._right_ids))
        if len(self._right_ids) + len(new) > _MAX_KEYS:
            self._right_ids.clear()
            new = list(dict.fromkeys(right for _, right in halves))
        self._right_ids.update(zip(new, self._encode_many(new), strict=True))
        return [left_ids[left] + self._right_ids[right] for left, right in halves]


def _window(left: str) -> str:
    """The left's last line with what follows it (blank lines), at most MAX_WINDOW chars."""
    start = max(left.rfind("\n", 0, len(left.rstrip())), 0)
    return left[max(start, len(left) - MAX_WINDOW) :]


def _boundaries(text: str, at: int) -> list[int]:
    """Where the end begins, and before the whitespace in front of it (if any)."""
    start = at
    while start > 0 and text[start - 1].isspace():
        start -= 1
    return [at] if start in (at, 0) else [at, start]
