"""`cai constitution`: write, check, test, lint and induce constitutions.

The commands are thin: the work is in `cai.constitution` (usage, casetest, lint, votes,
lintreport, induce); this module turns flags into settings and results into lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cai.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    JudgeModelOpt,
    PipelineConfigOpt,
    SetOpt,
    TemplatesOpt,
)
from cai.paths import refuse_output_onto_input, require_directory

group = typer.Typer(
    help="Write and check constitutions (the principles AI feedback follows).",
    no_args_is_help=True,
)


@group.command()
def validate(
    files: list[str] = typer.Argument(..., help="Constitution files or bundled names."),
    for_use: str | None = typer.Option(
        None,
        "--for",
        help="Also check the principles a command needs: judge | revise | assess.",
    ),
) -> None:
    """Check constitutions; list every problem with file:line and exit 2 if any."""
    from cai.constitution import ConstitutionError, load_constitution
    from cai.constitution.usage import USES, check_use, describe_uses

    if for_use is not None and for_use not in USES:
        raise typer.BadParameter(f"use one of: {', '.join(USES)}", param_hint="--for")
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
        if for_use is not None:
            check = check_use(constitution, for_use)
            if not check.ok:
                failed += 1
                typer.echo(f"FAIL {item}: no principle usable for {for_use}", err=True)
                for principle in constitution.principles:
                    typer.echo(f"  {principle.id}: {describe_uses(principle)}", err=True)
                continue
        typer.echo(
            f"ok   {item}: {constitution.name} v{constitution.version}, "
            f"{len(constitution.principles)} principles, hash {constitution.content_hash[:12]}"
        )
        if for_use is not None:
            typer.echo(f"     {check.note()}")
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
    """Write a commented starter constitution that validates as is, and a starter cases file."""
    from cai.constitution import ConstitutionError, load_constitution
    from cai.constitution.starter import cases_path_for, starter_cases, starter_constitution

    path = out or Path(f"{name}.yaml")
    cases = cases_path_for(path)
    refuse_output_onto_input({"--out": path, "--out's cases file": cases}, {"--extends": extends})
    for target in (path, cases):
        if target.exists() and not force:
            typer.echo(f"{target} already exists; pick another --out or pass --force", err=True)
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
    cases.write_text(starter_cases(path.name, cases.name), encoding="utf-8")
    typer.echo(f"wrote {path} and its test cases {cases}; edit them, then run:")
    typer.echo(f"  cai constitution validate {path}")
    typer.echo(f"  cai constitution test {path} {cases} --model MODEL")


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


# ---- the judge, for test and induce ---------------------------------------------------------
def _judge_setup(
    config: Path | None,
    backend: str | None,
    model: str | None,
    base_url: list[str],
    templates: str | None,
    cache: Path | None,
    no_cache: bool,
    overrides: list[str],
) -> tuple[Any, Any, Any]:
    """(backend, templates, judge config) from a pipeline YAML < flags < --set, like cai judge.

    The judge is `judge_backend` (or `policy`) of the settings; every call goes through the
    call cache (default $CAI_HOME/calls.sqlite), so a rerun asks the model nothing new. A
    local engine's own logs go to $CAI_HOME/constitution/logs/engine.log, not the terminal.
    """
    from cai.backends import make_backend
    from cai.cache import default_cache_path
    from cai.logs import route_library_logs
    from cai.model_names import cai_home
    from cai.pipeline.config import load_pipeline_config
    from cai.templates import TemplateSet

    options = {
        "stages": ["judge"],
        "templates": templates,
        "judge_backend.model": model,
        "judge_backend.kind": backend,
        "judge_backend.base_urls": base_url or None,
    }
    settings = load_pipeline_config(config, list(overrides), options)
    spec = settings.judge_backend or settings.policy
    if no_cache:
        spec = spec.model_copy(update={"cache_path": None})
    elif cache is not None or spec.cache_path is None:
        spec = spec.model_copy(update={"cache_path": str(cache or default_cache_path())})
    template_set = TemplateSet(settings.templates)
    if spec.kind in ("vllm", "transformers"):
        log_file = route_library_logs(cai_home() / "constitution")
        if log_file is not None:
            typer.echo(f"engine logs: {log_file}", err=True)
    return make_backend(spec), template_set, settings.judge


def _cache_line(backend: Any) -> str | None:
    stats = getattr(backend, "stats", None)
    if stats is None or not hasattr(stats, "misses"):
        return None
    return f"call cache: {stats.misses} sent to the model, {stats.hits} served from cache"


CacheOpt = Annotated[
    Path | None, typer.Option("--cache", help="Call cache file (default: $CAI_HOME/calls.sqlite).")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not use the call cache.")]


@group.command("test")
def test_(
    constitution: str = typer.Argument(..., help="Constitution file or bundled name."),
    cases: Path = typer.Argument(..., help="Cases file (.yaml or .jsonl)."),
    config: PipelineConfigOpt = None,
    backend: BackendOpt = None,
    model: JudgeModelOpt = None,
    base_url: BaseUrlOpt = [],  # noqa: B006 - click passes a fresh list
    templates: TemplatesOpt = None,
    min_pass: float = typer.Option(
        1.0, "--min-pass", min=0.0, max=1.0, help="Exit 1 when the pass rate is below this."
    ),
    junit: Path | None = typer.Option(None, "--junit", help="Also write a JUnit XML report."),
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    overrides: SetOpt = [],  # noqa: B006 - click passes a fresh list
) -> None:
    """Run a constitution's test cases through the judge (both orders, every principle)."""
    from cai.constitution import load_constitution
    from cai.constitution.usage import require_use
    from cai.constitution_tools.casetest import junit_xml, read_cases, run_cases
    from cai.files import atomic_write_text

    refuse_output_onto_input(
        {"--junit": junit}, {"CONSTITUTION": constitution, "CASES": cases, "--config": config}
    )
    loaded = load_constitution(constitution)
    require_use(loaded, "judge")
    case_list = read_cases(cases, loaded)
    judge_backend, template_set, judge_config = _judge_setup(
        config, backend, model, base_url, templates, cache, no_cache, overrides
    )
    try:
        report = run_cases(
            judge_backend, loaded, case_list, template_set, judge_config, cases_file=str(cases)
        )
        cache_line = _cache_line(judge_backend)
    finally:
        judge_backend.close()
    for line in report.lines():
        typer.echo(line)
    if cache_line:
        typer.echo(cache_line)
    if junit is not None:
        atomic_write_text(junit, junit_xml(report))
        typer.echo(f"JUnit report: {junit}")
    if report.pass_rate < min_pass:
        typer.echo(f"pass rate {report.pass_rate:.0%} is below --min-pass {min_pass:.0%}", err=True)
        raise typer.Exit(1)


@group.command()
def lint(
    constitution: str = typer.Argument(..., help="Constitution file or bundled name."),
    judgments: Path | None = typer.Option(
        None, "--judgments", help="Judgments directory of a `cai judge` run (OUT/judgments)."
    ),
    human: Path | None = typer.Option(
        None, "--human", help="Human preference labels of the same pairs (cai import-human)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write lint.md, lint.json and agreement.png here."
    ),
    templates: Path | None = typer.Option(
        None, help="Also check the variables this template directory uses."
    ),
    duplicate_threshold: float = typer.Option(
        0.8, min=0.01, max=1.0, help="Text similarity at which two principles are near-duplicates."
    ),
    strict: bool = typer.Option(False, help="Exit 1 on warnings too, not only on errors."),
) -> None:
    """Find duplicate, unclear, unused or conflicting principles (static and from judgments)."""
    from cai.constitution import load_constitution
    from cai.constitution_tools.lint import LintConfig
    from cai.constitution_tools.lintreport import lint_constitution, write_lint_report

    if out is not None:
        inputs = {"CONSTITUTION": constitution, "--judgments": judgments, "--human": human}
        refuse_output_onto_input({"--out": out}, {**inputs, "--templates": templates})
        require_directory(out)
    loaded = load_constitution(constitution)
    report = lint_constitution(
        loaded,
        judgments=judgments,
        human=human,
        config=LintConfig(duplicate_threshold=duplicate_threshold),
        templates_dir=templates,
    )
    for finding in report.findings:
        typer.echo(str(finding))
    if report.empirical is not None:
        e = report.empirical
        typer.echo(
            f"judged pairs: {e.pairs}"
            + (
                f"; the judge agrees with people on {e.judge_human_agreement:.0%} of "
                f"{e.human_pairs} shared pairs"
                if e.judge_human_agreement is not None
                else ""
            )
        )
        for note in e.notes:
            typer.echo(f"note: {note}")
    typer.echo(report.summary())
    if out is not None:
        paths = write_lint_report(report, out)
        typer.echo("report: " + ", ".join(str(p) for p in paths.values()))
    if report.count("error") or (strict and report.count("warning")):
        raise typer.Exit(1)


@group.command()
def induce(
    human_pairs: Path = typer.Argument(..., help="Human preference labels (cai import-human)."),
    out: Path = typer.Option(..., "--out", "-o", help="Constitution file to write."),
    name: str | None = typer.Option(None, help="Name of the constitution (default: file stem)."),
    config: PipelineConfigOpt = None,
    backend: BackendOpt = None,
    model: JudgeModelOpt = None,
    base_url: BaseUrlOpt = [],  # noqa: B006 - click passes a fresh list
    templates: TemplatesOpt = None,
    sample: int | None = typer.Option(64, min=1, help="Held-in pairs that propose principles."),
    holdout: float = typer.Option(0.25, min=0.0, max=0.95, help="Share of pairs held out."),
    seed: int = typer.Option(0, help="Seed of the split and the sample."),
    min_agreement: float = typer.Option(0.6, min=0.0, max=1.0),
    min_coverage: float = typer.Option(0.1, min=0.0, max=1.0),
    max_principles: int = typer.Option(10, min=1),
    max_candidates: int = typer.Option(32, min=1),
    proposals_per_pair: int = typer.Option(1, min=1, max=8, help="Proposals asked per pair."),
    temperature: float | None = typer.Option(
        None, min=0.0, help="Proposal sampling temperature (default 0, or 0.8 with several)."
    ),
    force: bool = typer.Option(False, help="Overwrite an existing constitution file."),
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    overrides: SetOpt = [],  # noqa: B006 - click passes a fresh list
) -> None:
    """Learn a constitution from human preferences (Inverse Constitutional AI)."""
    from cai.backends.base import GenerationParams
    from cai.constitution_tools.induce import InduceConfig, induce, report_paths, write_result
    from cai.errors import InputError
    from cai.human.storage import read_preference_rows

    reports = {f"--out's {kind} report": path for kind, path in report_paths(out).items()}
    refuse_output_onto_input(
        {"--out": out, **reports},
        {"HUMAN_PAIRS": human_pairs, "--config": config, "--templates": templates},
    )
    if out.exists() and not force:
        raise InputError("already exists", file=out, fix="Pick another --out or pass --force.")
    if temperature is None:
        temperature = 0.8 if proposals_per_pair > 1 else 0.0
    settings = InduceConfig(
        proposals_per_pair=proposals_per_pair,
        proposal=GenerationParams(temperature=temperature, max_tokens=64),
        seed=seed,
        holdout=holdout,
        sample=sample,
        min_agreement=min_agreement,
        min_coverage=min_coverage,
        max_principles=max_principles,
        max_candidates=max_candidates,
    )
    rows = read_preference_rows(human_pairs)
    judge_backend, template_set, judge_config = _judge_setup(
        config, backend, model, base_url, templates, cache, no_cache, overrides
    )
    try:
        result = induce(
            judge_backend,
            rows,
            template_set,
            settings,
            name=name or out.stem,
            source=str(human_pairs),
            judge_config=judge_config,
        )
        cache_line = _cache_line(judge_backend)
    finally:
        judge_backend.close()
    _report_induced(result, write_result(result, out), cache_line, out)


def _report_induced(result: Any, paths: dict[str, Path], cache_line: str | None, out: Path) -> None:
    """What `cai constitution induce` found and wrote; exit 1 when no principle was kept."""
    typer.echo(
        f"{result.pairs} pairs ({result.held_in} held-in, {result.held_out} held-out); "
        f"{result.proposals} proposals -> {len(result.candidates)} candidates -> "
        f"{len(result.kept)} kept"
    )
    for c in result.kept:
        typer.echo(
            f"  {c.id}: agreement {c.agreement:.2f}, coverage {c.coverage:.2f}, "
            f"support {c.support}: {c.text}"
        )
    held = result.held_out_report
    if held is not None and held.agreement is not None:
        typer.echo(
            f"held-out: agrees with people on {held.agreement:.0%} of {held.decided} decided pairs"
        )
    if cache_line:
        typer.echo(cache_line)
    typer.echo("report: " + ", ".join(str(paths[k]) for k in ("markdown", "json")))
    if "constitution" not in paths:
        typer.echo(
            "no candidate cleared the thresholds, so no constitution was written; see the "
            "report, or lower --min-agreement / --min-coverage",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"wrote {paths['constitution']}; check it with: cai constitution lint {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="constitution")
