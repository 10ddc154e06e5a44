"""`cai import-human`, `cai agree`, `cai route export|import`, `cai mix`: human labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cai.errors import InputError
from cai.paths import refuse_output_onto_input

AiDatasetOpt = Annotated[Path, typer.Option(help="AI-labelled preference dataset.")]
HumanDatasetOpt = Annotated[Path, typer.Option(help="Human-labelled preference dataset.")]
RaterIdOpt = Annotated[str | None, typer.Option(help="Rater id for rows that name none.")]
StrictOpt = Annotated[bool, typer.Option(help="Write nothing when any row is malformed.")]


def _import_report_path(out: Path) -> Path:
    return out.parent / f"{out.name}.import-report.json"


def _refuse_import_onto(out: Path, inputs: dict[str, Path]) -> None:
    """An import writes `out` and its report beside it; neither may be the file it reads."""
    outputs = {"--out": out, "--out's import report": _import_report_path(out)}
    refuse_output_onto_input(outputs, inputs, replaces=True)


def _write_import(rows, report, out: Path, strict: bool) -> None:
    """Print the summary, write the JSON report beside `out`, then the rows: nothing is
    written when no row was importable (an error) or, with --strict, when any row was bad."""
    from cai.tables import write_table

    typer.echo(report.summary())
    sidecar = _import_report_path(out)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    report.require_rows(f"Every row and why it was not imported: {sidecar}.")
    if strict and report.errors:
        typer.echo(
            f"not written: {len(report.errors)} malformed row(s) and --strict; see {sidecar}"
        )
        raise typer.Exit(1)
    write_table(rows, out)
    typer.echo(f"wrote {len(rows)} human {report.row_kind} rows to {out} (report: {sidecar})")


def _parse_weights(values: list[str]) -> dict[str, float] | None:
    if not values:
        return None
    weights = {}
    for value in values:
        source, sep, number = value.partition("=")
        try:
            weights[source.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(
                f"cannot read {value!r}", key="--weight", fix="Write SOURCE=WEIGHT, e.g. human=2."
            )
    return weights


def _mix_config(human_fraction: float | None, weight: list[str], seed: int):
    from pydantic import ValidationError

    from cai.human.mixing import MixConfig

    try:
        return MixConfig(human_fraction=human_fraction, weights=_parse_weights(weight), seed=seed)
    except ValidationError as err:
        message = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise InputError(message, key="--weight/--human-fraction") from None


def register(app: typer.Typer) -> None:
    @app.command("import-human")
    def import_human_cmd(
        source: Path = typer.Argument(
            ..., help="Labels: .jsonl, .csv, .parquet or a save_to_disk dir."
        ),
        out: Path = typer.Option(
            ..., "--out", "-o", help="Preference dataset to write (dir, .parquet, .jsonl)."
        ),
        format: str = typer.Option("auto", help="auto | trl | hh | table | single"),
        rater_id: RaterIdOpt = None,
        strict: StrictOpt = False,
    ) -> None:
        """Import human labels: pairs (TRL, HH-RLHF, a table) or thumbs up/down (single)."""
        from cai.human.imports import import_human

        if format not in ("auto", "trl", "hh", "table", "single"):
            raise InputError(
                f"unknown format {format!r}",
                key="--format",
                fix="Use auto, trl, hh, table or single.",
            )
        _refuse_import_onto(out, {"SOURCE": source})
        rows, report = import_human(source, format=format, rater_id=rater_id, progress=True)
        _write_import(rows, report, out, strict)

    @app.command("agree")
    def agree_cmd(
        ai: AiDatasetOpt,
        human: HumanDatasetOpt,
        out: Path = typer.Option(..., "--out", "-o", help="Directory for the report."),
        bins: int = typer.Option(5, min=1, help="Calibration bins over confidence 0.5-1.0."),
        bootstrap: int = typer.Option(
            1000, "--bootstrap", min=0, help="Bootstrap resamples for intervals (0: none)."
        ),
        seed: int = typer.Option(0, help="Seed of the bootstrap resampling."),
        length_unit: str = typer.Option("chars", help="Length bias measured in chars | words."),
        policy_model: list[str] = typer.Option(
            [],
            help="Model that wrote the responses (default: the run's summary.json beside --ai).",
        ),
    ) -> None:
        """How well the AI judge agrees with people: accuracy and kappa with intervals,
        calibration, position and length bias, self-preference, per principle."""
        from cai.human.audit import audit
        from cai.human.bootstrap import BootstrapSettings

        if length_unit not in ("chars", "words"):
            raise InputError(
                f"unknown length unit {length_unit!r}",
                key="--length-unit",
                fix="Use chars or words.",
            )
        report, paths = audit(
            ai,
            human,
            out,
            n_bins=bins,
            bootstrap=BootstrapSettings(n_resamples=bootstrap, seed=seed),
            length_unit=length_unit,
            policy_models=policy_model,
        )
        acc = "n/a" if report.accuracy is None else f"{report.accuracy:.3f}"
        ci = report.accuracy_ci
        ci_text = f" [{ci.low:.3f}, {ci.high:.3f}]" if ci else ""
        typer.echo(
            f"{report.n_pairs} shared pairs, accuracy {acc}{ci_text}; report: {paths['html']}"
        )
        sp = report.self_preference
        if sp is not None and sp.same_family:
            families = ", ".join(sp.shared_families)
            typer.echo(f"warning: judge and policy share the model family {families}")

    @app.command("mix")
    def mix_cmd(
        ai: AiDatasetOpt,
        human: HumanDatasetOpt,
        out: Path = typer.Option(..., "--out", "-o", help="Mixed dataset to write."),
        human_fraction: float | None = typer.Option(
            None, min=0.0, max=1.0, help="Share of human rows."
        ),
        weight: list[str] = typer.Option([], help="Per-source weight, e.g. --weight human=2."),
        seed: int = typer.Option(0),
    ) -> None:
        """Mix AI and human preferences: dedupe pairs, human labels override AI ones."""
        from cai.human.mixing import mix
        from cai.human.storage import read_preference_rows
        from cai.tables import write_table

        refuse_output_onto_input({"--out": out}, {"--ai": ai, "--human": human}, replaces=True)
        config = _mix_config(human_fraction, weight, seed)
        ai_rows, human_rows = read_preference_rows(ai), read_preference_rows(human)
        rows, report = mix(ai_rows, human_rows, config, names=(str(ai), str(human)))
        write_table(rows, out)
        typer.echo(report.summary())
        typer.echo(f"wrote {report.n_output} rows to {out}")

    route = typer.Typer(
        help="Route the pairs the AI judge is least sure of to people.", no_args_is_help=True
    )
    app.add_typer(route, name="route")

    @route.command("export")
    def route_export_cmd(
        ai: AiDatasetOpt,
        out: Path = typer.Option(
            ..., "--out", "-o", help="Labelling sheet to write (.jsonl or .csv)."
        ),
        budget: int = typer.Option(..., min=1, help="How many pairs people will label."),
        exclude: list[Path] = typer.Option(
            [], help="Human datasets whose pairs are already labelled."
        ),
        min_score: float = typer.Option(0.0, help="Never route pairs below this uncertainty."),
        seed: int = typer.Option(0, help="Seeds the order the two responses are shown in."),
    ) -> None:
        """Export the most uncertain pairs for labelling (fill `label` with a, b or tie)."""
        from cai.human.routing import RoutingConfig, check_sheet_path, export_for_labelling
        from cai.human.storage import iter_preference_rows, read_preference_rows

        report_path = out.parent / f"{out.name}.routing.json"
        refuse_output_onto_input(
            {"--out": out, "--out's routing report": report_path},
            {"--ai": ai, **{f"--exclude[{i}]": path for i, path in enumerate(exclude)}},
            replaces=True,
        )
        check_sheet_path(out)
        config = RoutingConfig(budget=budget, min_score=min_score, seed=seed)
        labelled = (row for path in exclude for row in iter_preference_rows(path))  # one pass
        report = export_for_labelling(read_preference_rows(ai), out, config, labelled)
        report_path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
        typer.echo(
            f"exported {report.n_selected} of {report.n_candidates} unlabelled pairs to {out} "
            f"({report.n_already_labelled} already labelled; scores in {report_path})"
        )

    @route.command("import")
    def route_import_cmd(
        sheet: Path = typer.Argument(..., help="The filled labelling sheet."),
        out: Path = typer.Option(..., "--out", "-o", help="Preference dataset to write."),
        rater_id: RaterIdOpt = None,
        strict: StrictOpt = False,
    ) -> None:
        """Import a filled labelling sheet as human preference rows."""
        from cai.human.routing import import_labels

        _refuse_import_onto(out, {"SHEET": sheet})
        rows, report = import_labels(sheet, rater_id=rater_id)
        _write_import(rows, report, out, strict)
