"""`cai import-human`, `cai agree`, `cai route export|import`, `cai mix`: human labels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Bad files and bad options end the command with one readable line, not a traceback."""
    from cai.human.pairs import PairDataError
    from cai.human.storage import DatasetFileError

    try:
        yield
    except (DatasetFileError, PairDataError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _write_import(rows, report, out: Path, strict: bool) -> None:
    from cai.human.storage import write_rows

    typer.echo(report.summary())
    sidecar = out.parent / f"{out.name}.import-report.json"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    if strict and report.errors:
        typer.echo(
            f"not written: {len(report.errors)} malformed row(s) and --strict; see {sidecar}"
        )
        raise typer.Exit(1)
    write_rows(rows, out)
    typer.echo(f"wrote {len(rows)} human preference rows to {out} (report: {sidecar})")


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
            raise typer.BadParameter(
                f"{value!r}: write SOURCE=WEIGHT, e.g. human=2", param_hint="--weight"
            )
    return weights


def register(app: typer.Typer) -> None:
    @app.command("import-human")
    def import_human_cmd(
        source: Path = typer.Argument(
            ..., help="Labels: .jsonl, .csv, .parquet or a save_to_disk dir."
        ),
        out: Path = typer.Option(
            ..., "--out", "-o", help="Preference dataset to write (dir, .parquet, .jsonl)."
        ),
        format: str = typer.Option("auto", help="auto | trl | hh | table"),
        rater_id: str | None = typer.Option(None, help="Rater id for rows that name none."),
        strict: bool = typer.Option(False, help="Write nothing when any row is malformed."),
    ) -> None:
        """Import human preferences (TRL format, HH-RLHF transcripts or a pairwise table)."""
        from cai.human.imports import import_human

        if format not in ("auto", "trl", "hh", "table"):
            raise typer.BadParameter("use auto, trl, hh or table", param_hint="--format")
        with _clear_errors():
            rows, report = import_human(source, format=format, rater_id=rater_id, progress=True)
            _write_import(rows, report, out, strict)

    @app.command("agree")
    def agree_cmd(
        ai: Path = typer.Option(..., help="AI-labelled preference dataset."),
        human: Path = typer.Option(..., help="Human-labelled preference dataset."),
        out: Path = typer.Option(..., "--out", "-o", help="Directory for the report."),
        bins: int = typer.Option(5, min=1, help="Calibration bins over confidence 0.5-1.0."),
    ) -> None:
        """How well the AI judge agrees with people: accuracy, kappa, calibration, per principle."""
        from cai.human.agreement import compute_agreement
        from cai.human.report import write_report
        from cai.human.storage import read_rows

        with _clear_errors():
            report = compute_agreement(read_rows(ai), read_rows(human), n_bins=bins)
            paths = write_report(report, out)
        acc = "n/a" if report.accuracy is None else f"{report.accuracy:.3f}"
        typer.echo(f"{report.n_pairs} shared pairs, accuracy {acc}; report: {paths['html']}")

    route = typer.Typer(
        help="Route the pairs the AI judge is least sure of to people.", no_args_is_help=True
    )
    app.add_typer(route, name="route")

    @route.command("export")
    def route_export_cmd(
        ai: Path = typer.Option(..., help="AI-labelled preference dataset."),
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
        from cai.human.routing import RoutingConfig, export_for_labelling
        from cai.human.storage import read_rows

        if out.suffix.lower() not in (".jsonl", ".csv"):
            raise typer.BadParameter(
                "the labelling sheet must be .jsonl or .csv", param_hint="--out"
            )
        config = RoutingConfig(budget=budget, min_score=min_score, seed=seed)
        with _clear_errors():
            labelled = [row for path in exclude for row in read_rows(path)]
            report = export_for_labelling(read_rows(ai), out, config, labelled)
        report_path = out.parent / f"{out.name}.routing.json"
        report_path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
        typer.echo(
            f"exported {report.n_selected} of {report.n_candidates} unlabelled pairs to {out} "
            f"({report.n_already_labelled} already labelled; scores in {report_path})"
        )

    @route.command("import")
    def route_import_cmd(
        sheet: Path = typer.Argument(..., help="The filled labelling sheet."),
        out: Path = typer.Option(..., "--out", "-o", help="Preference dataset to write."),
        rater_id: str | None = typer.Option(None, help="Rater id for rows that name none."),
        strict: bool = typer.Option(False, help="Write nothing when any row is malformed."),
    ) -> None:
        """Import a filled labelling sheet as human preference rows."""
        from cai.human.routing import import_labels

        with _clear_errors():
            rows, report = import_labels(sheet, rater_id=rater_id)
            _write_import(rows, report, out, strict)

    @app.command("mix")
    def mix_cmd(
        ai: Path = typer.Option(..., help="AI-labelled preference dataset."),
        human: Path = typer.Option(..., help="Human-labelled preference dataset."),
        out: Path = typer.Option(..., "--out", "-o", help="Mixed dataset to write."),
        human_fraction: float | None = typer.Option(
            None, min=0.0, max=1.0, help="Share of human rows."
        ),
        weight: list[str] = typer.Option([], help="Per-source weight, e.g. --weight human=2."),
        seed: int = typer.Option(0),
    ) -> None:
        """Mix AI and human preferences: dedupe pairs, human labels override AI ones."""
        from cai.human.mixing import MixConfig, mix
        from cai.human.storage import read_rows, write_rows

        try:
            config = MixConfig(
                human_fraction=human_fraction, weights=_parse_weights(weight), seed=seed
            )
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        with _clear_errors():
            rows, report = mix(read_rows(ai), read_rows(human), config)
            write_rows(rows, out)
        typer.echo(report.summary())
        typer.echo(f"wrote {report.n_output} rows to {out}")
