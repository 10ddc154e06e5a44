"""Load a constitution file: safe YAML, every error with file:line:field, `extends` resolved.

A file may extend another (a path relative to it, or a bundled name). Inherited principles
keep their order; a principle with an inherited id overrides only the fields it sets; new
principles are appended; `remove:` drops inherited ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cai.constitution.errors import (
    ConstitutionError,
    ConstitutionIssue,
    display_path,
    field_path,
)
from cai.constitution.models import (
    PRINCIPLE_TEXT_FIELDS,
    Constitution,
    ConstitutionDefaults,
    ConstitutionFile,
    DefaultsFile,
    FewShotExample,
    Principle,
    PrincipleFile,
)
from cai.errors import did_you_mean
from cai.resources import bundled_constitution_names, constitutions_dir
from cai.yamlmap import ParsedYaml, YamlSyntaxError, parse_yaml

_MODELS_BY_SECTION: dict[str, type] = {
    "principles": PrincipleFile,
    "defaults": DefaultsFile,
    "examples": FewShotExample,
}


def load_constitution(path_or_bundled_name: str | Path) -> Constitution:
    """Load and resolve a constitution from a YAML path or a bundled name ("default", ...)."""
    path = locate_constitution(path_or_bundled_name)
    return _load_file(path, chain=())


def load_constitution_text(text: str, source: str = "<string>", base_dir: Path | None = None):
    """Load a constitution from YAML text; relative `extends` paths resolve from `base_dir`."""
    return _load_parsed(text, source, None, base_dir or Path.cwd(), chain=())


def locate_constitution(path_or_bundled_name: str | Path) -> Path:
    """The file behind a path or a bundled name; ConstitutionError with suggestions otherwise."""
    candidate = _expand_user(path_or_bundled_name)
    if candidate.is_file():
        return candidate.resolve()
    text = str(path_or_bundled_name)
    names = bundled_constitution_names()
    if text in names:
        return (constitutions_dir() / f"{text}.yaml").resolve()
    if candidate.is_dir():
        problem = "is a directory, not a constitution file"
    else:
        problem = "no such file or bundled constitution"
    suggestion = did_you_mean(Path(text).stem, names)
    hint = (suggestion + " " if suggestion else "") + (
        f"bundled constitutions: {', '.join(names)}; or give the path to a .yaml file"
        if names
        else "give the path to a .yaml file"
    )
    raise ConstitutionError([ConstitutionIssue(file=text, message=problem, hint=hint)])


def _load_file(path: Path, chain: tuple[Path, ...]) -> Constitution:
    shown = display_path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConstitutionError(
            [ConstitutionIssue(file=shown, message=f"cannot read file: {err}")]
        ) from None
    return _load_parsed(_decode(raw, shown), shown, path, path.parent, chain)


def _decode(raw: bytes, shown: str) -> str:
    """The file as UTF-8 text; otherwise an error with the byte offset of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConstitutionError(
            [
                ConstitutionIssue(
                    file=shown,
                    line=line,
                    message=f"not UTF-8 text: byte 0x{raw[err.start]:02x} at byte offset "
                    f"{err.start} ({err.reason})",
                    hint="save the file as UTF-8",
                )
            ]
        ) from None


def _expand_user(path: str | Path) -> Path:
    """`~` expanded when it names a home directory; the path unchanged when it cannot be."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # "~someone" who has no home directory on this machine
        return Path(path)


def _load_parsed(
    text: str, shown: str, path: Path | None, base_dir: Path, chain: tuple[Path, ...]
) -> Constitution:
    parsed = _parse_mapping(text, shown)
    issues = _Issues(parsed, shown)
    for duplicate in parsed.duplicate_keys():
        issues.at(
            duplicate.loc, duplicate.line, duplicate.column, duplicate.message, duplicate.hint
        )
    data: dict[str, Any] = parsed.data
    spec: ConstitutionFile | None = None
    try:
        spec = ConstitutionFile.model_validate(data)
    except ValidationError as err:
        for error in err.errors():
            _report_validation_error(error, issues)
    _check_duplicate_ids(data, parsed, issues)

    parent: Constitution | None = None
    parent_failed = False
    extends = data.get("extends")
    if isinstance(extends, str) and extends.strip():
        parent = _load_parent(extends, base_dir, path, chain, issues)
        parent_failed = parent is None
    if not parent_failed:
        _check_uses(data, parent, issues)
        _check_remove(data, parent, issues)
    if spec is not None and not parent_failed:
        constitution = _resolve(spec, parent, path, issues)
        if constitution is not None and not issues.found:
            return constitution
    raise ConstitutionError(_ordered(issues.found, shown))


def _parse_mapping(text: str, shown: str) -> ParsedYaml:
    """The file's YAML, which must be a mapping; ConstitutionError with its line otherwise."""
    try:
        parsed = parse_yaml(text, keep_duplicates=True)
    except YamlSyntaxError as err:
        problem = ConstitutionIssue(
            file=shown, line=err.line, column=err.column, message=err.message, hint=err.hint
        )
        raise ConstitutionError([problem]) from None
    if not isinstance(parsed.data, dict):
        kind = "empty" if parsed.data is None else f"a {type(parsed.data).__name__}"
        problem = ConstitutionIssue(
            file=shown,
            line=1,
            message=f"a constitution must be a YAML mapping, but this file is {kind}",
            hint="start from `cai constitution new NAME`",
        )
        raise ConstitutionError([problem])
    return parsed


class _Issues:
    """The problems found in one file (and the files it extends), each at its line and field.

    Calling it reports a problem at a field; the checks below take it as `issue`.
    """

    def __init__(self, parsed: ParsedYaml, shown: str) -> None:
        self.parsed = parsed
        self.shown = shown
        self.found: list[ConstitutionIssue] = []

    def __call__(self, loc: tuple, message: str, hint: str = "") -> None:
        line, column = self.parsed.position(loc)
        self.at(loc, line, column, message, hint)

    def at(self, loc: tuple, line: int | None, column: int | None, message: str, hint: str) -> None:
        self.found.append(
            ConstitutionIssue(
                file=self.shown,
                line=line,
                column=column,
                field=field_path(loc),
                message=message,
                hint=hint,
            )
        )


def _ordered(issues: list[ConstitutionIssue], shown: str) -> list[ConstitutionIssue]:
    """This file's issues by line, then those of the files it extends."""
    own = [i for i in issues if i.file == shown]
    own.sort(key=lambda i: (i.line or 0, i.column or 0))
    return own + [i for i in issues if i.file != shown]


def _report_validation_error(error: dict, issue) -> None:
    loc = tuple(error["loc"])
    kind = error["type"]
    name = str(loc[-1]) if loc else ""
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        suggestion = did_you_mean(name, allowed)
        hint = (suggestion + " " if suggestion else "") + f"allowed here: {', '.join(allowed)}"
        issue(loc, f"unknown field `{name}`", hint)
    elif kind == "missing":
        issue(loc, f"missing required field `{name}`", f"add `{name}: ...`")
    elif kind == "value_error" and "is empty" in error["msg"]:
        issue(loc, "text is empty", "write the text, or remove the field")
    elif kind == "string_pattern_mismatch":
        issue(
            loc,
            f"invalid id {value!r}",
            "ids use letters, digits, '-', '_' and '.', and start with a letter or digit",
        )
    elif kind in ("greater_than_equal", "greater_than") and error.get("ctx"):
        bound = next(iter(error["ctx"].values()))
        sign = ">=" if kind == "greater_than_equal" else ">"
        issue(loc, f"must be {sign} {bound}, got {value!r}", f"use a value {sign} {bound}")
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        expected = _EXPECTED.get(kind.split("_")[0], error["msg"])
        hint = _TYPE_HINTS.get(kind.split("_")[0], "")
        if kind == "string_type" and isinstance(value, bool):
            hint = 'YAML reads yes/no/on/off/true/false as booleans: quote it, e.g. "off"'
        issue(loc, f"wrong type: expected {expected}, got {_describe(value)}", hint)
    else:
        issue(loc, error["msg"])


_EXPECTED = {
    "string": "text",
    "list": "a list",
    "float": "a number",
    "int": "a whole number",
    "bool": "true or false",
    "model": "a mapping of fields",
    "dict": "a mapping of fields",
}
_TYPE_HINTS = {
    "string": "quote the value, or use a `|` block for long text",
    "float": "write a plain number such as 1.5",
    "int": "write a whole number such as 2",
    "bool": "write true or false",
    "list": "write one item per line starting with `- `",
    "model": "indent its fields under it as `key: value` lines",
    "dict": "indent its fields under it as `key: value` lines",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "text"}.get(
        type(value), type(value).__name__
    )
    shown = repr(value)
    return f"{kind} {shown[:40] + '...' if len(shown) > 40 else shown}"


def _allowed_fields(parent_loc: tuple) -> list[str]:
    """Field names allowed in the mapping at `parent_loc` (for unknown-key suggestions)."""
    model: type = ConstitutionFile
    for part in parent_loc:
        if isinstance(part, str) and part in _MODELS_BY_SECTION:
            model = _MODELS_BY_SECTION[part]
    return list(model.model_fields)  # type: ignore[attr-defined]


def _check_duplicate_ids(data: dict, parsed: ParsedYaml, issue) -> None:
    principles = data.get("principles")
    if not isinstance(principles, list):
        return
    first_seen: dict[str, int] = {}
    for index, item in enumerate(principles):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        pid = item["id"]
        if pid in first_seen:
            first_line, _ = parsed.position(("principles", first_seen[pid], "id"))
            issue(
                ("principles", index, "id"),
                f"duplicate principle id `{pid}` (first defined on line {first_line})",
                "give each principle its own id",
            )
        else:
            first_seen[pid] = index


def _check_uses(data: dict, parent: Constitution | None, issue) -> None:
    """Every principle must be usable for something, and critique/revision come as a pair.

    A principle serves `cai judge` with a `comparison_question`, `cai revise` with a
    `critique_request` and a `revision_request` (one without the other is useless), and
    pointwise assessment with an `assessment_question`; it may serve one use only. An
    override is checked merged with the principle it overrides (an explicit `null` removes
    an inherited phrasing).
    """
    principles = data.get("principles")
    if not isinstance(principles, list):
        return
    inherited = {p.id: p for p in parent.principles} if parent is not None else {}
    for index, item in enumerate(principles):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        pid = item["id"]
        base = inherited[pid].model_dump() if pid in inherited else {}
        fields = {**base, **item}
        present = {name for name in PRINCIPLE_TEXT_FIELDS if fields.get(name) is not None}
        where = " (merged with the inherited principle)" if pid in inherited else ""
        if parent is not None and pid not in inherited:
            where = f" (it is new: the extended constitution has no principle `{pid}`)"
        pair = {"critique_request", "revision_request"}
        half = pair & present
        if len(half) == 1:
            (have,) = half
            (lack,) = pair - half
            issue(
                ("principles", index),
                f"principle `{pid}` is missing required field `{lack}`: it has `{have}`, and "
                f"`cai revise` uses the two together{where}",
                f"add `{lack}: ...`, or remove `{have}`",
            )
            continue
        if not present:
            issue(
                ("principles", index),
                f"principle `{pid}` is missing required fields: it needs "
                "`comparison_question` (for cai judge), `critique_request` and "
                "`revision_request` (for cai revise), or `assessment_question` (for "
                f"pointwise assessment){where}",
                "add the phrasing(s) for the uses you want",
            )


def _check_remove(data: dict, parent: Constitution | None, issue) -> None:
    """`remove:` must name inherited principles that this file does not also redefine."""
    remove = data.get("remove")
    if not isinstance(remove, list) or not remove:
        return
    if parent is None:
        issue(
            ("remove",),
            "`remove` only applies to a constitution that `extends` another",
            "add `extends: default` (or a path), or delete `remove`",
        )
        return
    principles = data.get("principles")
    own_ids = {
        item["id"]
        for item in (principles if isinstance(principles, list) else [])
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    }
    inherited = parent.principle_ids
    for index, pid in enumerate(remove):
        if not isinstance(pid, str):
            continue  # reported as a wrong type
        if pid not in inherited:
            issue(
                ("remove", index),
                f"cannot remove `{pid}`: the extended constitution has no such principle",
                did_you_mean(pid, inherited) or f"its principles are: {', '.join(inherited)}",
            )
        elif pid in own_ids:
            issue(
                ("remove", index),
                f"`{pid}` is both removed and redefined in this file",
                "drop it from `remove` to override it, or delete its definition",
            )


def _load_parent(
    extends: str, base_dir: Path, path: Path | None, chain: tuple[Path, ...], issue: _Issues
) -> Constitution | None:
    target = _locate_parent(extends, base_dir)
    if target is None:
        names = bundled_constitution_names()
        suggestion = did_you_mean(Path(extends).stem, names)
        issue(
            ("extends",),
            f"cannot find `{extends}` to extend",
            (suggestion + " " if suggestion else "")
            + "give a path relative to this file or a bundled name: "
            + ", ".join(names),
        )
        return None
    here = (*chain, path) if path is not None else chain
    if target in here:
        cycle = " -> ".join(display_path(p) for p in (*here[here.index(target) :], target))
        issue(("extends",), f"cyclic extends: {cycle}", "a constitution cannot extend itself")
        return None
    try:
        return _load_file(target, here)
    except ConstitutionError as err:
        issue(("extends",), f"the extended constitution `{extends}` has errors (listed below)")
        issue.found.extend(err.issues)
        return None


def _describe_source(constitution: Constitution) -> str:
    """`default (bundled)` for bundled files, the path as typed-relative otherwise."""
    path = constitution.source_path
    if path is None:
        return constitution.name
    try:
        if path.parent.resolve() == constitutions_dir().resolve():
            return f"{path.stem} (bundled)"
    except FileNotFoundError:
        pass
    return display_path(path)


def _locate_parent(extends: str, base_dir: Path) -> Path | None:
    relative = _expand_user(base_dir / extends)
    if relative.is_file():
        return relative.resolve()
    if extends in bundled_constitution_names():
        return (constitutions_dir() / f"{extends}.yaml").resolve()
    return None


def _resolve(
    spec: ConstitutionFile, parent: Constitution | None, path: Path | None, issue: _Issues
) -> Constitution | None:
    """Merge one validated file onto its parent (if any) into a Constitution."""
    inherited: dict[str, dict[str, Any]] = {}
    if parent is not None:
        inherited = {p.id: p.model_dump() for p in parent.principles}
    for pid in spec.remove:
        inherited.pop(pid, None)  # unknown ids were reported by _check_remove

    merged = dict(inherited)
    for written in spec.principles:
        fields = written.model_dump(exclude_unset=True)
        if written.id in inherited:
            merged[written.id] = {**inherited[written.id], **fields}
            continue
        merged[written.id] = fields

    if not merged:
        issue(
            ("principles",) if spec.principles or "principles" in spec.model_fields_set else (),
            "the constitution has no principles",
            "add at least one under `principles:`",
        )

    defaults = parent.defaults.model_dump() if parent is not None else {}
    if spec.defaults is not None:
        defaults.update(spec.defaults.model_dump(exclude_unset=True))
    if issue.found:
        return None  # reported; building would only repeat them
    principles = [Principle.model_validate(fields) for fields in merged.values()]

    description = spec.description
    if description is None:
        description = parent.description if parent is not None else ""
    judge_system_prompt = spec.judge_system_prompt
    if judge_system_prompt is None and parent is not None:
        judge_system_prompt = parent.judge_system_prompt
    constitution = Constitution(
        name=spec.name,
        version=spec.version or "1",
        description=description.strip(),
        principles=principles,
        judge_system_prompt=judge_system_prompt,
        defaults=ConstitutionDefaults.model_validate(defaults),
        source_path=path,
        extends=(
            [
                _describe_source(parent),
                *parent.extends,
            ]
            if parent is not None
            else []
        ),
    )
    constitution.content_hash = constitution.compute_hash()
    return constitution
