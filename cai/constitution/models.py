"""The typed shape of a constitution: principles, few-shot examples, defaults.

Two layers: `*File` models describe what one YAML file may say (a file that extends another
may override only some fields of a principle), and `Principle` / `Constitution` describe the
resolved result that the rest of `cai` uses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _non_empty(value: str) -> str:
    # Surrounding whitespace (folded YAML blocks end with a newline) is never meaningful.
    value = value.strip()
    if not value:
        raise ValueError("is empty")
    return value


def _version_text(value: Any) -> Any:
    # `version: 1.0` in YAML is a float; a version is text, so accept plain numbers as written.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, AfterValidator(_non_empty)]
"""A string that must contain something other than whitespace (stored stripped)."""

PrincipleId = Annotated[str, Field(pattern=ID_PATTERN)]
Version = Annotated[str, BeforeValidator(_version_text), AfterValidator(_non_empty)]


class FewShotExample(BaseModel):
    """A worked example shown to the model before it critiques, revises or compares."""

    model_config = ConfigDict(extra="forbid")

    prompt: Text
    response: Text
    critique: Text | None = None
    revision: Text | None = None


Aggregation = Literal["mean", "tiered"]
"""How a judgment combines its principles: their average, or tier by tier (see the guide)."""


class PrincipleText(BaseModel):
    """A principle's id and its phrasings, one per way `cai` uses it (each optional)."""

    model_config = ConfigDict(extra="forbid")

    id: PrincipleId
    critique_request: Text | None = None
    """Asks the model to point out how a response falls short of the principle (SL-CAI)."""
    revision_request: Text | None = None
    """Asks the model to rewrite the response so it follows the principle (SL-CAI)."""
    comparison_question: Text | None = None
    """Asks which of several responses better follows the principle (preference labels)."""
    assessment_question: Text | None = None
    """Asks whether one response follows the principle (pointwise judge rewards)."""


class Principle(PrincipleText):
    """One rule of the constitution, phrased for each way `cai` uses it.

    A principle may be written for one use only: the judge needs `comparison_question`,
    revisions need `critique_request` and `revision_request` (always together), pointwise
    assessment uses `assessment_question` (or falls back to the comparison question). Each
    command samples only from the principles that carry what it needs (`cai.constitution.usage`).
    """

    weight: float = Field(1.0, ge=0.0)
    """Relative chance of being sampled when sampling by weight; 0 disables it there."""
    tier: int | None = Field(None, ge=1)
    """Priority under `aggregation: tiered` (1 = highest); unset principles form the last tier."""
    tags: list[Text] = Field(default_factory=list)
    examples: list[FewShotExample] = Field(default_factory=list)


class ConstitutionDefaults(BaseModel):
    """Settings a constitution suggests for the stages that use it (commands may override)."""

    model_config = ConfigDict(extra="forbid")

    principles_per_judgment: int = Field(1, ge=1)
    """How many sampled principles each pairwise judgment is ensembled over."""
    weighted_sampling: bool = False
    """Sample principles by `weight` instead of uniformly."""
    critique_rounds: int = Field(1, ge=1)
    """Critique -> revision rounds per response in SL-CAI, each with its own principle."""
    aggregation: Aggregation = "mean"
    """How a pairwise judgment combines its principles: `mean` or `tiered`."""
    tier_margin: float = Field(0.1, ge=0.0, lt=0.5)
    """Under `tiered`: a tier decides when its debiased |p - 0.5| is at least this."""


OPTIONAL_PRINCIPLE_FIELDS = (
    "critique_request",
    "revision_request",
    "comparison_question",
    "assessment_question",
    "tier",
)
"""Principle fields left out of the content hash when unset, so that adding them to cai did
not change the hash (and so the principle sampling and resume fingerprints) of any file."""

NEW_DEFAULTS = {"aggregation": "mean", "tier_margin": 0.1}
"""Defaults fields left out of the content hash at their default value, for the same reason."""


def _principle_data(principle: Principle) -> dict[str, Any]:
    data = principle.model_dump(mode="json")
    for name in OPTIONAL_PRINCIPLE_FIELDS:
        if data.get(name) is None:
            data.pop(name, None)
    return data


def _defaults_data(defaults: ConstitutionDefaults) -> dict[str, Any]:
    data = defaults.model_dump(mode="json")
    for name, value in NEW_DEFAULTS.items():
        if data.get(name) == value:
            data.pop(name)
    return data


class Constitution(BaseModel):
    """A resolved constitution (after `extends`), with the hash that identifies its content."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = "1"
    description: str = ""
    principles: list[Principle]
    judge_system_prompt: str | None = None
    defaults: ConstitutionDefaults = Field(default_factory=ConstitutionDefaults)
    content_hash: str = ""
    source_path: Path | None = None
    extends: list[str] = Field(default_factory=list)
    """The files this one was built on, nearest parent first (for display only)."""

    def principle(self, principle_id: str) -> Principle:
        """The principle with this id; KeyError naming the valid ids otherwise."""
        for item in self.principles:
            if item.id == principle_id:
                return item
        raise KeyError(
            f"no principle `{principle_id}` in constitution {self.name!r}; "
            f"its principles are: {', '.join(p.id for p in self.principles)}"
        )

    @property
    def principle_ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def canonical(self) -> dict[str, Any]:
        """The content that defines the constitution (what the hash covers), as plain data."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "judge_system_prompt": self.judge_system_prompt,
            "defaults": _defaults_data(self.defaults),
            "principles": [_principle_data(p) for p in self.principles],
        }

    def compute_hash(self) -> str:
        blob = json.dumps(
            self.canonical(), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def to_yaml(self) -> str:
        """The resolved constitution as a self-contained YAML file (no `extends`)."""
        import yaml

        class _Dumper(yaml.SafeDumper):
            pass

        def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
            # Long or multi-line text as a folded / literal block, as people write it by hand.
            if "\n" in value:
                return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
            if len(value) > 60 and value == value.strip() and "  " not in value:
                return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
            return dumper.represent_str(value)

        _Dumper.add_representer(str, _text)
        return yaml.dump(
            self.canonical(),
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            width=92,
            default_flow_style=False,
        )


# --- what one file may contain -------------------------------------------------------------


class PrincipleFile(PrincipleText):
    """A principle as written in a file; fields may be left out when overriding a parent's."""

    weight: float | None = Field(None, ge=0.0)
    tier: int | None = Field(None, ge=1)
    tags: list[Text] | None = None
    examples: list[FewShotExample] | None = None


class DefaultsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principles_per_judgment: int | None = Field(None, ge=1)
    weighted_sampling: bool | None = None
    critique_rounds: int | None = Field(None, ge=1)
    aggregation: Aggregation | None = None
    tier_margin: float | None = Field(None, ge=0.0, lt=0.5)


class ConstitutionFile(BaseModel):
    """The top level of a constitution YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: Text
    version: Version | None = None
    description: str | None = None
    extends: Text | None = None
    """A path (relative to this file) or a bundled name such as `default`."""
    remove: list[PrincipleId] = Field(default_factory=list)
    """Ids of inherited principles to drop."""
    judge_system_prompt: Text | None = None
    defaults: DefaultsFile | None = None
    principles: list[PrincipleFile] = Field(default_factory=list)


PRINCIPLE_TEXT_FIELDS = (
    "critique_request",
    "revision_request",
    "comparison_question",
    "assessment_question",
)
"""The phrasings a principle may carry; a new principle needs at least one use of them."""
