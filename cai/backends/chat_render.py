"""Chat prompts rendered without running the chat template for every prompt.

Rendering a model's Jinja chat template costs more than tokenizing its output, and a judge
renders thousands of prompts that share one shape (a system message, then a user message).
When the template writes each message's content verbatim and decides nothing on it, the
rendered text is the template rendered once around stand-ins for the contents, with each
content put in its stand-in's place. `ChatRenderer` does that where it can prove it:

1. statically, from the template's syntax tree (`writes_contents_verbatim`): every access
   to a message's `content` is a plain `{{ ... }}` output, possibly concatenated with other
   strings (`+`, `~`), never inside a condition, a filter, a call, a macro or `{% set %}`;
   messages themselves are only looped over, indexed, counted or read by constant keys; and
   nothing impure (`strftime_now`) is called;
2. then on the first renders of each message shape (roles and other keys), compared with
   the full render: a difference turns the shortcut off for that shape for good.

Anything else (a template that trims, splits or tests contents, a parse error, a non-string
field) is rendered in full. The result is the same text either way.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

from cai.backends.base import Message

CHECKS = 2
"""Full renders each message shape is compared against before its shortcut is trusted."""
_MAX_SHAPES = 256
_STAND_IN = "\ue000cai-chat-{index}-" + secrets.token_hex(6) + "\ue000"

Render = Callable[[list[Message]], str]


class ChatRenderer:
    """`render(messages)` equal to `full_render(messages)`, faster where proved."""

    def __init__(self, template: Any, full_render: Render) -> None:
        self.template = template
        self.full_render = full_render
        self.verbatim = isinstance(template, str) and writes_contents_verbatim(template)
        self._shapes: dict[tuple, tuple[list[str], int] | None] = {}
        """shape -> (text around the stand-ins, full renders agreeing so far), or None."""

    def render(self, messages: list[Message]) -> str:
        shape = _shape(messages) if self.verbatim else None
        if shape is None:
            return self.full_render(messages)
        if shape not in self._shapes:
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            self._shapes[shape] = self._layout(messages)
        found = self._shapes[shape]
        if found is None:
            return self.full_render(messages)
        pieces, agreed = found
        text = _join(pieces, [m["content"] for m in messages])
        if agreed < CHECKS:
            full = self.full_render(messages)
            self._shapes[shape] = (pieces, agreed + 1) if full == text else None
            return full
        return text

    def _layout(self, messages: list[Message]) -> tuple[list[str], int] | None:
        holders = [_STAND_IN.format(index=i) for i in range(len(messages))]
        try:
            rendered = self.full_render(
                [{**m, "content": h} for m, h in zip(messages, holders, strict=True)]
            )
        except Exception:  # the template refuses stand-ins: render each prompt in full
            return None
        pieces = split_on(rendered, holders)
        return None if pieces is None else (pieces, 0)


def _shape(messages: list[Message]) -> tuple | None:
    """What besides the contents the template may read, or None if it is not plain text."""
    shape = []
    for message in messages:
        fields = tuple(sorted((k, v) for k, v in message.items() if k != "content"))
        if not isinstance(message.get("content"), str) or not all(
            isinstance(v, str) for _, v in fields
        ):
            return None
        shape.append(fields)
    return tuple(shape)


def split_on(rendered: str, holders: list[str]) -> list[str] | None:
    """The text around each stand-in, when each occurs exactly once and in order."""
    pieces = []
    start = 0
    for holder in holders:
        at = rendered.find(holder, start)
        if at < 0 or rendered.count(holder) != 1:
            return None
        pieces.append(rendered[start:at])
        start = at + len(holder)
    pieces.append(rendered[start:])
    return pieces


def _join(pieces: list[str], contents: list[str]) -> str:
    parts = [pieces[0]]
    for content, piece in zip(contents, pieces[1:], strict=True):
        parts += [content, piece]
    return "".join(parts)


# ---- the static check -----------------------------------------------------------------------
_LIST_FILTERS = {"length", "count"}
_PICK_FILTERS = {"first", "last"}
_IMPURE_CALLS = {"strftime_now"}
_CAPTURING = ("AssignBlock", "FilterBlock", "Macro", "CallBlock", "Call", "Filter", "Test")


def writes_contents_verbatim(source: str) -> bool:
    """Whether the chat template in `source` writes message contents as they are and never
    looks at them (see the module docstring); False whenever unsure."""
    from jinja2 import Environment, nodes

    try:
        tree = Environment(extensions=["jinja2.ext.loopcontrols"]).parse(source)
    except Exception:
        return False
    lists, items = {"messages"}, set()
    for _ in range(4):  # names bound to messages, through loops and {% set %}, to a fixpoint
        for node in tree.find_all((nodes.For, nodes.Assign)):
            value = node.iter if isinstance(node, nodes.For) else node.node
            kind = _kind(value, lists, items)
            if kind is None:
                continue
            target = node.target
            names = {target.name} if isinstance(target, nodes.Name) else set()
            names |= {n.name for n in target.find_all(nodes.Name)}
            if isinstance(node, nodes.For):
                items |= names if kind == "list" else set()
            elif kind == "list":
                lists |= names
            else:
                items |= names
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name in _IMPURE_CALLS:
            return False
    return all(_use_is_safe(path, lists, items) for path in _paths(tree))


def _kind(node: Any, lists: set[str], items: set[str]) -> str | None:
    """'list' for an expression that is messages (or a slice), 'item' for one message."""
    from jinja2 import nodes

    if isinstance(node, nodes.Name):
        return "list" if node.name in lists else "item" if node.name in items else None
    if isinstance(node, nodes.Getitem) and _kind(node.node, lists, items) == "list":
        return "list" if isinstance(node.arg, nodes.Slice) else "item"
    if isinstance(node, nodes.Filter) and node.name in _PICK_FILTERS:
        return "item" if _kind(node.node, lists, items) == "list" else None
    return None


def _paths(node: Any, above: tuple = ()) -> Iterator[tuple]:
    """Every node with the chain of its ancestors, innermost last."""
    path = (*above, node)
    yield path
    for child in node.iter_child_nodes():
        yield from _paths(child, path)


def _use_is_safe(path: tuple, lists: set[str], items: set[str]) -> bool:
    """Whether the node at the end of `path` uses messages only in allowed ways."""
    from jinja2 import nodes

    node = path[-1]
    key = _constant_key(node)
    if key == "content":
        return _kind(node.node, lists, items) == "item" and _written_out(path)
    if not isinstance(node, nodes.Name) or (node.name not in lists and node.name not in items):
        return True
    # climb through the expressions that still denote messages (an index, a slice, `first`),
    # then judge what the outermost one is used for
    at = len(path) - 1
    while (
        at > 0
        and getattr(path[at - 1], "node", None) is path[at]
        and _kind(path[at - 1], lists, items) is not None
    ):
        at -= 1
    expression, parent = path[at], path[at - 1] if at > 0 else None
    kind = _kind(expression, lists, items)
    if isinstance(parent, nodes.For):
        return parent.target is expression or (parent.iter is expression and kind == "list")
    if isinstance(parent, nodes.Assign):
        return True  # the name it binds is followed like messages themselves
    if isinstance(parent, nodes.Filter) and parent.node is expression:
        return kind == "list" and parent.name in _LIST_FILTERS
    if isinstance(parent, nodes.Getitem | nodes.Getattr) and parent.node is expression:
        called = at > 1 and isinstance(path[at - 2], nodes.Call) and path[at - 2].node is parent
        return kind == "item" and _constant_key(parent) is not None and not called
    return False


def _constant_key(node: Any) -> str | None:
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return node.arg.value if isinstance(node.arg.value, str) else None
    return None


def _written_out(path: tuple) -> bool:
    """Whether the content read at the end of `path` goes straight into the output, joined
    only to other strings, outside anything that captures or transforms output."""
    from jinja2 import nodes

    at = len(path) - 2
    while at >= 0 and isinstance(path[at], nodes.Add | nodes.Concat):
        at -= 1
    if at < 0 or not isinstance(path[at], nodes.Output):
        return False
    return not any(type(n).__name__ in _CAPTURING for n in path[:at])
