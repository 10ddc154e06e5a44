"""What the engines in this process (vLLM offline, transformers) share: the model path check,
and chat and raw text turned into token ids here (`cai.backends.tokens`), so both engines
see the identical sequence and only generate from ids their own way.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from pathlib import Path
from typing import Any

from cai.backends.base import Backend, BackendError, Generation, GenerationParams, Message
from cai.backends.tokens import Encode, chat_prompt_ids, text_prompt_ids


def check_model_path(model: str) -> None:
    """A clear error for a model that is neither a model directory nor a hub id.

    vLLM's own error for a bad path is a long traceback about the hub; a hub id
    ("org/name") is passed through for machines that have one.
    """
    path = Path(model).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return
    if not path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not model.startswith("."):
        return
    raise BackendError(
        f"Model path {model!r} is not a model directory ("
        + ("no config.json there" if path.exists() else "it does not exist")
        + "). Pass a directory saved with save_pretrained, or an embedded model name such "
        "as 'smollm2-135m-instruct' (see `cai models list`)."
    )


class LocalBackend(Backend):
    """A backend whose engine runs in this process and takes prompts as token ids."""

    tokenizer: Any
    _encode: Encode

    @abstractmethod
    def _generate_ids(self, prompts: list[list[int]], params: GenerationParams) -> list[Generation]:
        """One Generation per prompt of token ids, in order."""

    def generate_chat(
        self, conversations: list[list[Message]], params: GenerationParams
    ) -> list[Generation]:
        prompts = [chat_prompt_ids(self.tokenizer, self._encode, c) for c in conversations]
        return self._generate_ids(prompts, params)

    def generate_text(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        return self._generate_ids([text_prompt_ids(self._encode, p) for p in prompts], params)
