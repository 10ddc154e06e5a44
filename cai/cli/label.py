"""`cai label`: a web page where a few people label the pairs the AI judge is unsure of."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from cai.cli.options import LabelFieldsOpt, LabelQuestionOpt
from cai.errors import CaiError, InputError
from cai.paths import refuse_output_onto_input

DEFAULT_PORT = 8765


class ServeError(CaiError):
    """The labelling server cannot start as asked."""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        import socket

        return socket.gethostname()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _base_url(store, url: str | None) -> str:
    return (url or store.meta("url") or f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")


def _check_port(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ServeError(
                f"cannot listen on {host}:{port} ({err.strerror})",
                key="--port",
                fix="Another program (or another `cai label serve`) uses it; pass another --port.",
            ) from None


def _require_web() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ServeError(
            f"the labelling server needs FastAPI and uvicorn ({err.name} is missing)",
            fix="Install them: pip install fastapi uvicorn (vLLM installs both).",
        ) from None


def _print_links(store, base: str) -> None:
    raters = store.raters()
    if not raters:
        typer.echo(
            "no raters yet: add one with `cai label add-rater NAME --db FILE` (it prints the link)"
        )
    for rater in raters:
        typer.echo(f"  {rater.rater_id}: {base}/r/{rater.token}")
    typer.echo(f"  admin: {base}/admin/{store.admin_token}")


def _fill_store(items: Path | None, db: Path, seed, per_pair, overlap):
    """The labelling database with ITEMS added and the settings given; (store, item counts).
    A database that ends up with no pairs is an error."""
    from cai.label.items import load_items
    from cai.label.store import LabelStore

    refuse_output_onto_input({"--db": db}, {"ITEMS": items})
    item_seed = seed
    if item_seed is None and db.exists():
        item_seed = LabelStore(db, create=False).settings().seed
    loaded = load_items(items, item_seed or 0) if items is not None else None
    store = LabelStore(db)
    store.update_settings(seed=seed)
    store.update_settings(per_pair=per_pair, overlap=overlap)
    if loaded is not None:
        pairs, report = loaded
        added, known = store.add_items(pairs, source=str(items))
        typer.echo(report.summary())
        typer.echo(f"{added} new pairs in {db}" + (f" ({known} already there)" if known else ""))
    counts = store.item_counts()
    if counts["items"] == 0:
        raise InputError(
            "the labelling database holds no pairs",
            file=db,
            fix="Pass ITEMS: `cai label serve to_label.jsonl --db FILE`.",
        )
    return store, counts


def register(app: typer.Typer) -> None:
    label = typer.Typer(
        help="Label pairs in the browser: serve a page per rater, export human labels.",
        no_args_is_help=True,
    )
    app.add_typer(label, name="label")

    @label.command("serve")
    def serve_cmd(
        items: Path | None = typer.Argument(
            None,
            help="Pairs to label: a `cai route export` sheet or a preference dataset. "
            "Omit to resume the pairs already in --db.",
        ),
        db: Path = typer.Option(..., help="SQLite file holding pairs, raters and answers."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(DEFAULT_PORT, min=1, max=65535),
        per_pair: int | None = typer.Option(
            None, min=1, help="Raters per pair outside the overlap set [default: 1]."
        ),
        overlap: float | None = typer.Option(
            None, min=0.0, max=1.0, help="Share of pairs every rater labels [default: 0.1]."
        ),
        seed: int | None = typer.Option(
            None, help="Seeds the overlap set, order and sides [default: 0]."
        ),
        rater: list[str] = typer.Option([], help="Add a rater (repeatable)."),
        ai: Path | None = typer.Option(
            None, help="AI preference dataset: AI labels for the admin page."
        ),
        show_ai: bool = typer.Option(
            False, help="Show the AI's label to raters (audits; not blind)."
        ),
        no_tokens: bool = typer.Option(
            False,
            help="List every rater's link on / (loopback only: binding elsewhere needs tokens).",
        ),
    ) -> None:
        """Serve the labelling page; prints one link per rater and the admin link."""
        from cai.label.items import ai_probabilities

        if no_tokens and not is_loopback(host):
            raise ServeError(
                f"--no-tokens is refused on {host}: only a loopback address (127.0.0.1, ::1, "
                "localhost) may serve without personal links",
                key="--host",
                fix="Drop --no-tokens and hand each rater their link.",
            )
        _require_web()
        _check_port(host, port)
        store, counts = _fill_store(items, db, seed, per_pair, overlap)
        if ai is not None:
            matched = store.set_ai_labels(ai_probabilities(ai))
            typer.echo(f"AI labels from {ai}: {matched} of {counts['items']} pairs")
        for name in rater:
            store.add_rater(name)
        settings = store.settings()
        base = f"http://{_url_host(host)}:{port}"
        store.set_meta("url", base)
        typer.echo(
            f"{counts['items']} pairs ({counts['overlap']} in the overlap set), "
            f"{settings.per_pair} rater(s) per other pair; answers go to {db}"
        )
        if not is_loopback(host):
            typer.echo(
                f"note: listening on {host} over plain HTTP; share links only on a network you "
                "trust (or put a TLS proxy in front)"
            )
        typer.echo(f"links ({'blind' if not show_ai else 'AUDIT: AI labels shown'}):")
        _print_links(store, base)
        if no_tokens:
            typer.echo(f"  (no tokens needed on this computer: {base}/)")
        typer.echo("Ctrl-C stops the server; answers are saved as they are given.")

        import uvicorn

        from cai.label.app import create_app

        web = create_app(store, show_ai=show_ai, open_access=no_tokens)
        uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False)

    @label.command("add-rater")
    def add_rater_cmd(
        name: str = typer.Argument(..., help="Rater id (written to the export as rater_id)."),
        db: Path = typer.Option(..., help="The labelling database."),
        url: str | None = typer.Option(
            None, help="Server address for the link [default: the last `serve` address]."
        ),
    ) -> None:
        """Add a rater and print their personal link (a running server sees them at once)."""
        from cai.label.store import LabelStore

        store = LabelStore(db)
        added, created = store.add_rater(name)
        base = _base_url(store, url)
        note = "" if created else " (already a rater; same link)"
        typer.echo(f"{added.rater_id}: {base}/r/{added.token}{note}")

    @label.command("links")
    def links_cmd(
        db: Path = typer.Option(..., help="The labelling database."),
        url: str | None = typer.Option(
            None, help="Server address [default: the last `serve` address]."
        ),
    ) -> None:
        """Print every rater's link and the admin link."""
        from cai.label.store import LabelStore

        store = LabelStore(db, create=False)
        _print_links(store, _base_url(store, url))

    @label.command("export")
    def export_cmd(
        db: Path = typer.Option(..., help="The labelling database."),
        out: Path = typer.Option(
            ..., "--out", "-o", help="Human labels to write (.jsonl, .csv, .parquet or a dir)."
        ),
    ) -> None:
        """Write the answers as human preference rows (`cai agree`, `route import`, `mix`)."""
        from cai.label.export import answers_to_rows, write_human_rows
        from cai.label.store import LabelStore

        refuse_output_onto_input({"--out": out}, {"--db": db}, replaces=True)
        store = LabelStore(db, create=False)
        rows, skips = answers_to_rows(store.live_answers())
        if not rows:
            raise InputError(
                "no answers to export yet" + (f" ({skips} skips)" if skips else ""),
                file=db,
                fix="Label some pairs first (`cai label serve`).",
            )
        write_human_rows(rows, out)
        raters = len({row["rater_id"] for row in rows})
        ties = sum(row["label"] == "tie" for row in rows)
        typer.echo(
            f"wrote {len(rows)} human labels ({ties} ties, {raters} raters; {skips} skips left "
            f"out) to {out}"
        )

    @label.command("export-items")
    def export_items_cmd(
        items: Path = typer.Argument(
            ..., help="Pairs: a `route export` sheet or a preference dataset."
        ),
        format: str = typer.Option(..., "--format", help="argilla | label-studio"),
        out: Path = typer.Option(
            ...,
            "--out",
            "-o",
            help="argilla: a new directory; label-studio: tasks .json (the config goes beside it).",
        ),
        seed: int = typer.Option(
            0, help="Seeds the order of the two responses of preference rows."
        ),
    ) -> None:
        """Export pairs for Argilla (a dataset directory) or Label Studio (tasks + config)."""
        from cai.label.interchange import to_argilla, to_label_studio
        from cai.label.items import load_items

        if format not in ("argilla", "label-studio"):
            raise InputError(
                f"unknown format {format!r}", key="--format", fix="Use argilla or label-studio."
            )
        outputs = {"--out": out}
        if format == "label-studio":
            outputs["--out's labeling config"] = out.with_name(out.stem + ".label_config.xml")
        refuse_output_onto_input(outputs, {"ITEMS": items}, replaces=True)
        pairs, report = load_items(items, seed)
        typer.echo(report.summary())
        if format == "argilla":
            path = to_argilla(pairs, out)
            typer.echo(f"wrote an Argilla dataset of {len(pairs)} records to {path}")
        else:
            tasks, config = to_label_studio(pairs, out)
            typer.echo(
                f"wrote {len(pairs)} Label Studio tasks to {tasks} (labeling config: {config})"
            )

    @label.command("import-labels")
    def import_labels_cmd(
        source: Path = typer.Argument(
            ...,
            help="A completed Argilla export (directory or records file) or Label Studio JSON export.",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Human labels to write."),
        format: str = typer.Option("auto", "--format", help="auto | argilla | label-studio"),
        fields: LabelFieldsOpt = None,
        question: LabelQuestionOpt = None,
    ) -> None:
        """Read labels done in Argilla or Label Studio back as human preference rows: from
        the tasks cai wrote, Label Studio's own Pairwise template, or a dataset whose names
        `--fields` and `--question` give."""
        from cai.label.export import write_human_rows
        from cai.label.foreign import PairNames
        from cai.label.interchange import import_labels

        if format not in ("auto", "argilla", "label-studio"):
            raise InputError(
                f"unknown format {format!r}",
                key="--format",
                fix="Use auto, argilla or label-studio.",
            )
        refuse_output_onto_input({"--out": out}, {"SOURCE": source}, replaces=True)
        rows, report = import_labels(source, format, PairNames.parse(fields, question))
        typer.echo(report.summary())
        report.require_rows(
            "Check the file is a completed export; name fields and the question that are not "
            "cai's with --fields prompt=NAME,a=NAME,b=NAME and --question NAME."
        )
        write_human_rows(rows, out)
        typer.echo(f"wrote {len(rows)} human labels to {out}")
