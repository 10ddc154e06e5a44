"""Tokenizing a vLLM server's prompts on the client, where its checkpoint is on this machine.

Scoring through `/tokenize` costs a second request per prompt (the chat template applied by
the server, then the prompt's ids sent back to it). When every server runs on this machine
and serves a local checkpoint directory, the client loads that checkpoint's tokenizer and
builds the ids itself with the same code as the offline engine (`batch_request_prompt_ids`:
the same ids, the same guard against control tokens in contents, each shared beginning of a
judge's prompts tokenized once), so one request per prompt goes out and the labels are the
offline engine's. A remote server, or `client_tokenizer: server`, keeps `/tokenize`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from cai.backends.base import BackendError, ChoiceRequest
from cai.backends.tokens import batch_request_prompt_ids, choice_token_ids, hf_encoder

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
CLIENT_TOKENIZER_CHOICES = ("auto", "server")


class ClientTokenizer:
    """A loaded tokenizer with the two questions a scorer asks of it."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._encode = hf_encoder(tokenizer)
        self._choices: dict[tuple[str, ...], list[int]] = {}

    def prompt_ids(self, requests: Sequence[ChoiceRequest]) -> list[list[int]]:
        return batch_request_prompt_ids(self.tokenizer, requests)

    def choice_ids(self, choices: Sequence[str]) -> list[int]:
        key = tuple(choices)
        if key not in self._choices:
            self._choices[key] = choice_token_ids(self._encode, choices)
        return self._choices[key]


def is_local(base_urls: list[str]) -> bool:
    return {httpx.URL(url).host for url in base_urls} <= _LOOPBACK


def load_client_tokenizer(
    setting: str, roots: set[str], base_urls: list[str]
) -> ClientTokenizer | None:
    """The tokenizer of the servers' checkpoint when `setting` is "auto" and it is here."""
    if setting not in CLIENT_TOKENIZER_CHOICES:
        raise BackendError(
            f"client_tokenizer is {setting!r}",
            key="client_tokenizer",
            fix="Use 'auto' (tokenize here when the served checkpoint is on this machine) "
            "or 'server' (always ask the server's /tokenize)",
        )
    if setting == "server" or len(roots) != 1 or not is_local(base_urls):
        return None
    root = next(iter(roots))
    if not Path(root).is_dir():
        return None
    from transformers import AutoTokenizer

    try:
        return ClientTokenizer(AutoTokenizer.from_pretrained(root))
    except (OSError, ValueError) as err:  # no tokenizer files there: the server's is used
        log.info("tokenizing through the server: cannot load the tokenizer of %s (%s)", root, err)
        return None
