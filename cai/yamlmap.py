"""Safe YAML parsing that remembers where every field was written.

We compose the node tree with `yaml.SafeLoader` (no object construction) and record the
line of every mapping key and sequence item, so validation errors can point at the exact
line. A mapping key written twice, which YAML would silently collapse into the last one
(a file that means two things), is refused with both lines; the one caller that lists every
problem of a file at once (the constitution loader) asks for them instead.

A constitution or a settings file is a few levels deep and a few thousand values big, so
anything far beyond that is refused before it is built: nesting deeper than `MAX_DEPTH`
(PyYAML composes recursively and would hit Python's recursion limit), aliases that expand
to more than `MAX_VALUES` values (a "billion laughs" file, which would exhaust memory or
time in every later step that walks the data) and aliases that contain themselves.
"""

from __future__ import annotations

from typing import Any

import yaml

from cai.errors import CaiError

Loc = tuple[str | int, ...]

MAX_DEPTH = 64
"""Deepest nesting of lists and mappings accepted (a constitution needs about 6)."""
MAX_VALUES = 100_000
"""Most values a document may expand to once every alias is counted at each use."""
SYNTAX_HINT = "check indentation, quotes and colons around this line"
_SIZE_HINT = (
    "a constitution is a mapping of a few levels; write the lists out instead of nesting "
    "them or building them from aliases"
)
_CHARACTER_HINT = "delete it, or write it as an escape such as \\t inside double quotes"


class ParsedYaml:
    """The plain data of a YAML document plus a field-path -> (line, column) map (1-based)."""

    def __init__(self, data: Any, marks: dict[Loc, tuple[int, int]], duplicates: list[Loc]):
        self.data = data
        self.marks = marks
        self.duplicates = duplicates

    def duplicate_keys(self) -> list[DuplicateKeyError]:
        """Every key written twice in one mapping, as the error that refuses it, in file order."""
        found = []
        for loc in dict.fromkeys(self.duplicates):
            line, column = self.marks[(*loc, "__duplicate__")]
            found.append(DuplicateKeyError(loc, line, column, first_line=self.marks[loc][0]))
        return sorted(found, key=lambda err: (err.line, err.column))

    def position(self, loc: Loc) -> tuple[int | None, int | None]:
        """The line/column of `loc`, or of its closest written ancestor."""
        loc = tuple(loc)
        while True:
            if loc in self.marks:
                return self.marks[loc]
            if not loc:
                return None, None
            loc = loc[:-1]


class YamlSyntaxError(CaiError, ValueError):
    """The text is not YAML that cai can read (a constitution, a settings file); `line`/`column`
    say where."""

    def __init__(self, message: str, line: int | None, column: int | None, hint: str = SYNTAX_HINT):
        super().__init__(message, line=line, fix=hint)
        self.column = column
        self.hint = hint


class YamlLimitError(YamlSyntaxError):
    """The document nests too deeply or its aliases expand too far (see the limits above)."""


class DuplicateKeyError(YamlSyntaxError):
    """A mapping gives the same key twice: `line` is the second, `first_line` the first."""

    def __init__(self, loc: Loc, line: int, column: int, first_line: int) -> None:
        key = ".".join(str(part) for part in loc)
        lines = f"lines {first_line} and {line}" if first_line != line else f"both on line {line}"
        super().__init__(
            f"key `{loc[-1]}` is given twice in the same mapping ({lines}); YAML would "
            "silently keep only the last",
            line,
            column,
            "keep one of them and merge the other's settings into it",
        )
        self.loc = loc
        self.key = key
        self.first_line = first_line


class _Refused(yaml.MarkedYAMLError):
    """A document beyond the limits above; reported with its line, like a syntax error."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH while it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    problem=f"the data nests deeper than {MAX_DEPTH} levels",
                    problem_mark=self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_yaml(text: str, *, keep_duplicates: bool = False) -> ParsedYaml:
    """Parse one YAML document safely; raise YamlSyntaxError with a position on bad syntax,
    and DuplicateKeyError for a key written twice unless `keep_duplicates` (then they are in
    `duplicate_keys()`, for a caller that reports every problem of a file together)."""
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as err:  # the reader checks every character up front
        raise _reader_error(err, text) from None
    marks: dict[Loc, tuple[int, int]] = {}
    duplicates: list[Loc] = []
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
            # before construction, which folds merge keys (`<<: *base`) into the mapping: a key
            # written beside a merge overrides the merged one, it is not written twice
            _walk(node, marks, duplicates)
        data = loader.construct_document(node) if node is not None else None
    except _Refused as err:
        raise _marked_error(err, _SIZE_HINT, YamlLimitError) from None
    except yaml.MarkedYAMLError as err:
        raise _marked_error(err) from None
    except yaml.reader.ReaderError as err:
        raise _reader_error(err, text) from None
    except yaml.YAMLError as err:
        raise YamlSyntaxError(f"invalid YAML: {err}", None, None) from None
    finally:
        loader.dispose()
    if node is not None:
        marks[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
        merged: dict[Loc, tuple[int, int]] = {}
        _walk(node, merged, [])  # where the keys merge keys brought in were written
        for loc, position in merged.items():
            if loc[-1:] != ("__duplicate__",):
                marks.setdefault(loc, position)
    parsed = ParsedYaml(data, marks, duplicates)
    if duplicates and not keep_duplicates:
        raise parsed.duplicate_keys()[0]
    return parsed


def _marked_error(
    err: yaml.MarkedYAMLError,
    hint: str = SYNTAX_HINT,
    kind: type[YamlSyntaxError] = YamlSyntaxError,
) -> YamlSyntaxError:
    mark = err.problem_mark or err.context_mark
    line = mark.line + 1 if mark else None
    column = mark.column + 1 if mark else None
    problem = err.problem or str(err)
    context = f" {err.context}" if err.context else ""
    if err.context_mark is not None and mark is not None and err.context_mark.line != mark.line:
        context += f" (which started on line {err.context_mark.line + 1})"
    return kind(f"invalid YAML: {problem}{context}", line, column, hint)


def _reader_error(err: yaml.reader.ReaderError, text: str) -> YamlSyntaxError:
    """A character YAML does not allow (NUL, most control characters), with its position."""
    position = max(0, min(err.position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    code = err.character if isinstance(err.character, int) else ord(err.character or "\0")
    return YamlSyntaxError(
        f"invalid YAML: character U+{code:04X} is not allowed in YAML text",
        line,
        column,
        _CHARACTER_HINT,
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse node graphs whose aliases expand too far, too deep, or into themselves.

    Aliases make the composed tree a graph that shares nodes; counted once each it is small,
    but every consumer of the built data sees each alias expanded. This walks the graph once
    (iteratively: its longest path may be far longer than the text's nesting) and computes
    each node's expanded size and depth bottom-up.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            _check_node_limits(node, size[key], depth[key])
            continue
        if key in size:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise _Refused(
                    problem="an alias refers to a list or mapping that contains it",
                    problem_mark=child.start_mark,
                )
            if id(child) not in size:
                stack.append((child, False))


def _check_node_limits(node: yaml.Node, size: int, depth: int) -> None:
    if size > MAX_VALUES:
        raise _Refused(
            problem=f"its aliases expand to more than {MAX_VALUES} values",
            problem_mark=node.start_mark,
        )
    if depth > MAX_DEPTH:
        raise _Refused(
            problem=f"its aliases expand to data nested deeper than {MAX_DEPTH} levels",
            problem_mark=node.start_mark,
        )


def _walk(root: yaml.Node, marks: dict, duplicates: list) -> None:
    """Record the position of every key and item, and every duplicate key.

    An alias reuses its anchor's node: each node is walked once, so nested aliases cannot
    make this exponential.
    """
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(reversed(_walk_mapping(node, loc, marks, duplicates)))
        elif isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                child = (*loc, index)
                marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append((item, child))
            stack.extend(reversed(items))


def _walk_mapping(
    node: yaml.MappingNode, loc: Loc, marks: dict, duplicates: list
) -> list[tuple[yaml.Node, Loc]]:
    """Mark one mapping's keys; return its values to walk (duplicates are not walked)."""
    seen: set[str] = set()
    values: list[tuple[yaml.Node, Loc]] = []
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
        child = (*loc, key)
        position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        if key in seen:
            duplicates.append(child)
            marks[(*child, "__duplicate__")] = position
            continue
        seen.add(key)
        marks[child] = position
        values.append((value_node, child))
    return values
