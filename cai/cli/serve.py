"""`cai serve MODEL`: vLLM's OpenAI-compatible server, local-only unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    model: str = typer.Argument(
        ..., help="Model directory or embedded name (see `cai models list`)."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Interface to bind; 0.0.0.0 exposes it to the network."
    ),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: str | None = typer.Option(
        None, envvar="CAI_SERVE_API_KEY", help="Require this bearer key from clients."
    ),
    served_model_name: str | None = typer.Option(None, help="Name clients use (default: MODEL)."),
    tensor_parallel_size: int = typer.Option(
        1, min=1, help="GPUs per model replica (tensor parallel)."
    ),
    pipeline_parallel_size: int = typer.Option(1, min=1, help="Pipeline-parallel stages."),
    max_model_len: int | None = typer.Option(None, help="Context window to allocate."),
    dtype: str = typer.Option(
        "auto", help="Weights/compute dtype: auto, float32, bfloat16, float16."
    ),
    enforce_eager: bool | None = typer.Option(
        None,
        "--enforce-eager/--no-enforce-eager",
        help="Skip graph capture (faster start); default: on for vLLM's CPU build only.",
    ),
    gpu_memory_utilization: float | None = typer.Option(None, help="Share of GPU memory to use."),
    startup_timeout: float = typer.Option(
        600.0, help="Seconds to wait for the server to be healthy."
    ),
    log_file: Path | None = typer.Option(None, help="Append the server's output to this file."),
    vllm_arg: list[str] = typer.Option(
        [], help="Extra argument passed to vLLM as is (repeatable)."
    ),
) -> None:
    """Serve MODEL with vLLM's OpenAI-compatible API until Ctrl-C or SIGTERM."""
    from cai.backends import eager_default
    from cai.model_names import resolve_model
    from cai.serving import ServerOptions, ServerStartError, VLLMServer, run_until_stopped

    options = ServerOptions(
        model=resolve_model(model),
        host=host,
        port=port,
        api_key=api_key,
        served_model_name=served_model_name or model,
        dtype=dtype,
        max_model_len=max_model_len,
        tensor_parallel_size=tensor_parallel_size,
        pipeline_parallel_size=pipeline_parallel_size,
        enforce_eager=eager_default(enforce_eager),
        gpu_memory_utilization=gpu_memory_utilization,
        extra_args=list(vllm_arg),
    )
    server = VLLMServer(options, log_path=log_file)

    def ready(running: VLLMServer) -> None:
        typer.echo(f"Serving {options.served_model_name!r} at {running.base_url}", err=False)
        typer.echo("Stop with Ctrl-C.", err=True)

    try:
        code = run_until_stopped(server, on_ready=ready, startup_timeout_s=startup_timeout)
    except ServerStartError as err:
        typer.echo(f"cai serve: {err}", err=True)
        raise typer.Exit(1) from err
    if code:
        typer.echo(
            f"cai serve: the vLLM server exited with code {code}. Last output:\n"
            + server.recent_output(),
            err=True,
        )
        raise typer.Exit(code)
    typer.echo("Server stopped.", err=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
