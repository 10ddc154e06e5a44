"""The one config loader: a YAML file, then typed CLI flags, then `--set key.path=value`.

Every command builds its settings the same way and gets the same errors:
1. the YAML file (optional), parsed safely with the line of every key remembered;
2. the flags the user actually passed, as a dict of dotted keys to typed values (None = not
   given), so a flag never round-trips through text;
3. `--set dotted.key=value` overrides, whose values are read as YAML (`3`, `true`, `[a, b]`);
   an empty value (`key=`) means null, as in YAML, which resets a setting to its default
   where null is allowed;
then the command's pydantic model validates the whole. A problem is one `ConfigError` naming
the file, the line, the key, and the fix (with a did-you-mean for misspelt keys).

A flag that changes the `kind` of a settings mapping whose kind decides what it takes (a
backend: `--backend openai` over a file written for vllm) drops the file's settings that the
new kind does not have, and says which on stderr: the flag is how a user points the same file
at another backend. Settings given on the command line stay strict.

The resolved settings are saved as `config.resolved.yaml` in the output directory by every
command (`save_resolved`), with local paths relative to that directory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from cai.errors import CaiError
from cai.model_names import CHECK_MODEL_NAMES
from cai.yamlmap import DuplicateKeyError, YamlLimitError, YamlSyntaxError, parse_yaml

M = TypeVar("M", bound=BaseModel)

RESOLVED_CONFIG = "config.resolved.yaml"


class ConfigError(CaiError, ValueError):
    """A config file, flag or override is invalid; the message says where and how to fix it."""


@dataclass(frozen=True)
class KindSettings:
    """Field metadata (`Annotated[..., KindSettings(...)]`) of a settings mapping whose `kind`
    decides which settings it takes: `default` is the kind when none is written, `settings(kind)`
    the names a kind takes (None for a kind it does not know)."""

    default: str
    settings: Callable[[str], Collection[str] | None]


# ---- reading ----------------------------------------------------------------------------------
def read_settings_file(path: str | Path):
    """Parse a YAML settings file into data plus key positions; every failure is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            "no such config file", file=path, fix="Check the path (examples/ has samples)."
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"not UTF-8 text (byte {err.start} is {err.object[err.start : err.start + 1]!r})",
            file=path,
            fix="Save the file as UTF-8.",
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read it ({err.strerror})", file=path) from None
    try:
        parsed = parse_yaml(text)
    except DuplicateKeyError as err:
        raise ConfigError(
            err.message, file=path, line=err.line, column=err.column, key=err.key, fix=_fix(err)
        ) from None
    except YamlSyntaxError as err:
        problem = err.message.removeprefix("invalid YAML: ")
        raise ConfigError(
            f"not valid YAML ({problem})",
            file=path,
            line=err.line,
            column=err.column,
            fix="Fix the YAML there (settings files are a mapping a few levels deep).",
        ) from None
    if parsed.data is not None and not isinstance(parsed.data, dict):
        raise ConfigError(
            f"the top level must be a mapping of settings (key: value lines), not a "
            f"{type(parsed.data).__name__}",
            file=path,
            line=1,
        )
    return parsed


def _fix(err: YamlSyntaxError) -> str:
    return err.hint[0].upper() + err.hint[1:] + "."


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=3' -> (['a', 'b'], 3); the value is read as YAML, an empty value is None.

    A value that is not YAML is taken as text; one that means two things (a key given twice
    in `{a: 1, a: 2}`) or nests too deeply is refused.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        raise ConfigError(
            f"override {text!r} is not of the form key=value (key.path=value for a nested setting)",
            fix="For example --set sample.n=4.",
        )
    try:
        value = parse_yaml(raw).data if raw.strip() else None
    except DuplicateKeyError as err:
        raise ConfigError(
            f"override {text!r} gives key `{err.loc[-1]}` twice", key=key, fix=_fix(err)
        ) from None
    except YamlLimitError:
        raise ConfigError(f"override {text!r} is nested too deeply", key=key) from None
    except YamlSyntaxError:
        value = raw
    return [part.strip() for part in key.split(".")], value


def set_dotted(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set data[a][b]... = value, creating mappings on the way; refuses to descend into a value."""
    node = data
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, BaseModel):
            child = node[part] = child.model_dump()
        elif not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(
                f"cannot set {'.'.join(path)}: {where} is a {type(child).__name__}, not a mapping",
                key=".".join(path),
            )
        node = child
    node[path[-1]] = value


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names allowed at `loc` inside `model` (for did-you-mean hints)."""
    current: Any = model
    for part in loc:
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        annotation = info.annotation
        options = [annotation, *getattr(annotation, "__args__", ())]
        current = next((o for o in options if hasattr(o, "model_fields")), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _kind_settings(model: type[BaseModel], loc: tuple[str, ...]) -> KindSettings | None:
    """The KindSettings of the field at `loc` inside `model`, if it has one."""
    info = None
    current: Any = model
    for part in loc:
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return None
        parts = _annotations(info.annotation)
        current = next((o for o in parts if hasattr(o, "model_fields")), None)
    if info is None:
        return None
    metadata = [*info.metadata]
    for annotation in _annotations(info.annotation):
        metadata.extend(getattr(annotation, "__metadata__", ()))
    return next((m for m in metadata if isinstance(m, KindSettings)), None)


def _annotations(annotation: Any) -> list[Any]:
    """`annotation` and what it is made of, through Optional, unions and Annotated."""
    found = [annotation]
    origin = get_origin(annotation)
    if origin is Annotated:
        found.extend(_annotations(get_args(annotation)[0]))
    elif origin is Union or type(annotation).__name__ == "UnionType":
        for arg in get_args(annotation):
            found.extend(_annotations(arg))
    return found


def _drop_other_kinds(
    model: type[BaseModel], data: dict[str, Any], given: list[tuple[list[str], Any]]
) -> None:
    """Where the command line (`given`: dotted keys and values) changes the kind of a mapping
    the file wrote, drop the file's settings the new kind does not have, and say which."""
    given_keys = {tuple(keys) for keys, _ in given}
    new_kinds = {tuple(keys[:-1]): value for keys, value in given if keys[-1] == "kind"}
    for loc, kind in new_kinds.items():
        written: Any = data
        for part in loc:
            written = written.get(part) if isinstance(written, dict) else None
        marker = _kind_settings(model, loc) if isinstance(written, dict) else None
        if marker is None or not isinstance(kind, str):
            continue
        old = written.get("kind") or marker.default
        allowed = marker.settings(kind)
        if old == kind or allowed is None:
            continue
        dropped = [name for name in written if name != "kind" and name not in allowed]
        for name in dropped:
            del written[name]
        shown = [name for name in dropped if (*loc, name) not in given_keys]
        if shown:
            print(
                f"{'.'.join(loc)}: kind {kind} from the command line drops {', '.join(shown)} "
                f"from the file (settings of kind {old}, not of kind {kind})",
                file=sys.stderr,
            )


def _validation_error(err: ValidationError, model: type[BaseModel], path: Path | None, parsed):
    from cai.errors import did_you_mean

    # A misspelt key often also leaves a required one missing: report the unknown key first.
    problems = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = problems[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or None
    line = parsed.position(loc)[0] if parsed is not None and loc else None
    message = first["msg"]
    # a validator may say how to fix its own problem (cai.backends.specs does)
    fix = (first.get("ctx") or {}).get("fix") or (
        "Set it in the YAML file, with a flag, or with --set key=value."
    )
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
        known = _fields_at(model, loc[:-1])
        hint = did_you_mean(str(loc[-1]), known)
        fix = (hint[0].upper() + hint[1:] + " " if hint else "") + (
            f"Known settings here: {', '.join(known)}." if known else ""
        )
    elif first["type"] == "missing":
        message = "required setting is missing"
    if len(problems) > 1:
        others = ", ".join(".".join(str(p) for p in e["loc"]) or "?" for e in problems[1:4])
        message += (
            f" (and {len(problems) - 1} more: {others}{', ...' if len(problems) > 4 else ''})"
        )
    return ConfigError(message, file=path, line=line, key=key, fix=fix.strip() or None)


def load_config(
    model: type[M],
    path: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
    check_models: bool = False,
) -> M:
    """A validated `model` from YAML < typed options (None = not given) < `--set` overrides.

    `check_models`: the settings come from a user's command, so a model name
    (`cai.model_names.ModelName`) that is not a directory, an embedded model or a hub id fails
    here, before anything loads.
    """
    parsed = None
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        parsed = read_settings_file(path)
        data = parsed.data or {}
    given = [(key.split("."), value) for key, value in (options or {}).items() if value is not None]
    given += [parse_override(text) for text in overrides]
    _drop_other_kinds(model, data, given)
    for keys, value in given:
        set_dotted(data, keys, value)
    try:
        return model.model_validate(data, context={CHECK_MODEL_NAMES: check_models})
    except ValidationError as err:
        raise _validation_error(err, model, path, parsed) from None


# ---- writing ----------------------------------------------------------------------------------
def save_resolved(
    data: dict[str, Any],
    directory: str | Path,
    path_keys: Iterable[str] = (),
    header: str | None = None,
) -> Path:
    """Write resolved settings as `config.resolved.yaml` in `directory`, atomically.

    `path_keys` are dotted keys holding local paths: they are written relative to `directory`
    (settings files travel with the data they made; absolute paths would leak home and temp
    directories), and loading the file again resolves them beside it.
    """
    import yaml

    from cai.files import atomic_write_text, relative_to_run

    directory = Path(directory)
    for dotted in path_keys:
        node: Any = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(parts[-1]) is not None:
            node[parts[-1]] = relative_to_run(node[parts[-1]], directory)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return atomic_write_text(directory / RESOLVED_CONFIG, text)


def resolve_beside(value: str | None, base: Path | None) -> str | None:
    """A relative input path that exists beside the config file is taken from there."""
    if value is None or base is None:
        return value
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return value
    beside = base / path
    return str(beside) if beside.exists() else value
