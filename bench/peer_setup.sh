#!/usr/bin/env bash
# The peer virtualenv of bench/peer_distilabel.py: distilabel with its OpenAI client only.
#
# It lives in bench/.venv-peer (git-ignored), apart from cai's .venv: distilabel is never a
# dependency of cai, and nothing here is installed into cai's environment. No torch and no
# vLLM: distilabel talks to `cai serve` over the OpenAI API (see bench/README.md for why).
set -euo pipefail

BENCH="$(cd "$(dirname "$0")" && pwd)"
VENV="$BENCH/.venv-peer"
PYTHON="${PYTHON:-python3}"
DISTILABEL="${DISTILABEL_VERSION:-1.5.3}"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# What it would pull, first: refuse anything that brings torch or vLLM along.
plan="$("$VENV/bin/pip" install --dry-run "distilabel[openai]==$DISTILABEL" requests)"
if grep -qiE 'would install.*\b(torch|vllm|nvidia)' <<<"$plan"; then
    echo "distilabel $DISTILABEL would pull torch, vLLM or CUDA packages; stopping." >&2
    exit 1
fi
# `requests` is imported by distilabel 1.5.3 without being declared.
"$VENV/bin/pip" install --quiet "distilabel[openai]==$DISTILABEL" requests
"$VENV/bin/python" -c "import importlib.metadata as m; print('distilabel', m.version('distilabel'), 'in $VENV')"
