"""`cai agree` as one call: read both datasets, find the policy model, measure, write."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cai.human.agreement import AgreementReport, compute_agreement
from cai.human.bootstrap import BootstrapSettings
from cai.human.report import write_report
from cai.human.storage import read_preference_rows
from cai.judge.health import LengthUnit
from cai.paths import refuse_output_onto_input, require_directory


def recorded_policy_models(dataset: str | Path) -> list[str]:
    """The policy models a labeling run recorded for this dataset: `summary.json` in the run
    directory that holds it (cai run / cai judge write the dataset there). [] when none."""
    summary = Path(dataset).parent / "summary.json"
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
        models = data["stages"]["preferences"]["policy_models"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [m for m in models if isinstance(m, str)] if isinstance(models, list) else []


def audit(
    ai: str | Path,
    human: str | Path,
    out: str | Path,
    *,
    n_bins: int = 5,
    bootstrap: BootstrapSettings | None = None,
    length_unit: LengthUnit = "chars",
    policy_models: Sequence[str] = (),
) -> tuple[AgreementReport, dict[str, Path]]:
    """The agreement report of an AI dataset against human labels, written to `out`.
    Without `policy_models`, those recorded beside the AI dataset are used."""
    refuse_output_onto_input({"--out": out}, {"--ai": ai, "--human": human})
    require_directory(out)
    ai_rows, human_rows = read_preference_rows(ai), read_preference_rows(human)
    policies = list(policy_models) or recorded_policy_models(ai)
    report = compute_agreement(
        ai_rows,
        human_rows,
        n_bins=n_bins,
        names=(f"AI dataset {ai}", f"human dataset {human}"),
        bootstrap=bootstrap,
        length_unit=length_unit,
        policy_models=policies,
    )
    return report, write_report(report, out)
