"""`cai reward serve`: the constitutional judge as a reward service for RL trainers."""

from __future__ import annotations

from typing import Any

import typer

from cai.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    ConstitutionOpt,
    JudgeModelOpt,
    PipelineConfigOpt,
    PrinciplesOpt,
    SeedOpt,
    SetOpt,
    TemplatesOpt,
    TokenBudgetOpt,
)

group = typer.Typer(
    help="The constitutional judge as a reward service (TRL, OpenRLHF, verl).",
    no_args_is_help=True,
)


@group.command("serve")
def serve(
    config: PipelineConfigOpt = None,
    model: JudgeModelOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    constitution: ConstitutionOpt = None,
    templates: TemplatesOpt = None,
    principles: PrinciplesOpt = None,
    seed: SeedOpt = None,
    token_budget: TokenBudgetOpt = None,
    host: str = typer.Option(
        "127.0.0.1", help="Interface to bind; 0.0.0.0 exposes it to the network."
    ),
    port: int = typer.Option(8100, help="Port to listen on."),
    api_key: list[str] = typer.Option(
        [],
        envvar="CAI_REWARD_API_KEY",
        help="Require this bearer token from clients (repeatable; one rate limit per token).",
    ),
    rate_limit: float | None = typer.Option(
        None, help="Requests per second per client token (per address without tokens)."
    ),
    burst: int = typer.Option(32, min=1, help="Requests a client may send at once."),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, help="Largest request body."),
    max_items: int = typer.Option(1024, min=1, help="Items (or groups) per request."),
    max_group_size: int = typer.Option(64, min=2, help="Responses per /v1/rank group."),
    batch_wait_ms: float = typer.Option(
        5.0, min=0.0, help="How long a batch waits for more requests."
    ),
    batch_max_items: int = typer.Option(256, min=1, help="Items per engine batch."),
    get_reward_mode: str = typer.Option(
        "score",
        help="What OpenRLHF's /get_reward returns: score (P(follows)) or compare (P(beats "
        "the label as a reference answer)).",
    ),
    overrides: SetOpt = [],  # noqa: B006
) -> None:
    """Serve the judge over HTTP: /v1/score, /v1/compare, /v1/rank, /get_reward."""
    from cai.cli.run import backend_options
    from cai.reward.app import serve_forever
    from cai.reward.limits import ServiceLimits
    from cai.reward.service import BatchSettings, load_service

    options: dict[str, Any] = {
        "stages": ["judge"],  # the service needs the judge's settings, never prompts
        "constitution": constitution,
        "templates": templates,
        **backend_options("judge_backend", model, backend, base_url),
        "judge.principles_per_pair": principles,
        "judge.seed": seed,
        "budget.max_tokens": token_budget,
    }
    limits = ServiceLimits(
        api_keys=list(api_key),
        rate_limit=rate_limit,
        burst=burst,
        max_body_bytes=max_body_bytes,
        max_items=max_items,
        max_group_size=max_group_size,
    )
    batching = BatchSettings(max_wait_ms=batch_wait_ms, max_items=batch_max_items)
    service = load_service(config, options, list(overrides), limits, batching, get_reward_mode)

    def ready(url: str) -> None:
        typer.echo(f"Reward service for {service.scorer.backend.model_id!r} at {url}")
        if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
            typer.echo(
                f"Warning: listening on {host} without --api-key: anyone who reaches this port "
                "can spend the judge's tokens.",
                err=True,
            )
        typer.echo("Stop with Ctrl-C.", err=True)

    serve_forever(service, host, port, on_ready=ready)
    typer.echo("Reward service stopped.", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="reward")
