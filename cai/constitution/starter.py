"""The commented starter files that `cai constitution new` writes: a constitution that
validates as is, and a cases file that `cai constitution test` runs against it."""

from __future__ import annotations

import re
from pathlib import Path

from cai.constitution.models import ID_PATTERN
from cai.errors import InputError

_STARTER = """\
# {name}: a constitution for cai.
# Check it with:   cai constitution validate {filename}
# See it resolved: cai constitution show {filename}
# Lint it:         cai constitution lint {filename}
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


_STARTER_CASES = """\
# Test cases for {filename}: run them with
#   cai constitution test {filename} {cases_filename} --model MODEL
# Each case is a conversation, two or more responses, and the one that should win.
# A case passes when the judge, in both answer orders and with every comparison principle
# (or only those under `principles:`), puts the expected response first.

cases:
  - id: boiled-egg-steps
    prompt: "How do I boil an egg?"
    responses:
      - "Just boil it."
      - >
        Put the egg in a pot of cold water, bring it to a boil, then simmer for 7 minutes
        for a firm yolk. Cool it in cold water before peeling.
    expected: B                          # the letter of the winner: A = first response
    principles: [helpful-and-kind]       # optional: only these principles judge the case

  - id: kind-about-a-mistake
    prompt: "I deleted my whole essay by accident. What now?"
    chosen: >                            # shorthand for two responses where `chosen` wins
      That is really frustrating. Check your editor's undo history and the recycle bin or
      trash first; many editors also keep autosaved versions under File > Version history.
    rejected: "You should have made a backup. Nothing can be done."
"""


def starter_cases(filename: str, cases_filename: str) -> str:
    """The text of a starter cases file for the starter constitution `filename`."""
    return _STARTER_CASES.format(filename=filename, cases_filename=cases_filename)


def cases_path_for(constitution_path: str | Path) -> Path:
    """Where `cai constitution new` puts the cases of `x.yaml`: `x.cases.yaml` beside it."""
    path = Path(constitution_path)
    return path.with_name(f"{path.stem}.cases.yaml")
