"""One mapping from another tool's names to cai's pair: prompt, response a, response b and
the answer (a, b, tie or both_bad).

cai's own Argilla datasets and Label Studio tasks use cai's names (`CAI_NAMES`). A project
someone set up in the tool itself names things its own way: Label Studio's Pairwise template
shows `data.text1` / `data.text2`, an Argilla dataset may ask `best` over `instruction`,
`answer_1`, `answer_2`. Where the file says which is which (Label Studio's `pairwise` result
and its `left` / `right`), the readers find it; where it cannot be known, `--fields` and
`--question` name it (`PairNames.parse`). Every name read as one of cai's is reported, so a
guess is never silent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from cai.errors import InputError
from cai.human.imports import A_LABELS, B_LABELS, TIE_LABELS
from cai.human.pairs import PairDataError, pair_key, prompt_messages
from cai.label.items import Item

PROMPT_NAMES = ("prompt", "instruction", "question", "query", "input", "context")
"""Data keys read as the prompt, in this order, when no flag names it."""
META_KEYS = ("item_id", "prompt_messages", "principle", "id")
"""Keys cai writes beside the texts; never one of the two responses."""
ROLES = ("prompt", "a", "b")
FIELDS_FLAG = "--fields prompt=NAME,a=NAME,b=NAME"


class ForeignNamesError(InputError):
    """A `--fields` value cannot be read."""


class Skip(InputError):
    """A row that holds no usable label: `kind` and `detail` say why. Kind `unnamed` means
    the row's names are not cai's and no flag named them. The import reports it by row."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail

    def __reduce__(self):
        return (type(self), (self.kind, self.detail))


@dataclass(frozen=True)
class PairNames:
    """Where a labels file keeps the pair and the answer. None means "find it": cai's own
    name first, then what the format says (see the readers)."""

    prompt: str | None = None
    a: str | None = None
    b: str | None = None
    question: str | None = None

    @classmethod
    def parse(cls, fields: str | None = None, question: str | None = None) -> PairNames:
        """From `--fields prompt=instruction,a=answer_1,b=answer_2` and `--question best`."""
        names: dict[str, str] = {}
        for part in (fields or "").split(","):
            if not part.strip():
                continue
            role, sep, name = (s.strip() for s in part.partition("="))
            if not sep or role not in ROLES or not name:
                raise ForeignNamesError(
                    f"cannot read {part.strip()!r} in --fields",
                    key="--fields",
                    fix=f"Write {FIELDS_FLAG} (any of the three, comma-separated).",
                )
            names[role] = name
        return replace(cls(), **names, question=(question or "").strip() or None)

    @property
    def given(self) -> bool:
        return any((self.prompt, self.a, self.b, self.question))


def _text_keys(data: dict[str, Any], skip: set[str]) -> list[str]:
    return [
        key
        for key, value in data.items()
        if key not in skip and key not in META_KEYS and isinstance(value, str) and value.strip()
    ]


def find_prompt(data: dict[str, Any], names: PairNames) -> str | None:
    """The key holding the prompt: the named one, else the first of `PROMPT_NAMES`."""
    if names.prompt:
        return names.prompt
    return next((key for key in PROMPT_NAMES if key in data), None)


def find_sides(
    data: dict[str, Any], names: PairNames, objects: list[str] | None = None
) -> tuple[str, str]:
    """The keys of response a and response b in `data`: the named ones; cai's own; the two
    `objects` a Pairwise result names (left first) when they are keys of `data`; else the
    only two texts that are not the prompt, in the order the data lists them."""
    if names.a or names.b:
        missing = [n for n in (names.a, names.b) if n and n not in data]
        if missing or not (names.a and names.b):
            raise Skip("unnamed", _unnamed("named " + ", ".join(missing or ["one side"]), data))
        return names.a, names.b
    if "response_a" in data and "response_b" in data:
        return "response_a", "response_b"
    if objects and len(objects) == 2 and all(o in data for o in objects):
        return objects[0], objects[1]
    texts = _text_keys(data, {find_prompt(data, names) or ""})
    if len(texts) == 2:
        return texts[0], texts[1]
    raise Skip("unnamed", _unnamed(f"{len(texts)} candidate response texts", data))


def _unnamed(what: str, data: dict[str, Any]) -> str:
    keys = ", ".join(map(str, data)) or "none"
    return f"cannot tell which texts are response a and b ({what}; the record has: {keys})"


def build_item(
    item_id: Any, prompt: Any, messages_json: Any, a: Any, b: Any, principle: Any
) -> Item:
    """The pair, checked against its `item_id` when the file carries one (an edited text is
    an error; line breaks saved as CRLF are not)."""
    if a is None or b is None:
        raise Skip("malformed", "response_a or response_b is missing")
    try:
        if isinstance(messages_json, str) and messages_json.strip():
            messages = prompt_messages(json.loads(messages_json))
        else:
            messages = prompt_messages(prompt)
    except (PairDataError, ValueError) as err:
        raise Skip("malformed", f"cannot read the prompt ({err})") from None
    a, b = str(a), str(b)
    if item_id and str(item_id) != pair_key(messages, a, b):
        lf = [{**m, "content": _lf(m["content"])} for m in messages]
        if str(item_id) != pair_key(lf, _lf(a), _lf(b)):
            raise Skip(
                "malformed",
                f"item_id {item_id} does not match its prompt and responses (were they edited?)",
            )
        messages, a, b = lf, _lf(a), _lf(b)
    return Item(
        item_id=pair_key(messages, a, b),
        prompt=messages,
        response_a=a,
        response_b=b,
        principle=str(principle) if principle else None,
    )


def pair_item(
    data: dict[str, Any], names: PairNames, objects: list[str] | None = None
) -> tuple[Item, dict[str, str]]:
    """The pair of one record's texts, and which of its keys were read as which of cai's
    (only the keys that are not cai's names)."""
    prompt_key = find_prompt(data, names)
    no_prompt = prompt_key is None or data.get(prompt_key) in (None, "")
    if no_prompt and not data.get("prompt_messages"):
        where = (
            f"no field `{prompt_key}`"
            if names.prompt
            else "no prompt text (a preference pair needs the prompt both texts answer)"
        )
        raise Skip("unnamed", f"{where} (the record has: {', '.join(map(str, data))})")
    a_key, b_key = find_sides(data, names, objects)
    item = build_item(
        data.get("item_id"),
        data.get(prompt_key) if prompt_key else None,
        data.get("prompt_messages"),
        data.get(a_key),
        data.get(b_key),
        data.get("principle"),
    )
    read_as = {prompt_key: "prompt", a_key: "response_a", b_key: "response_b"}
    return item, {k: v for k, v in read_as.items() if k and k != v}


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _normal(value: Any) -> str:
    return str(value).strip().lower().replace(" ", "_").replace("-", "_")


_A = {*A_LABELS, "left", "1", "response_1", "answer_1", "first", "a_is_better"}
_B = {*B_LABELS, "right", "2", "response_2", "answer_2", "second", "b_is_better"}
_BOTH_BAD = {"both_bad", "bothbad", "neither_is_good", "both_are_bad"}
ANSWERS = "a / b (or left / right, the response's field name), tie, both_bad"


def answer_choice(value: Any, a_key: str | None = None, b_key: str | None = None) -> str | None:
    """a, b, tie or both_bad for one answer: a label (`a`, `B is better`, `Tie`, `left`,
    the winning field's name) or a ranking (the response ranked first, as `[{"value",
    "rank"}]` or the two names best first; equal ranks tie).
    None when the value is none of these."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return _ranking_choice(value, a_key, b_key)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return answer_choice(value[0], a_key, b_key)  # a ranking, best first
    if value is None or isinstance(value, dict | list):
        return None
    text = _normal(value)
    if text in ("a", "b", "tie", "both_bad"):
        return text
    if a_key and text == _normal(a_key):
        return "a"
    if b_key and text == _normal(b_key):
        return "b"
    if text in _BOTH_BAD:
        return "both_bad"
    if text in _A:
        return "a"
    if text in _B:
        return "b"
    return "tie" if text in TIE_LABELS or text.replace("_", " ") in TIE_LABELS else None


def _ranking_choice(
    ranks: list[dict[str, Any]], a_key: str | None, b_key: str | None
) -> str | None:
    """Argilla's ranking answer: [{"value": name, "rank": n}, ...]."""
    by_side: dict[str, Any] = {}
    for entry in ranks:
        side = answer_choice(entry.get("value"), a_key, b_key)
        if side in ("a", "b"):
            by_side[side] = entry.get("rank")
    if set(by_side) != {"a", "b"} or None in by_side.values():
        return None
    if by_side["a"] == by_side["b"]:
        return "tie"
    return "a" if by_side["a"] < by_side["b"] else "b"
