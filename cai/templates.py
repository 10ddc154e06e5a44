"""Prompt templates: Jinja files in `prompts/` rendered into chat messages.

A template is a `.jinja` file whose output is split into messages at marker lines
(`[[system]]`, `[[user]]`, `[[assistant]]`); text before the first marker is not allowed,
and a template without markers is one user message. Prefixes the model should continue
from are set as template variables: `{% set assistant_prefix = "The better response is (" %}`
and, for chain of thought, `{% set answer_prefix = "..." %}`; a template that picks its own
option labels exports them as `{% set choice_labels = [...] %}`.

Rendering is sandboxed, and everything passed in (prompts, responses, critiques, principle
text) is data: Jinja never evaluates it, and before rendering `as_data` defuses the few
strings that could change a prompt's structure:

- our message markers: `[[user]]` becomes `[ [user] ]`;
- the fence tags the templates put around user text (`<response>`, `<conversation>`, ...,
  see FENCE_TAGS), opening or closing, in any case, with any whitespace or attributes
  inside, however long: `</response >` becomes `‹/response ›`;
- chat control strings (see `defuse_control`), which a tokenizer would read as special
  tokens, get an invisible U+200D ZERO WIDTH JOINER after their first character:
  `<|im_end|>` becomes `<`, U+200D, `|im_end|>`, which reads the same but is not
  the token.

A response that contains `{{ 7*7 }}`, `</response>`, "(B)" or `<|im_end|>` stays text.
The local backends also tokenize message contents without parsing special tokens (see
`cai.backends.tokens`); for an OpenAI-compatible server, which tokenizes the prompt itself,
the text-level defusing here is the defence.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cai.backends import prompt_split
from cai.backends.base import ChoiceRequest, Message
from cai.backends.prompt_split import with_tail
from cai.backends.tokens import JOINER
from cai.constitution import Constitution
from cai.errors import CaiError
from cai.resources import prompts_dir

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
# A fence tag, opening or closing, with whatever follows its name up to the next angle
# bracket (possessive quantifiers: linear time however long the whitespace runs). The `>`
# is optional so that an unterminated `</response` followed by text is defused too.
_FENCE_IN_DATA = re.compile(
    r"<(\s*+/?\s*+(?:" + "|".join(FENCE_TAGS) + r")\b[^<>]*+)(>?)", re.IGNORECASE
)

CONTROL_STRINGS: tuple[str, ...] = (
    # ChatML (Qwen, SmolLM, many fine-tunes) and Llama 3 are all `<|...|>`, see below.
    # Llama 2 / Mistral
    "[INST]",
    "[/INST]",
    "<s>",
    "</s>",
    "<<SYS>>",
    "<</SYS>>",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    # Gemma
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
    "<pad>",
    "<unk>",
    # Qwen reasoning and tools (added tokens that even split_special_tokens keeps whole)
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)
"""Chat control strings defused inside user text (case-insensitively), besides every token
that starts with `<|` (ChatML `<|im_start|>` `<|im_end|>` `<|endoftext|>`, Llama 3
`<|begin_of_text|>` `<|start_header_id|>` `<|end_header_id|>` `<|eot_id|>` `<|eom_id|>`,
Phi, Command-R, ...) or with `<｜` (DeepSeek `<｜begin▁of▁sentence｜>` `<｜User｜>`
`<｜Assistant｜>` `<｜end▁of▁sentence｜>`): every `<|` and `<｜` is defused, so no such token
survives whatever its name."""
_CONTROL_IN_DATA = re.compile(
    "|".join(re.escape(s) for s in sorted(CONTROL_STRINGS, key=len, reverse=True)) + r"|<\||<｜",
    re.IGNORECASE,
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
    tail: str = ""
    """The end of the last message that differs between prompts that `render_each` made
    from one render (the rest of the messages is shared); empty when unknown."""

    def choice_request(
        self, choices: Sequence[str] | None = None, rationale: str | None = None
    ) -> ChoiceRequest:
        """The backend request that scores the labels (after a rationale, for chain of thought)."""
        prefix = self.assistant_prefix
        if rationale is not None:
            prefix = prefix + defuse_control(rationale) + self.answer_prefix
        picked = tuple(choices if choices is not None else self.labels)
        if not picked:
            raise TemplateError(f"template {self.template!r} offers no labels; pass `choices`")
        request = ChoiceRequest(messages=self.messages, assistant_prefix=prefix, choices=picked)
        return with_tail(request, self.tail)


@functools.lru_cache(maxsize=8192)
def as_data(text: str) -> str:
    """Defuse the strings in user text that could pass for prompt structure; keep the rest.

    Memoised: a judge renders the same conversation and responses for every order and
    principle of a pair."""
    text = _MARKER_IN_DATA.sub(r"[ [\1] ]", text)
    text = defuse_control(text)
    return _FENCE_IN_DATA.sub(_defuse_fence, text)


def defuse_control(text: str) -> str:
    """`text` with every chat control string (CONTROL_STRINGS, `<|`, `<｜`) defused.

    For text that goes into a prompt outside the templates, such as a chain-of-thought
    rationale placed in the assistant prefix. Idempotent."""
    return _CONTROL_IN_DATA.sub(lambda m: m[0][0] + JOINER + m[0][1:], text)


def _defuse_fence(match: re.Match[str]) -> str:
    return "‹" + match[1] + ("›" if match[2] else "")


class TemplateData(dict):
    """Template variables already converted (`template_data`): passed to templates as they are."""


def template_data(value: BaseModel | Mapping[str, Any]) -> TemplateData:
    """`value` as template data, converted once: for a caller that renders many prompts with
    the same model (a judge's constitution and principles) and does not change it meanwhile."""
    data = _to_data(value)
    if not isinstance(data, dict):
        raise TemplateError(f"template_data takes a model or a mapping, not {type(value).__name__}")
    return TemplateData(data)


def _to_data(value: Any) -> Any:
    """Deep copy of template variables with every string passed through `as_data`."""
    if type(value) is TemplateData:
        return value
    if isinstance(value, str):
        return as_data(value)
    if isinstance(value, BaseModel):
        return _convert_model(value)
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


def _convert_model(model: BaseModel) -> dict[str, Any]:
    """Template data of a pydantic model, converted at every render: models are mutable, and
    a content key costs more than the conversion (the strings inside are memoised by as_data)."""
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

        self.bundled_dir = prompts_dir()
        self.user_dir: Path | None = None
        if directory is not None:
            self.user_dir = self._user_directory(directory)
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
        self._render_whole: set[str] = set()
        """Templates `render_each` renders in full (a check found them not to fit the fast
        way); `_render_checked` holds the (template, value) pairs it has checked."""
        self._render_checked: set[tuple[str, str]] = set()
        if self.user_dir is not None:
            self._check_user_templates(self.user_dir)

    def _user_directory(self, directory: str | Path) -> Path:
        """The user's template directory, resolved; a TemplateError if it is not a directory.

        Checked when the set is built, so a typo in `--templates` fails before any model
        loads rather than at the first render."""
        given = Path(directory)
        try:
            path = given.expanduser().resolve()
        except (OSError, RuntimeError):
            path = given
        if path.is_dir():
            return path
        problem = "is a file, not a directory" if path.exists() else "does not exist"
        raise TemplateError(
            f"the template directory {problem}",
            file=directory,
            fix="Pass a directory of .jinja files named like the bundled ones "
            f"({', '.join(self._bundled_names())}), or leave out --templates to use those.",
        )

    def _check_user_templates(self, directory: Path) -> None:
        """Read and compile every user template now: bad bytes or syntax name file and line."""
        from jinja2 import TemplateSyntaxError

        for path in sorted(directory.glob(f"*{self.suffix}")):
            source = _read_template(path)
            try:
                self.env.compile(source, path.name, str(path))
            except TemplateSyntaxError as err:
                raise TemplateError(
                    f"Jinja syntax error: {err.message}",
                    file=path,
                    line=err.lineno,
                    fix="Fix the template there (see the bundled ones in "
                    f"{self.bundled_dir} for working examples).",
                ) from None

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
        data = self._checked_data(name, variables)
        return self._prompt(name, *self._render_data(name, data, sorted(variables)), variables)

    def _checked_data(self, name: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The variables as template data, after checking the name and their shape."""
        if name.startswith("_") or "/" in name or "\\" in name:
            raise TemplateError(f"{name!r} is not a template name; use one of {self.names()}")
        if "conversation" in variables:
            _check_conversation(name, variables["conversation"])
        _check_options(name, variables)
        return {key: _to_data(value) for key, value in variables.items()}

    def _render_data(self, name: str, data: dict[str, Any], given: list[str]) -> tuple[str, Any]:
        """The body and module of template `name` rendered with `data` (already data)."""
        from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
        from jinja2.exceptions import SecurityError

        try:
            template = self.env.get_template(f"{name}{self.suffix}")
            module = template.make_module(data)
            return str(module), module
        except TemplateNotFound as err:
            if err.name == f"{name}{self.suffix}":
                raise self._not_found(name) from None
            raise self._render_error(name, err, given) from None
        except (TemplateSyntaxError, UndefinedError, SecurityError) as err:
            raise self._render_error(name, err, given) from None

    def _prompt(
        self, name: str, body: str, module: Any, variables: Mapping[str, Any]
    ) -> RenderedPrompt:
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

    def render_each(
        self, name: str, vary: str, values: Sequence[Any], **variables: Any
    ) -> list[RenderedPrompt]:
        """`[render(name, **variables, <vary>=value) for value in values]`, byte for byte, with
        one Jinja render for all the values where the template allows.

        The template is rendered once with a stand-in for `vary` that answers every field the
        template reads with a unique placeholder, and each value's fields (as data) are put in
        their place. That is exact when the template writes those fields verbatim and decides
        nothing on them, as the bundled ones do with a principle's question. It is checked by
        rendering in full the first time each value is used with a template: on any
        difference that template is rendered in full from then on. Each prompt records where
        its text starts to vary in its last message (`tail`), so a backend can tokenize the
        shared start once (`cai.backends.prompt_split`)."""
        if not prompt_split.SHARE_PREFIXES or name in self._render_whole or len(values) < 2:
            return [self.render(name, **variables, **{vary: value}) for value in values]
        data = self._checked_data(name, variables)
        stand_in = _StandIn()
        try:
            body, module = self._render_data(name, {**data, vary: stand_in}, [])
            shared = self._prompt(name, body, module, variables)
        except Exception:  # the template does more with the value than write its text
            self._render_whole.add(name)
            return [self.render(name, **variables, **{vary: value}) for value in values]
        fields = list(stand_in)
        out = []
        for value in values:
            value_data = _to_data(value)
            prompt = None
            if isinstance(value_data, dict):
                strings = [value_data.get(field) for field in fields]
                if all(isinstance(text, str) and text for text in strings):
                    prompt = self._substituted(name, body, module, shared, strings, variables)
            out.append(self._checked(name, vary, value, value_data, prompt, variables))
        return out

    def _substituted(
        self,
        name: str,
        body: str,
        module: Any,
        stand_in: RenderedPrompt,
        strings: list[str],
        variables: Mapping[str, Any],
    ) -> RenderedPrompt | None:
        """The prompt with each placeholder replaced by its string, and its `tail`; None if
        a placeholder reached anything but the messages (prefixes, labels)."""
        fields = [stand_in.assistant_prefix, stand_in.answer_prefix, *stand_in.labels]
        if any(_PLACEHOLDER_IN.search(text) for text in fields):
            return None
        text = _PLACEHOLDER_IN.sub(lambda m: strings[int(m[1])], body)
        if _PLACEHOLDER_KEY in text:  # a placeholder the template cut or changed
            return None
        prompt = self._prompt(name, text, module, variables)
        *head, last = stand_in.messages
        start = _PLACEHOLDER_IN.search(last["content"])
        if start is None or any(_PLACEHOLDER_IN.search(m["content"]) for m in head):
            return prompt
        shared = last["content"][: start.start()]
        content = prompt.messages[-1]["content"]
        if content.startswith(shared) and len(content) > len(shared):
            prompt.tail = content[len(shared) :]
        return prompt

    def _checked(
        self,
        name: str,
        vary: str,
        value: Any,
        value_data: Any,
        prompt: RenderedPrompt | None,
        variables: Mapping[str, Any],
    ) -> RenderedPrompt:
        """`prompt`, compared with the full render the first time `value` meets `name`."""
        key = (name, repr(value_data))
        if prompt is not None and key in self._render_checked:
            return prompt
        full = self.render(name, **variables, **{vary: value})
        if prompt is None:  # this value cannot be put in (a field that is not text)
            return full
        if prompt.model_dump(exclude={"tail"}) != full.model_dump(exclude={"tail"}):
            self._render_whole.add(name)
            return full
        if len(self._render_checked) >= 4096:
            self._render_checked.clear()
        self._render_checked.add(key)
        return prompt

    def _render_error(self, name: str, err: Exception, given: list[str]) -> TemplateError:
        """The TemplateError for a Jinja failure while rendering `name`, naming its file."""
        from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError

        path = self.source_path(name)
        if isinstance(err, TemplateSyntaxError):
            return TemplateError(
                f"template {name!r} has a syntax error: {err.message}",
                file=err.filename or path,
                line=err.lineno,
                fix="Fix the template there.",
            )
        if isinstance(err, TemplateNotFound):
            return TemplateError(
                f"template {name!r} includes missing template {err.name!r}",
                file=path,
                fix="Add that file next to it, or remove the include.",
            )
        if isinstance(err, UndefinedError):
            return TemplateError(
                f"template {name!r} needs a variable that was not given: {err.message}; "
                f"given: {', '.join(given) or 'none'}",
                file=path,
                fix="Use only the variables the bundled template of the same name uses.",
            )
        return TemplateError(
            f"template {name!r} tried an unsafe operation: {err}",
            file=path,
            fix="Templates run sandboxed: use variables, loops and filters only.",
        )


def _read_template(path: Path) -> str:
    """A template file as UTF-8 text; a TemplateError with the byte offset otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise TemplateError(
            f"cannot read the template: {err.strerror or err}",
            file=path,
            fix="Check that the file exists and is readable.",
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TemplateError(
            f"not UTF-8 text: byte 0x{raw[err.start]:02x} at byte offset {err.start}",
            file=path,
            line=raw.count(b"\n", 0, err.start) + 1,
            fix="Save the template as UTF-8.",
        ) from None


_PLACEHOLDER_KEY = secrets.token_hex(6)
_PLACEHOLDER = "\ue001cai-{}-" + _PLACEHOLDER_KEY + "\ue001"
"""Stands in for a string of the varying value in `render_each` (private-use characters,
which `as_data` leaves alone and no text of a template holds)."""
_PLACEHOLDER_IN = re.compile(re.escape(_PLACEHOLDER).replace(r"\{\}", r"(\d+)"))


class _StandIn(dict):
    """Template data that answers each field read from it with a placeholder numbered in
    the order of first reading (its keys, once rendered, are the fields the template read)."""

    def __missing__(self, key: str) -> str:
        self[key] = _PLACEHOLDER.format(len(self))
        return self[key]


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
