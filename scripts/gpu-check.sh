#!/usr/bin/env bash
# One-command check of the GPU paths on one GPU machine (a few minutes; tiny random models, no
# download). Each check runs in its own process and reports what it verified:
#   judge    the transformers backend judges a few pairs on the tiny model in bfloat16 on the GPU;
#            its probabilities are compared with float32 labels from the CPU (max abs difference
#            printed; fails above GPU_CHECK_JUDGE_TOLERANCE, default 0.1)
#   reward   `cai train reward` steps on the GPU (bf16 mixed precision), finite loss, model saved
#   ppo      `cai train ppo` steps on the GPU against the tiny reward model, metrics and policy saved
#   ppo-extras  the same with SFT mixing (ptx_coef > 0) and the reward-hacking monitor judging with
#            the transformers backend on the GPU: ptx loss logged, monitor.jsonl and monitor.png written
#   ddp      with 2+ GPUs: reward and PPO under `accelerate launch --config_file
#            examples/accelerate/ddp.yaml --num_processes 2`, ranks on different data and with
#            identical weights (CAI_DEBUG_DATA_LOG)
#   vllm     only when vLLM imports: the vLLM backend judges the same pairs (against the CPU
#            labels) and PPO runs a step with rollout_engine vllm
#
# Usage: scripts/gpu-check.sh [--out DIR] [--skip-vllm] [--require-gpu] [--check-only]
#   --check-only   no GPU needed: check that the Python parts import and the options parse
#   --require-gpu  exit 1 (not 0) when there is no GPU
# Without a GPU (nvidia-smi missing or failing, or torch seeing no CUDA device) it prints
# "gpu-check: skipped: no GPU (...)" and exits 0, so it can sit in any CI; --require-gpu makes
# that a failure. Exit status otherwise: 0 when every check that ran passed, 1 if one failed.
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3); it needs
# CUDA torch, transformers, accelerate and cai's own dependencies (trl for the reward check).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT=""
SKIP_VLLM=0
REQUIRE_GPU=0
CHECK_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --skip-vllm) SKIP_VLLM=1; shift ;;
    --require-gpu) REQUIRE_GPU=1; shift ;;
    --check-only) CHECK_ONLY=1; shift ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
[ -n "$OUT" ] || OUT="$(mktemp -d -t cai-gpu-check.XXXXXX)"
mkdir -p "$OUT"
SCRIPT="$OUT/gpu_check.py"

cat > "$SCRIPT" <<'PY'
"""The Python half of scripts/gpu-check.sh: one check per invocation, one result line."""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

PAIRS = [
    ("How do I boil an egg?", "Put it in boiling water for eight minutes.", "Eggs are oval."),
    ("Is it safe to mix bleach and ammonia?", "No: it releases toxic chloramine gas.", "Sure."),
    ("Name a prime number.", "Seven.", "Nine is one."),
    ("Translate 'thank you' into French.", "Merci.", "Danke."),
]


def report(name, ok, detail):
    print(f"gpu-check: {name}: {'verified' if ok else 'FAILED'}: {detail}", flush=True)
    return 0 if ok else 1


def tiny_models(out):
    from cai.testing import build_tiny_causal_lm, build_tiny_reward_model

    lm, rm = out / "tiny-lm", out / "tiny-rm"
    if not (lm / "config.json").exists():
        build_tiny_causal_lm(lm)
    if not (rm / "config.json").exists():
        build_tiny_reward_model(rm)
    return lm, rm


def judge_probs(spec):
    from cai.backends import BackendSpec, make_backend
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
    from cai.templates import TemplateSet

    judge = PairwiseJudge(
        make_backend(BackendSpec(**spec)),
        load_constitution("default"),
        TemplateSet(),
        JudgeConfig(principles_per_pair=2, seed=0),
    )
    items = [
        PairToJudge(key=f"pair-{i}", conversation=[{"role": "user", "content": q}],
                    response_a=a, response_b=b)
        for i, (q, a, b) in enumerate(PAIRS)
    ]
    return [j.prob_a if j.ok else None for j in judge.judge_pairs(items)]


def check_judge(out, kind):
    lm, _ = tiny_models(out)
    reference_file = out / "judge-cpu-float32.json"
    if reference_file.exists():
        reference = json.loads(reference_file.read_text())
    else:
        reference = judge_probs(
            {"kind": "transformers", "model": str(lm), "dtype": "float32", "device": "cpu"}
        )
        reference_file.write_text(json.dumps(reference))
    if kind == "transformers":
        spec = {"kind": "transformers", "model": str(lm), "dtype": "bfloat16", "device": "cuda"}
    else:
        spec = {"kind": "vllm", "model": str(lm), "dtype": "bfloat16", "enforce_eager": True,
                "gpu_memory_utilization": 0.3, "max_model_len": 2048}
    probs = judge_probs(spec)
    if None in probs or None in reference:
        return report(f"judge ({kind})", False, f"unlabeled pairs: gpu {probs}, cpu {reference}")
    diff = max(abs(a - b) for a, b in zip(probs, reference, strict=True))
    tolerance = float(os.environ.get("GPU_CHECK_JUDGE_TOLERANCE", "0.1"))
    return report(
        f"judge ({kind})",
        diff <= tolerance,
        f"{len(probs)} pairs judged in bfloat16 on the GPU; max |prob_a - CPU float32| = "
        f"{diff:.4f} (tolerance {tolerance})",
    )


def cai(args, processes=1, env=None):
    """`cai ARGS` in one process, or under `accelerate launch` with the DDP example config."""
    env = {**os.environ, **(env or {})}
    command = [sys.executable, "-m", "cai.cli.app", *args]
    if processes > 1:
        config = Path(os.environ["GPU_CHECK_ROOT"]) / "examples" / "accelerate" / "ddp.yaml"
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(config), "--num_processes", str(processes), *command[1:]]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def write_preferences(out):
    from cai.testing.data import write_random_preferences

    return write_random_preferences(out / "prefs.jsonl", n=32, seed=0)


def check_reward(out, processes=1):
    _, rm = tiny_models(out)
    run = out / f"reward-{processes}"
    shutil.rmtree(run, ignore_errors=True)
    args = ["train", "reward", "--model", str(rm), "--data", write_preferences(out), "-o",
            str(run), "--max-steps", "3", "--batch-size", "4", "--set", "logging_steps=1",
            "--set", "dtype=auto"]
    code, output = cai(args, processes, {"CAI_DEBUG_DATA_LOG": "1"})
    name = "reward" if processes == 1 else "ddp reward"
    if code != 0:
        return report(name, False, output[-3000:])
    facts = json.loads((run / "cai_training.json").read_text())
    loss = facts["final_metrics"].get("train_loss", float("nan"))
    ok = math.isfinite(loss) and (run / "model.safetensors").exists()
    detail = f"3 steps, train_loss {loss:.4f}, model saved"
    if processes > 1:
        consistent, detail = ddp_consistent(run, processes, detail)
        ok = ok and consistent
    return report(name, ok, detail)


def ddp_consistent(run, processes, detail):
    from cai.train.distributed import read_data_log

    logs = read_data_log(run)
    steps = {r["step"] for rows in logs.values() for r in rows if r["kind"] == "batch"}
    disjoint = len(logs) == processes and all(
        not set.intersection(
            *({i for r in rows if r["kind"] == "batch" and r["step"] == s for i in r["ids"]}
              for rows in logs.values())
        )
        for s in steps
    )
    digests = [[r["sha256"] for r in rows if r["kind"] == "weights"] for rows in logs.values()]
    same = all(d == digests[0] for d in digests) and bool(digests[0])
    return disjoint and same, (
        f"{detail}; {len(logs)} ranks, disjoint data {disjoint}, identical weights {same}"
    )


def check_ppo(out, processes=1, engine="transformers"):
    import yaml

    lm, rm = tiny_models(out)
    prompts = out / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q, _, _ in PAIRS * 2))
    config = out / f"ppo-{engine}.yaml"
    config.write_text(yaml.safe_dump({
        "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 2, "max_new_tokens": 8,
        "learning_rate": 1e-4, "progress": False, "save_every": 1, "rollout_engine": engine,
        "vllm_gpu_memory_utilization": 0.3,
    }))
    run = out / f"ppo-{engine}-{processes}"
    shutil.rmtree(run, ignore_errors=True)
    args = ["train", "ppo", "-c", str(config), "--model", str(lm), "--prompts", str(prompts),
            "--reward-model", str(rm), "-o", str(run), "--steps", "2"]
    code, output = cai(args, processes, {"CAI_DEBUG_DATA_LOG": "1"})
    name = f"ppo ({engine})" if processes == 1 else f"ddp ppo ({engine})"
    if code != 0:
        return report(name, False, output[-3000:])
    from cai.train.ppo.logging import read_metrics

    rows = read_metrics(run / "metrics.jsonl")
    finite = all(math.isfinite(v) for r in rows for v in r.values())
    ok = len(rows) == 2 and finite and (run / "final" / "model.safetensors").exists()
    if not rows:
        return report(name, False, "no metrics were logged")
    last = rows[-1]
    detail = f"2 steps, reward {last['reward/mean']:.4f}, kl {last['kl/mean']:.4f}, policy saved"
    if processes > 1:
        consistent, detail = ddp_consistent(run, processes, detail)
        ok = ok and consistent
    return report(name, ok, detail)


def check_ppo_extras(out):
    import yaml

    lm, rm = tiny_models(out)
    prompts = out / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q, _, _ in PAIRS * 2))
    sft = out / "sft.jsonl"
    sft.write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        + "\n" for q, a, _ in PAIRS * 2))
    config = out / "ppo-extras.yaml"
    config.write_text(yaml.safe_dump({
        "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 2, "max_new_tokens": 8,
        "learning_rate": 1e-4, "progress": False, "save_every": 1,
        "ptx_coef": 0.05, "ptx_dataset": str(sft), "ptx_batch_size": 2,
        "monitor": {"prompts": str(prompts), "limit": 4, "every": 1, "batch_size": 4,
                    "judge": {"backend": {"kind": "transformers", "model": str(lm)}}},
    }))
    run = out / "ppo-extras"
    shutil.rmtree(run, ignore_errors=True)
    args = ["train", "ppo", "-c", str(config), "--model", str(lm), "--prompts", str(prompts),
            "--reward-model", str(rm), "-o", str(run), "--steps", "2"]
    code, output = cai(args, 1, {})
    if code != 0:
        return report("ppo-extras", False, output[-3000:])
    from cai.train.ppo.logging import read_metrics

    rows = read_metrics(run / "metrics.jsonl")
    ptx = [r.get("ptx/loss") for r in rows]
    checks = (run / "logs" / "monitor.jsonl").read_text().splitlines() if (
        run / "logs" / "monitor.jsonl").exists() else []
    ok = (len(rows) == 2 and all(v is not None and math.isfinite(v) for v in ptx)
          and len(checks) >= 2 and (run / "monitor.png").exists() or False)
    last = json.loads(checks[-1]) if checks else {}
    detail = (f"ptx loss {ptx}, {len(checks)} monitor checks, last win rate "
              f"{last.get('win_rate')}, monitor.png {(run / 'monitor.png').exists()}")
    return report("ppo-extras", ok, detail)


def check_imports():
    import cai.backends  # noqa: F401
    import cai.judge.compare  # noqa: F401
    import cai.testing  # noqa: F401
    import cai.train.distributed  # noqa: F401
    import cai.train.ppo.trainer  # noqa: F401
    import cai.train.reward  # noqa: F401

    return report("check-only", True, "the Python parts import and their options parse")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("check", choices=["imports", "judge", "reward", "ppo", "ppo-extras", "ddp", "vllm"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.check == "imports":
        return check_imports()
    import torch

    if not torch.cuda.is_available():
        return report(args.check, False, "torch sees no CUDA device (a CPU build of torch?)")
    if args.check == "judge":
        return check_judge(args.out, "transformers")
    if args.check == "reward":
        return check_reward(args.out)
    if args.check == "ppo":
        return check_ppo(args.out)
    if args.check == "ppo-extras":
        return check_ppo_extras(args.out)
    if args.check == "ddp":
        return check_reward(args.out, args.processes) | check_ppo(args.out, args.processes)
    return check_judge(args.out, "vllm") | check_ppo(args.out, engine="vllm")


if __name__ == "__main__":
    sys.exit(main())
PY
export GPU_CHECK_ROOT="$ROOT"

run_check() {  # run_check NAME [extra args]: one check in its own process
  local name="$1"; shift
  "$PYTHON" "$SCRIPT" "$name" --out "$OUT" "$@"
}

if [ "$CHECK_ONLY" = 1 ]; then
  run_check imports
  exit $?
fi

skip() {
  echo "gpu-check: skipped: no GPU ($1)"
  [ "$REQUIRE_GPU" = 1 ] && exit 1
  exit 0
}
command -v nvidia-smi >/dev/null 2>&1 || skip "nvidia-smi not found"
GPUS="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)" || skip "nvidia-smi failed"
[ -n "$GPUS" ] || skip "nvidia-smi lists no GPU"
COUNT="$(printf '%s\n' "$GPUS" | wc -l | tr -d ' ')"
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || skip "torch in $PYTHON sees no CUDA device"
echo "gpu-check: $COUNT GPU(s): $(printf '%s' "$GPUS" | paste -sd ',' -); files in $OUT"

FAILED=0
run_check judge || FAILED=1
run_check reward || FAILED=1
run_check ppo || FAILED=1
run_check ppo-extras || FAILED=1
if [ "$COUNT" -ge 2 ]; then
  run_check ddp --processes 2 || FAILED=1
else
  echo "gpu-check: ddp: skipped (one GPU; the two-process CPU tests cover the logic)"
fi
if [ "$SKIP_VLLM" = 1 ]; then
  echo "gpu-check: vllm: skipped (--skip-vllm)"
elif "$PYTHON" -c 'import vllm' >/dev/null 2>&1; then
  run_check vllm || FAILED=1
else
  echo "gpu-check: vllm: skipped (vllm is not installed)"
fi
if [ "$FAILED" = 0 ]; then echo "gpu-check: all checks that ran passed"; else echo "gpu-check: FAILED"; fi
exit "$FAILED"
