"""The reward-hacking monitor in real training runs on the tiny models: PPO through the CLI with
a real judge, a constructed hacking run that stops and resumes, and GRPO with the callback."""

from __future__ import annotations

import json
import re

import pytest
import yaml

torch = pytest.importorskip("torch")

from ppo_setup import PROMPTS, paid_token_ids, tiny_ppo_config, token_share_reward  # noqa: E402

from cai.train.monitor.log import read_monitor  # noqa: E402
from cai.train.ppo.logging import read_metrics  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _monitor_prompts(tmp_path, n=8):
    path = tmp_path / "monitor_prompts.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": f"question {i} about water and food"}) + "\n" for i in range(n)
        )
    )
    return path


def test_cli_ppo_run_with_a_real_judge_writes_monitor_log_and_plot(
    tiny_model_dir, tiny_reward_dir, tmp_path
):
    from typer.testing import CliRunner

    from cai.cli.app import app

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"tell me about {i}"}) + "\n" for i in range(4))
    )
    settings = {
        "batch_size": 4,
        "mini_batch_size": 4,
        "ppo_epochs": 1,
        "max_new_tokens": 6,
        "progress": False,
        "monitor": {
            "prompts": str(_monitor_prompts(tmp_path, 4)),
            "every": 1,
            "judge": {"backend": {"kind": "transformers", "model": str(tiny_model_dir)}},
        },
    }
    config = tmp_path / "ppo.yaml"
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    args = ["train", "ppo", "-c", str(config), "--model", str(tiny_model_dir)]
    args += ["--prompts", str(prompts), "--reward-model", str(tiny_reward_dir)]
    args += ["-o", str(out), "--steps", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    rows = read_monitor(out / "logs" / "monitor.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row["prompts"] == 4
        assert row["judged"] + row["judge_failures"] == 4
        assert row["judged"] > 0 and 0.0 < row["win_rate"] < 1.0
        assert row["reference_length_mean"] > 0 and row["length_ratio"] > 0
        assert row["kl"] == row["kl"] and 0.0 <= row["boilerplate"] <= 1.0
        assert row["stop"] == []
    # two checks make a trend
    assert rows[0]["reward_trend"] is None and rows[1]["reward_trend"] is not None
    assert (out / "monitor.png").stat().st_size > 1000
    assert (out / "metrics.png").exists()


def _length_judge(tokenizer, paid: set[int]):
    """A scripted judge that dislikes what the reward pays for: it prefers the response with
    the smaller share of paid tokens, so a policy that learns the reward loses to the
    reference. Responses are read from the compare template's <response> blocks."""
    from cai.backends.scripted import ScriptedBackend

    blocks = re.compile(r"<response>\n(.*?)\n</response>", re.S)

    def share(text: str) -> float:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return sum(i in paid for i in ids) / max(len(ids), 1)

    def score(request):
        text = "\n".join(m["content"] for m in request.messages)
        first, second = blocks.findall(text)[-2:]
        return [-8.0 * share(first), -8.0 * share(second)]

    return ScriptedBackend(score=score)


def _hacking_config(model_dir, out, prompts, **monitor):
    return tiny_ppo_config(
        model_dir,
        out,
        batch_size=16,
        mini_batch_size=16,
        forward_batch_size=16,
        plot=True,
        monitor={
            "prompts": str(prompts),
            "limit": 16,
            "every": 2,
            "window": 3,
            "judge": {"backend": {"kind": "scripted"}},
            **monitor,
        },
    )


def test_reward_climbing_while_the_judge_turns_away_stops_the_run_and_it_resumes(
    tiny_model_dir, tmp_path
):
    from transformers import AutoTokenizer

    from cai.train.ppo.checkpoints import latest_checkpoint
    from cai.train.ppo.trainer import PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    paid = set(paid_token_ids(tokenizer))
    reward = token_share_reward(tokenizer)
    judge = _length_judge(tokenizer, paid)
    prompts = _monitor_prompts(tmp_path, 16)
    out = tmp_path / "run"

    config = _hacking_config(tiny_model_dir, out, prompts, stop_on=["reward_judge_divergence"])
    first = PPOTrainer(config, reward, PROMPTS, judge_backend=judge).train()
    assert first.stopped_by == ["reward_judge_divergence"]
    assert first.last_step < 20 and first.final_model_dir is None
    assert latest_checkpoint(out).name == f"step-{first.last_step:06d}"
    rows = read_monitor(first.monitor_path)
    last = rows[-1]
    assert last["step"] == first.last_step
    assert [w["kind"] for w in last["warnings"]] == ["reward_judge_divergence"]
    assert last["reward_trend"] > 0 and last["win_rate_trend"] < -0.01
    assert rows[0]["win_rate"] is not None and last["win_rate"] < 0.5
    assert last["stop"] == ["reward_judge_divergence"]

    # The user looks, decides to go on: resume from the stop's checkpoint, warnings only.
    resumed = _hacking_config(tiny_model_dir, out, prompts).model_copy(update={"resume": True})
    second = PPOTrainer(resumed, reward, PROMPTS, judge_backend=judge).train(stop_after_steps=2)
    assert second.resumed_from == first.last_step
    assert second.last_step == first.last_step + 2 and second.stopped_by is None
    steps = [r["step"] for r in read_monitor(second.monitor_path)]
    assert steps == list(range(2, first.last_step + 3, 2))
    assert [r["step"] for r in read_metrics(second.metrics_path)] == list(
        range(1, second.last_step + 1)
    )


@pytest.mark.slow
def test_grpo_runs_the_monitor_callback(tiny_model_dir, tiny_reward_dir, tmp_path):
    from cai.testing.data import write_random_prompts
    from cai.train.preference import OnlineTrainConfig, train_grpo

    config = OnlineTrainConfig(
        model=str(tiny_model_dir),
        output_dir=str(tmp_path / "grpo"),
        prompts=write_random_prompts(tmp_path / "prompts.jsonl", n=4),
        reward_models=[str(tiny_reward_dir)],
        num_generations=2,
        max_completion_length=8,
        per_device_train_batch_size=2,
        max_steps=2,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        dtype="float32",
        monitor={
            "prompts": str(_monitor_prompts(tmp_path, 4)),
            "every": 1,
            "judge": {"backend": {"kind": "transformers", "model": str(tiny_model_dir)}},
        },
    )
    result = train_grpo(config)
    assert result.global_step == 2
    rows = read_monitor(tmp_path / "grpo" / "logs" / "monitor.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row["reward_mean"] is not None and row["reference_reward_mean"] is not None
        assert row["judged"] > 0 and row["kl"] == row["kl"]
    assert (tmp_path / "grpo" / "monitor.png").stat().st_size > 1000
