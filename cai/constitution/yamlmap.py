"""Safe YAML parsing that remembers where every field was written.

We compose the node tree with `yaml.SafeLoader` (no object construction) and record the
line of every mapping key and sequence item, so validation errors can point at the exact
line. Duplicate mapping keys, which YAML would silently collapse, are reported too.
"""

from __future__ import annotations

from typing import Any

import yaml

from cai.errors import CaiError

Loc = tuple[str | int, ...]


class ParsedYaml:
    """The plain data of a YAML document plus a field-path -> (line, column) map (1-based)."""

    def __init__(self, data: Any, marks: dict[Loc, tuple[int, int]], duplicates: list[Loc]):
        self.data = data
        self.marks = marks
        self.duplicates = duplicates

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
    def __init__(self, message: str, line: int | None, column: int | None):
        super().__init__(message)
        self.line = line
        self.column = column


def parse_yaml(text: str) -> ParsedYaml:
    """Parse one YAML document safely; raise YamlSyntaxError with a position on bad syntax."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = err.problem or str(err)
        context = f" {err.context}" if err.context else ""
        if err.context_mark is not None and mark is not None and err.context_mark.line != mark.line:
            context += f" (which started on line {err.context_mark.line + 1})"
        raise YamlSyntaxError(f"invalid YAML: {problem}{context}", line, column) from None
    except yaml.YAMLError as err:
        raise YamlSyntaxError(f"invalid YAML: {err}", None, None) from None
    finally:
        loader.dispose()
    marks: dict[Loc, tuple[int, int]] = {}
    duplicates: list[Loc] = []
    if node is not None:
        marks[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
        _walk(node, (), marks, duplicates, set())
    return ParsedYaml(data, marks, duplicates)


def _walk(node: yaml.Node, loc: Loc, marks: dict, duplicates: list, seen_nodes: set) -> None:
    # An alias reuses its anchor's node: walk each node once, so nested aliases (a "billion
    # laughs" file) cannot make this exponential.
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*loc, key)
            if key in seen:
                duplicates.append(child)
                marks[(*child, "__duplicate__")] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                continue
            seen.add(key)
            marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, marks, duplicates, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, child, marks, duplicates, seen_nodes)
