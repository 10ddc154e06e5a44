"""Prompt templates: Jinja files in `prompts/` rendered into chat messages.

A template is a `.jinja` file whose output is split into messages at marker lines
(`[[system]]`, `[[user]]`, `[[assistant]]`); text before the first marker is not allowed,
and a template without markers is one user message. Prefixes the model should continue
from are set as template variables: `{% set assistant_prefix = "The better response is (" %}`
and, for chain of thought, `{% set answer_prefix = "..." %}`; a template that picks its own
option labels exports them as `{% set choice_labels = [...] %}`.

Rendering is sandboxed, and everything passed in (prompts, responses, critiques, principle
text) is data: Jinja never evaluates it, and before rendering we defuse the few strings that
could change a prompt's structure: our message markers, the fence tags the templates put
around user text (`<response>`, `<conversation>`, ...), and chat control strings such as
`<|im_start|>`, `[INST]` or `<end_of_turn>` that a tokenizer would read as special tokens.
A response that contains `{{ 7*7 }}`, `</response>` or "(B)" stays text.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cai.backends.base import ChoiceRequest, Message
from cai.errors import CaiError

ROLES = ("system", "user", "assistant")
_MARKER_LINE = re.compile(r"^[ \t]*\[\[(system|user|assistant)\]\][ \t]*$", re.MULTILINE)
_MARKER_IN_DATA = re.compile(r"\[\[(\s*(?:system|user|assistant)\s*)\]\]", re.IGNORECASE)
FENCE_TAGS = (
    "conversation",
    "system",
    "user",
    "assistant",
    "response",
    "critique",
    "revision",
    "principle",
    "example",
)
"""Tag names the bundled templates fence user text with; they are defused inside data."""
_FENCE_IN_DATA = re.compile(
    r"<(\s*/?\s*(?:" + "|".join(FENCE_TAGS) + r")\b[^<>]{0,40})>", re.IGNORECASE
)
_SPECIAL_TOKEN = re.compile(r"<\|([^<>|\n]{1,40})\|>")
# Other chat-format control strings that tokenizers turn into special tokens when they
# appear in text (Llama 2 / Mistral, Gemma, sentencepiece BOS/EOS).
_CONTROL_TEXT = re.compile(
    r"(\[)(/?INST\])|(<)(/?s>|<?/?SYS>>|start_of_turn>|end_of_turn>|bos>|eos>)"
)


class TemplateError(CaiError, ValueError):
    """A template is missing, broken, or was rendered with the wrong variables."""


class RenderedPrompt(BaseModel):
    """Chat messages for the backend plus the text the model's answer should continue from.

    Plain scoring: the choice token comes right after chat_template(messages) +
    assistant_prefix. Chain of thought: a rationale is generated after that, and the choice
    token is scored after assistant_prefix + rationale + answer_prefix.
    """

    messages: list[Message]
    assistant_prefix: str = ""
    answer_prefix: str = ""
    template: str = ""
    labels: list[str] = Field(default_factory=list)
    """The option labels the template offered (compare / rank / assess), in order."""

    def choice_request(
        self, choices: Sequence[str] | None = None, rationale: str | None = None
    ) -> ChoiceRequest:
        """The backend request that scores the labels (after a rationale, for chain of thought)."""
        prefix = self.assistant_prefix
        if rationale is not None:
            prefix = prefix + rationale + self.answer_prefix
        picked = tuple(choices if choices is not None else self.labels)
        if not picked:
            raise TemplateError(f"template {self.template!r} offers no labels; pass `choices`")
        return ChoiceRequest(messages=self.messages, assistant_prefix=prefix, choices=picked)


@functools.lru_cache(maxsize=8192)
def as_data(text: str) -> str:
    """Defuse the strings in user text that could pass for prompt structure; keep the rest.

    Memoised: a judge renders the same conversation and responses for every order and
    principle of a pair."""
    text = _MARKER_IN_DATA.sub(r"[ [\1] ]", text)
    text = _SPECIAL_TOKEN.sub(r"< |\1| >", text)
    text = _CONTROL_TEXT.sub(lambda m: f"{m[1] or m[3]} {m[2] or m[4]}", text)
    return _FENCE_IN_DATA.sub(r"‹\1›", text)


def _to_data(value: Any) -> Any:
    """Deep copy of template variables with every string passed through `as_data`."""
    if isinstance(value, str):
        return as_data(value)
    if isinstance(value, BaseModel):
        return _model_data(value)
    if isinstance(value, Mapping):
        return {str(k): _to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_data(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Path):
        return as_data(str(value))
    raise TemplateError(
        f"cannot pass a {type(value).__name__} to a template; pass text, numbers, lists, "
        "mappings or pydantic models"
    )


_MODEL_DATA: dict[int, tuple[BaseModel, dict[str, Any]]] = {}


def _model_data(model: BaseModel) -> dict[str, Any]:
    """Template data of a pydantic model, memoised per object: constitutions and principles
    are passed to thousands of renders unchanged. (Holding the object keeps its id unique.)"""
    found = _MODEL_DATA.get(id(model))
    if found is not None and found[0] is model:
        return found[1]
    data = _convert_model(model)
    if len(_MODEL_DATA) >= 1024:
        _MODEL_DATA.clear()
    _MODEL_DATA[id(model)] = (model, data)
    return data


def _convert_model(model: BaseModel) -> dict[str, Any]:
    from cai.constitution import Constitution

    if isinstance(model, Constitution):
        # Templates need the constitution's identity and judge prompt, not every principle.
        return _to_data(
            {
                "name": model.name,
                "version": model.version,
                "description": model.description,
                "judge_system_prompt": model.judge_system_prompt,
                "principle_ids": model.principle_ids,
            }
        )
    return _to_data(model.model_dump(mode="python"))


def _check_conversation(name: str, conversation: Any) -> None:
    if not isinstance(conversation, list) or not conversation:
        raise TemplateError(
            f"template {name!r}: `conversation` must be a non-empty list of messages "
            '({"role": ..., "content": ...}), got ' + type(conversation).__name__
        )
    for index, message in enumerate(conversation):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise TemplateError(
                f"template {name!r}: conversation[{index}] must be a mapping with a text "
                f"`content`, got {message!r:.80}"
            )
        if message.get("role") not in ROLES:
            raise TemplateError(
                f"template {name!r}: conversation[{index}] has role {message.get('role')!r}; "
                f"roles must be one of {', '.join(ROLES)}"
            )


def _check_options(name: str, variables: dict[str, Any]) -> None:
    responses, labels = variables.get("responses"), variables.get("labels")
    if responses is None:
        return
    if not isinstance(responses, list | tuple) or not all(isinstance(r, str) for r in responses):
        raise TemplateError(f"template {name!r}: `responses` must be a list of strings")
    if labels is None:
        raise TemplateError(f"template {name!r}: `labels` is required with `responses`")
    labels = list(labels)
    if len(labels) != len(responses):
        raise TemplateError(
            f"template {name!r}: {len(responses)} responses but {len(labels)} labels; "
            "give one label per response"
        )
    if len(set(labels)) != len(labels) or any(
        not isinstance(label, str) or not label or label != label.strip() for label in labels
    ):
        raise TemplateError(
            f"template {name!r}: labels must be distinct non-empty strings without "
            f"surrounding spaces, got {labels!r}"
        )


class TemplateSet:
    """The bundled templates, optionally overridden by name from a user directory."""

    suffix = ".jinja"

    def __init__(self, directory: str | Path | None = None):
        from jinja2 import FileSystemLoader, StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        from cai.resources import prompts_dir

        self.bundled_dir = prompts_dir()
        self.user_dir: Path | None = None
        if directory is not None:
            self.user_dir = Path(directory).expanduser().resolve()
            if not self.user_dir.is_dir():
                raise TemplateError(
                    f"template directory {directory} does not exist or is not a directory; "
                    f"create it with .jinja files named like the bundled ones ({', '.join(self._bundled_names())})"
                )
        search = [str(d) for d in (self.user_dir, self.bundled_dir) if d is not None]
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(search),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self._fingerprint: str | None = None

    def _bundled_names(self) -> list[str]:
        return sorted(p.stem for p in self.bundled_dir.glob(f"*{self.suffix}"))

    def names(self) -> list[str]:
        """Template names available (partials, whose names start with `_`, excluded)."""
        dirs = [d for d in (self.user_dir, self.bundled_dir) if d is not None]
        found = {p.stem for d in dirs for p in d.glob(f"*{self.suffix}")}
        return sorted(n for n in found if not n.startswith("_"))

    def source_path(self, name: str) -> Path:
        """The file that provides template `name` (the user's copy when it has one)."""
        for directory in (self.user_dir, self.bundled_dir):
            if directory is not None and (directory / f"{name}{self.suffix}").is_file():
                return directory / f"{name}{self.suffix}"
        raise self._not_found(name)

    def _not_found(self, name: str) -> TemplateError:
        import difflib

        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return TemplateError(
            f"no template named {name!r}{hint}; available: {', '.join(self.names())}"
        )

    def fingerprint(self) -> str:
        """Hash of every template source this set resolves to (user overrides included)."""
        if self._fingerprint is None:
            dirs = [d for d in (self.user_dir, self.bundled_dir) if d is not None]
            names = sorted({p.stem for d in dirs for p in d.glob(f"*{self.suffix}")})
            digest = hashlib.sha256()
            for name in names:
                digest.update(name.encode() + b"\0")
                digest.update(self.source_path(name).read_bytes() + b"\0")
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def render(self, name: str, **variables: Any) -> RenderedPrompt:
        """Render template `name` with `variables` (user text is treated as data)."""
        from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
        from jinja2.exceptions import SecurityError

        if name.startswith("_") or "/" in name or "\\" in name:
            raise TemplateError(f"{name!r} is not a template name; use one of {self.names()}")
        if "conversation" in variables:
            _check_conversation(name, variables["conversation"])
        _check_options(name, variables)
        data = {key: _to_data(value) for key, value in variables.items()}
        try:
            template = self.env.get_template(f"{name}{self.suffix}")
            module = template.make_module(data)
            body = str(module)
        except TemplateNotFound as err:
            if err.name == f"{name}{self.suffix}":
                raise self._not_found(name) from None
            raise TemplateError(
                f"template {name!r} includes missing template {err.name!r}"
            ) from None
        except TemplateSyntaxError as err:
            raise TemplateError(
                f"template {name!r} has a syntax error at {err.filename}:{err.lineno}: {err.message}"
            ) from None
        except UndefinedError as err:
            raise TemplateError(
                f"template {name!r} needs a variable that was not given: {err.message}; "
                f"given: {', '.join(sorted(variables)) or 'none'}"
            ) from None
        except SecurityError as err:
            raise TemplateError(f"template {name!r} tried an unsafe operation: {err}") from None
        messages = _split_messages(name, body)
        exported = getattr(module, "choice_labels", None)
        labels = [str(label) for label in (exported or variables.get("labels") or [])]
        return RenderedPrompt(
            messages=messages,
            assistant_prefix=str(getattr(module, "assistant_prefix", "")),
            answer_prefix=str(getattr(module, "answer_prefix", "")),
            template=name,
            labels=labels,
        )


def _split_messages(name: str, body: str) -> list[Message]:
    parts = _MARKER_LINE.split(body)
    head, rest = parts[0], parts[1:]
    if not rest:
        content = body.strip()
        if not content:
            raise TemplateError(f"template {name!r} rendered nothing")
        return [{"role": "user", "content": content}]
    if head.strip():
        raise TemplateError(
            f"template {name!r} has text before its first [[role]] marker: {head.strip()[:60]!r}; "
            "start the template with [[system]] or [[user]]"
        )
    messages: list[Message] = []
    for role, raw in zip(rest[0::2], rest[1::2], strict=True):
        content = raw.strip()
        if not content:
            if role == "system":
                continue
            raise TemplateError(f"template {name!r} rendered an empty {role} message")
        messages.append({"role": role, "content": content})
    if not messages or messages[-1]["role"] == "system":
        raise TemplateError(f"template {name!r} must end with a user or assistant message")
    return messages
