"""The commented starter file that `cai constitution new` writes (it validates as is)."""

from __future__ import annotations

import re

from cai.constitution.models import ID_PATTERN
from cai.errors import InputError

_STARTER = """\
# {name}: a constitution for cai.
# Check it with:   cai constitution validate {filename}
# See it resolved: cai constitution show {filename}
# Guide: docs/constitutions.md

name: {name}
version: "0.1"
description: >
  What this constitution is for, in a sentence or two.
{extends_block}
# Optional: the system prompt the judge sees when comparing responses.
judge_system_prompt: >
  You are a careful, fair judge. You compare assistant responses against one principle
  and answer with a single letter.

# Optional: settings the stages use unless a command overrides them.
defaults:
  principles_per_judgment: 2   # principles sampled and ensembled per pairwise judgment
  weighted_sampling: false     # true: sample principles in proportion to `weight`
  critique_rounds: 1           # SL-CAI critique -> revision rounds per response

principles:
  # Each principle is phrased three ways, one per use:
  - id: helpful-and-kind                 # letters, digits, '-', '_', '.'; unique
    tags: [helpful, harmless]            # free labels, for your own filtering
    weight: 1.0                          # relative chance when sampling by weight
    critique_request: >                  # SL-CAI: what is wrong with a response?
      Point out how the response could be more helpful, and anything unkind in it.
    revision_request: >                  # SL-CAI: rewrite to fix it
      Rewrite the response so it is more helpful and kind.
    comparison_question: >               # preference labels: which of two is better?
      Which response is more helpful and kind?
    # Optional few-shot examples shown before the critique / revision prompts.
    examples:
      - prompt: "How do I boil an egg?"
        response: "Just boil it."
        critique: "The response gives no time, no steps and no tips, so it is not useful."
        revision: >
          Put the egg in a pot of cold water, bring it to a boil, then simmer for 7 minutes
          for a firm yolk. Cool it in cold water before peeling.
"""

_EXTENDS = """
# Start from another constitution (a bundled name or a path relative to this file).
# Principles with the same id override only the fields you give; `remove` drops some.
extends: {extends}
# remove: [clarity]
"""


def starter_constitution(name: str, filename: str, extends: str | None = None) -> str:
    """The text of a commented starter constitution named `name`."""
    if not re.match(ID_PATTERN, name):
        raise InputError(
            f"invalid constitution name {name!r}: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    extends_block = _EXTENDS.format(extends=extends) if extends else ""
    return _STARTER.format(name=name, filename=filename, extends_block=extends_block)
