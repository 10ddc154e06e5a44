"""`cai constitution`: validate, show, create and list constitutions."""

from __future__ import annotations

from pathlib import Path

import typer

group = typer.Typer(
    help="Write and check constitutions (the principles AI feedback follows).",
    no_args_is_help=True,
)


@group.command()
def validate(
    files: list[str] = typer.Argument(..., help="Constitution files or bundled names."),
) -> None:
    """Check constitutions; list every problem with file:line and exit 2 if any."""
    from cai.constitution import ConstitutionError, load_constitution

    failed = 0
    for item in files:
        try:
            constitution = load_constitution(item)
        except ConstitutionError as err:
            failed += 1
            typer.echo(f"FAIL {item}: {len(err.issues)} problem(s)", err=True)
            for issue in err.issues:
                typer.echo(f"  {issue}", err=True)
            continue
        typer.echo(
            f"ok   {item}: {constitution.name} v{constitution.version}, "
            f"{len(constitution.principles)} principles, hash {constitution.content_hash[:12]}"
        )
    if failed:
        typer.echo(f"{failed} of {len(files)} file(s) failed", err=True)
        raise typer.Exit(2)


@group.command()
def show(
    file: str = typer.Argument(..., help="A constitution file or bundled name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print a constitution resolved (extends applied) with its content hash."""
    import json

    from cai.constitution import load_constitution

    constitution = load_constitution(file)
    if as_json:
        payload = {**constitution.canonical(), "content_hash": constitution.content_hash}
        payload["extends"] = constitution.extends
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    typer.echo(f"# {constitution.name} v{constitution.version} (resolved)")
    typer.echo(f"# content hash: {constitution.content_hash}")
    if constitution.extends:
        typer.echo(f"# built on: {' <- '.join(constitution.extends)}")
    typer.echo(f"# principles: {', '.join(constitution.principle_ids)}")
    typer.echo(constitution.to_yaml().rstrip())


@group.command()
def new(
    name: str = typer.Argument(..., help="Name of the new constitution."),
    out: Path | None = typer.Option(None, "--out", "-o", help="File to write (default NAME.yaml)."),
    extends: str | None = typer.Option(
        None, help="Start from another constitution (bundled name or path)."
    ),
    force: bool = typer.Option(False, help="Overwrite an existing file."),
) -> None:
    """Write a commented starter constitution that validates as is."""
    from cai.constitution import ConstitutionError, load_constitution
    from cai.constitution.starter import starter_constitution

    path = out or Path(f"{name}.yaml")
    if path.exists() and not force:
        typer.echo(f"{path} already exists; pick another --out or pass --force", err=True)
        raise typer.Exit(2)
    try:
        text = starter_constitution(name, path.name, extends=extends)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    try:
        load_constitution(path)
    except ConstitutionError as err:
        typer.echo(f"wrote {path}, but it does not validate yet:\n{err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path}; edit it, then run: cai constitution validate {path}")


@group.command("list")
def list_() -> None:
    """List the bundled constitutions."""
    from cai.constitution import ConstitutionError, load_constitution
    from cai.resources import bundled_constitution_names

    names = bundled_constitution_names()
    if not names:
        typer.echo("no bundled constitutions found", err=True)
        raise typer.Exit(2)
    for name in names:
        try:
            constitution = load_constitution(name)
        except ConstitutionError as err:
            typer.echo(f"{name:<16} BROKEN: {len(err.issues)} problem(s)")
            continue
        summary = constitution.description.split(". ")[0].strip().rstrip(".")
        typer.echo(f"{name:<16} {len(constitution.principles):>3} principles  {summary}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="constitution")
