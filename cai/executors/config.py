"""The `executor:` setting: where a stage's chunks are processed.

`local` (the default) processes every chunk in this process, in order, as cai always has.
`ray` spreads the chunks over a pool of Ray actors, each holding one backend built from the
stage's `BackendSpec` (for vLLM: one engine per actor, with the GPUs it asks for). Results are
identical either way: the driver writes every chunk itself, in input order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ExecutorKind = Literal["local", "ray"]


class ExecutorConfig(BaseModel):
    """How a stage's chunks are processed (no field changes what a run writes)."""

    model_config = ConfigDict(extra="forbid")

    kind: ExecutorKind = Field(
        "local", description="local: this process, in order; ray: a pool of Ray actors"
    )
    actors: int = Field(1, ge=1, description="Ray actors, each holding one backend")
    address: str | None = Field(
        None,
        description="Ray cluster to join (e.g. 'HEAD:6379' or 'auto'); None: RAY_ADDRESS when "
        "set, otherwise a local Ray instance is started for the run and stopped after it",
    )
    max_in_flight_per_actor: int = Field(
        2, ge=1, description="chunks queued on one actor at a time (backpressure)"
    )
    max_restarts: int = Field(
        3, ge=0, description="actors replaced after dying before the run gives up"
    )
    num_gpus_per_actor: float | Literal["auto"] = Field(
        "auto",
        description="GPUs each actor reserves; auto: tensor_parallel_size x "
        "pipeline_parallel_size for vLLM (1 for transformers) when the cluster has GPUs, "
        "else 0",
    )
    num_cpus_per_actor: float = Field(1.0, ge=0, description="CPUs each actor reserves")
    start_timeout_s: float = Field(
        1800, gt=0, description="how long the actors may take to start and load their models"
    )

    @field_validator("num_gpus_per_actor")
    @classmethod
    def _non_negative(cls, value):
        if value != "auto" and value < 0:
            raise ValueError("num_gpus_per_actor must be >= 0 or 'auto'")
        return value

    @model_validator(mode="after")
    def _ray_only_settings(self) -> ExecutorConfig:
        if self.kind == "local":
            if self.actors != 1:
                raise ValueError(
                    f"actors={self.actors} needs the ray executor (the local executor runs in "
                    "this process); set executor.kind: ray (or --executor ray)"
                )
            if self.address is not None:
                raise ValueError(
                    "address joins a Ray cluster; set executor.kind: ray (or --executor ray)"
                )
        return self
