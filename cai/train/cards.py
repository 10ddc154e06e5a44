"""The model card (README.md) every trainer writes beside the model it saves.

A card says what the model was aligned with: the base model and its license, the method
and its main settings, the data (the preference dataset, its own card, its size and how
much of it is AI or human labelled), the constitution (name, version, text), the judge
model, the final metrics and, for `cai loop`, the round table. It is written to be
published (`--push-to-hub`), so it names no local path: models and data appear by their
public name (a hub id, an embedded model's name) or by their file name, and a last pass
turns any absolute path left in free text into its last part.

The same facts go to `cai_training.json` beside the card (local, not pushed), for tools.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

CARD = "README.md"
FACTS = "cai_training.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_HUB_CACHE_DIR = re.compile(r"(?:datasets|models)--([^/]+?)--([^/]+)")
_PART = r"[^\s/`'\"|()<>\[\]]+"
_ABSOLUTE_PATH = re.compile(rf"(?<![\w:/.~-])(?:~/|/)(?:{_PART}/)*({_PART})/?")


class DataFacts(BaseModel):
    """A training data set as the card shows it (no local path)."""

    name: str
    """Its hub id, or its file / directory name."""
    kind: str = "preference pairs"
    rows: int | None = None
    sources: dict[str, int] = Field(default_factory=dict)
    """Rows by `source` (ai / human): the AI/human mix."""
    judge_models: list[str] = Field(default_factory=list)
    constitutions: list[str] = Field(default_factory=list)
    """`name (sha256 prefix)` of each constitution its labels were judged against."""
    card_title: str | None = None
    card_lines: list[str] = Field(default_factory=list)
    """The provenance section of the dataset's own card."""


class ConstitutionFacts(BaseModel):
    name: str
    version: str | None = None
    content_hash: str | None = None
    link: str | None = None
    principles: list[tuple[str, str]] = Field(default_factory=list)
    """(id, its judging question) for each principle: the text the model was aligned with."""


class ModelCard(BaseModel):
    title: str
    method: str
    base_model: str
    license: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    data: list[DataFacts] = Field(default_factory=list)
    constitution: ConstitutionFacts | None = None
    judge_model: str | None = None
    reward_models: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    steps: int | None = None
    processes: int = 1
    resumed_from: str | None = None
    rounds_table: str | None = None
    """The loop's per-round Markdown table (`cai.loop.report.markdown_table`)."""
    notes: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    def front_matter(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"library_name": "transformers"}
        if self.license:
            meta["license"] = self.license
        if _HUB_ID.match(self.base_model):
            meta["base_model"] = self.base_model
        hub_data = [d.name for d in self.data if _HUB_ID.match(d.name)]
        if hub_data:
            meta["datasets"] = hub_data
        meta["tags"] = ["cai", "constitutional-ai", *self.tags]
        return meta

    def render(self) -> str:
        meta = yaml.safe_dump(self.front_matter(), sort_keys=False).strip()
        lines = ["---", meta, "---", f"# {self.title}", ""]
        lines += [
            f"Trained with `cai` (Constitutional AI / RLAIF) by **{self.method}** from "
            f"`{self.base_model}`.",
            "",
            "## Base model",
            "",
            f"- model: `{self.base_model}`",
            f"- license (copied from the base model): {self.license or 'not stated'}",
            "",
            "## Method and main settings",
            "",
            f"- method: {self.method}",
            *self._run_lines(),
            *(f"- {key}: `{_shown(value)}`" for key, value in self.settings.items()),
            *(f"- {key}: `{_shown(value)}`" for key, value in self.notes.items()),
            "- all settings: `config.resolved.yaml` beside this card",
            "",
        ]
        lines += _data_lines(self.data, self.reward_models)
        lines += _alignment_lines(self.constitution, self.judge_model, self.data)
        lines += ["## Final metrics", ""]
        if self.metrics:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.6g} |" for k, v in self.metrics.items()]
        else:
            lines.append("none logged")
        lines.append("")
        if self.rounds_table:
            lines += ["## Loop rounds", "", self.rounds_table.rstrip(), ""]
        return scrub_paths("\n".join(lines) + "\n")

    def _run_lines(self) -> list[str]:
        if self.steps is None:
            return []
        resumed = Path(self.resumed_from).name if self.resumed_from else "no checkpoint"
        return [
            f"- trained for {self.steps} steps on {self.processes} process(es); "
            f"resumed from: {resumed}"
        ]


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("`", "'")


def _data_lines(data: list[DataFacts], reward_models: list[str]) -> list[str]:
    lines = ["## Data", ""]
    if not data:
        lines.append("- no dataset recorded")
    for item in data:
        size = "unknown size" if item.rows is None else f"{item.rows} rows"
        lines.append(f"- {item.kind}: `{item.name}` ({size})")
        if item.sources:
            total = sum(item.sources.values())
            mix = ", ".join(
                f"{name} {count} ({count / total:.0%})" for name, count in item.sources.items()
            )
            lines.append(f"  - AI/human mix (by `source`): {mix}")
        if item.card_title:
            lines.append(f'  - its dataset card: "{item.card_title}"')
            lines += [f"    {line}" for line in item.card_lines]
    for model in reward_models:
        lines.append(f"- reward model: `{model}`")
    return [*lines, ""]


def _alignment_lines(
    constitution: ConstitutionFacts | None, judge: str | None, data: list[DataFacts]
) -> list[str]:
    lines = ["## Constitution and judge", ""]
    judges = [judge] if judge else sorted({m for d in data for m in d.judge_models})
    lines.append(f"- judge model: {', '.join(f'`{m}`' for m in judges) or 'none recorded'}")
    if constitution is None:
        named = sorted({c for d in data for c in d.constitutions})
        lines.append(f"- constitution: {', '.join(named) or 'none recorded'}")
        return [*lines, ""]
    version = f", version {constitution.version}" if constitution.version else ""
    digest = f" (sha256 `{constitution.content_hash[:12]}`)" if constitution.content_hash else ""
    lines.append(f"- constitution: `{constitution.name}`{version}{digest}")
    if constitution.link:
        lines.append(f"- its text: {constitution.link}")
    if constitution.principles:
        lines += ["", "Principles (the judge's question for each):", ""]
        lines += [f"- **{pid}**: {' '.join(text.split())}" for pid, text in constitution.principles]
    return [*lines, ""]


def scrub_paths(text: str) -> str:
    """Every absolute (or ~) path in `text` replaced by its last part."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)


# ---- facts from the files --------------------------------------------------------------------
def _front_matter(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        data = yaml.safe_load(text[3:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def public_model_name(model: str | Path | None) -> str:
    """A model's public name: a hub id as is; an embedded model's name; a hub cache
    snapshot's repo id; a model cai trained (its card names its base) as
    `<dir> (from <base>)`; any other directory by its name."""
    if model is None:
        return "unknown"
    text = str(model)
    path = Path(text).expanduser()
    if not path.is_dir():
        return scrub_paths(text)
    manifest = _json(path / "cai_model.json")
    if manifest.get("name"):
        return str(manifest["name"])
    cached = _HUB_CACHE_DIR.search(path.resolve().as_posix())
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}"
    base = _json(path / FACTS).get("base_model_name")
    name = path.name if path.name not in ("final", "policy") else f"{path.parent.name}/{path.name}"
    return f"{name} (trained from {base})" if base else name


def base_license(model: str | Path) -> str | None:
    """The base model's license: its card's `license` field, else the embedded model's
    manifest, else its config's `license` (lower-cased, as the Hub spells licenses)."""
    path = Path(str(model)).expanduser()
    if not path.is_dir():
        return None
    for found in (
        _front_matter(path / CARD).get("license"),
        _json(path / "cai_model.json").get("license"),
        _json(path / "config.json").get("license"),
    ):
        if found:
            return str(found).lower()
    return None


def _card_file(source: Path) -> Path | None:
    for candidate in (source / CARD, source.with_name(source.name + ".README.md")):
        if candidate.is_file():
            return candidate
    return None


def _card_summary(card: Path) -> tuple[str | None, list[str]]:
    """The title and the provenance lines of a dataset card."""
    text = card.read_text(encoding="utf-8", errors="replace")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    lines: list[str] = []
    keep = False
    for line in text.splitlines():
        if line.startswith("## "):
            keep = line.strip() == "## Provenance"
        elif keep and line.startswith("- ") and len(line) < 300:
            lines.append(line)
    return title, lines


def dataset_facts(
    source: str | Path, kind: str = "preference pairs", split: str | None = None
) -> DataFacts:
    """Size, AI/human mix, judge models, constitutions and card of a dataset cai reads."""
    from cai.tables import is_hub_id, stream_rows

    text = str(source)
    if is_hub_id(text):
        return DataFacts(name=text, kind=kind)
    path = Path(text)
    sources: Counter[str] = Counter()
    judges: set[str] = set()
    constitutions: set[str] = set()
    rows = 0
    for row in stream_rows(path, split):
        rows += 1
        sources[str(row.get("source") or "ai")] += 1
        if row.get("judge_model"):
            judges.add(public_model_name(row["judge_model"]))
        if row.get("constitution_name"):
            digest = str(row.get("constitution_hash") or "")[:12]
            constitutions.add(
                f"{row['constitution_name']}" + (f" (sha256 {digest})" if digest else "")
            )
    card = _card_file(path)
    title, lines = _card_summary(card) if card else (None, [])
    return DataFacts(
        name=path.name,
        kind=kind,
        rows=rows,
        sources=dict(sorted(sources.items())) if kind != "prompts" else {},
        judge_models=sorted(judges),
        constitutions=sorted(constitutions),
        card_title=title,
        card_lines=lines,
    )


def constitution_facts(name_or_path: str | Path) -> ConstitutionFacts:
    """Name, version, hash and principles of a constitution (bundled name or file)."""
    from cai.constitution import load_constitution

    constitution = load_constitution(name_or_path)
    principles = [
        (p.id, str(p.comparison_question or p.assessment_question or p.critique_request or ""))
        for p in constitution.principles
    ]
    return ConstitutionFacts(
        name=constitution.name,
        version=constitution.version,
        content_hash=constitution.content_hash,
        principles=principles,
    )


def dataset_constitution(data: list[DataFacts]) -> ConstitutionFacts | None:
    """The constitution a dataset's labels were judged against, when it is one bundled
    with cai whose content hash matches (so its text can be shown); else None."""
    from cai.resources import bundled_constitution_names

    named = {c for d in data for c in d.constitutions}
    if len(named) != 1:
        return None
    label = named.pop()
    name, _, digest = label.partition(" (sha256 ")
    if name not in bundled_constitution_names():
        return None
    facts = constitution_facts(name)
    if digest and not (facts.content_hash or "").startswith(digest.rstrip(")")):
        return None
    return facts


COMMON_SETTINGS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "warmup_ratio",
    "seed",
    "dtype",
)
"""The settings of `TrainCommon` every TRL trainer's card shows."""


class CardInputs(BaseModel):
    """What a trainer knows about its run beyond its config, for `build_card`."""

    method: str
    settings: tuple[str, ...] = ()
    """Its own main settings keys, shown after COMMON_SETTINGS."""
    data: list[DataFacts] = Field(default_factory=list)
    judge_model: str | None = None
    constitution: ConstitutionFacts | None = None
    reward_models: list[str] = Field(default_factory=list)
    notes: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    common: bool = True
    """Whether COMMON_SETTINGS apply (the TRL trainers; not PPO's own config)."""


def training_mode(config: BaseModel) -> str:
    lora = getattr(config, "lora", None)
    if lora is None or not lora.enabled:
        return "full model"
    merged = "merged into the weights" if lora.merge else "adapter only"
    return f"LoRA (r={lora.r}, alpha={lora.alpha}, {merged})"


def build_card(
    config: BaseModel,
    title: str,
    inputs: CardInputs,
    metrics: dict[str, float],
    *,
    steps: int | None = None,
    processes: int = 1,
    resumed_from: str | None = None,
) -> ModelCard:
    """The card of a finished run from its config (which names the base model) and facts."""
    model = str(config.model)  # type: ignore[attr-defined]  # every trainer config has one
    keys = (*COMMON_SETTINGS, *inputs.settings) if inputs.common else inputs.settings
    constitution = inputs.constitution or dataset_constitution(inputs.data)
    return ModelCard(
        title=title,
        method=inputs.method,
        base_model=public_model_name(model),
        license=base_license(model),
        settings={"training": training_mode(config), **main_settings(config, keys)},
        data=inputs.data,
        constitution=constitution,
        judge_model=inputs.judge_model,
        reward_models=inputs.reward_models,
        metrics=metrics,
        steps=steps,
        processes=processes,
        resumed_from=resumed_from,
        notes=inputs.notes,
        tags=inputs.tags,
    )


def main_settings(config: BaseModel, keys: tuple[str, ...]) -> dict[str, Any]:
    """The named settings of a trainer config (dotted keys reach into sections)."""
    data = config.model_dump(mode="json")
    picked: dict[str, Any] = {}
    for key in keys:
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            picked[key] = value
    return picked


def write_model_card(output_dir: str | Path, card: ModelCard, facts: dict[str, Any]) -> Path:
    """README.md (the card) and cai_training.json (the same facts, for tools) in output_dir;
    a file whose content would not change is left as it is (a rerun touches nothing)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        **facts,
        "base_model_name": card.base_model,
        "license": card.license,
        "final_metrics": card.metrics,
    }
    _write_changed(out / FACTS, json.dumps(record, indent=2, default=str) + "\n")
    return _write_changed(out / CARD, card.render())


def _write_changed(path: Path, text: str) -> Path:
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    path.write_text(text, encoding="utf-8")
    return path
