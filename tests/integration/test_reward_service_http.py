"""The reward service for real: the tiny model's judge on vLLM behind HTTP on 127.0.0.1, a TRL
GRPO run rewarded by it alone, OpenRLHF's request shape, and a service killed mid-training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from cai.reward import RemoteJudgeReward, RewardServiceError
from cai.serving import free_port


@pytest.fixture(scope="module")
def vllm_service(vllm_backend):
    """The service over the session's vLLM engine (nothing new is started but the HTTP side)."""
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig
    from cai.ledger import counting
    from cai.reward.app import ServiceThread
    from cai.reward.scoring import JudgeScorer
    from cai.reward.service import RewardService
    from cai.templates import TemplateSet

    config = JudgeConfig(principles_per_pair=1)
    scorer = JudgeScorer(
        counting(vllm_backend, "reward"), load_constitution("default"), TemplateSet(None), config
    )
    with ServiceThread(RewardService(scorer)) as server:
        yield server


@pytest.mark.vllm
def test_openrlhf_and_compare_on_the_real_judge(vllm_service, vllm_backend):
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
    from cai.records import pair_key
    from cai.templates import TemplateSet

    prompt = "<|im_start|>user\nHow do I boil an egg?<|im_end|>\n<|im_start|>assistant\n"
    body = {  # exactly what OpenRLHF's SingleTurnAgentExecutor posts to --remote_rm_url
        "query": [prompt + "Put it in boiling water for nine minutes.<|im_end|>"],
        "prompts": [prompt],
        "labels": [""],
    }
    answer = httpx.post(vllm_service.url + "/get_reward", json=body, timeout=120).json()
    assert set(answer) == {"rewards", "scores", "extra_logs"}
    assert 0.0 < answer["rewards"][0] < 1.0 and answer["scores"] == answer["rewards"]

    chat = [{"role": "user", "content": "Name a colour."}]
    chosen, rejected = "Blue.", "I will not answer."
    results = httpx.post(
        vllm_service.url + "/v1/compare",
        json={"items": [{"prompt": chat, "chosen": chosen, "rejected": rejected}]},
        timeout=120,
    ).json()["results"]
    judge = PairwiseJudge(
        vllm_backend,
        load_constitution("default"),
        TemplateSet(None),
        JudgeConfig(principles_per_pair=1),
    )
    direct = judge.judge_pairs(
        [
            PairToJudge(
                key=pair_key(chat, chosen, rejected),
                conversation=chat,
                response_a=chosen,
                response_b=rejected,
            )
        ]
    )[0]
    assert results[0]["prob_chosen"] == pytest.approx(direct.prob_a, abs=1e-6)
    assert results[0]["per_order"] == pytest.approx(direct.per_order, abs=1e-6)


@pytest.mark.vllm
@pytest.mark.usefixtures("single_torch_thread")
def test_grpo_trains_on_the_remote_judge_alone_in_rank_mode(tiny_model_dir, vllm_service, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    reward = RemoteJudgeReward(vllm_service.url, mode="rank", deadline_s=120)
    prompts = ["Say hello.", "Name a fruit.", "Count to three.", "Describe the sky."]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=8,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
    )
    trainer = GRPOTrainer(
        model=str(tiny_model_dir), reward_funcs=[reward], args=args, train_dataset=dataset
    )
    before = vllm_service.service.batcher.stats.items
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [row for row in trainer.state.log_history if "rewards/cai_judge_rank/mean" in row]
    assert len(logged) == 2
    # rank rewards are centred per group: each step's mean is 0, and they are not all 0
    assert all(abs(row["rewards/cai_judge_rank/mean"]) < 1e-5 for row in logged)
    assert any(row["rewards/cai_judge_rank/std"] > 0 for row in logged)
    assert vllm_service.service.batcher.stats.items - before >= 2  # a group per prompt, served
    assert reward.item_errors == 0


def _start_service(port: int, log) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "cai.cli.app",
        "reward",
        "serve",
        "--backend",
        "scripted",
        "--model",
        "judge",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the reward service did not start")


def test_a_service_killed_mid_run_makes_calls_wait_then_go_on_or_fail_loudly(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prompts, completions = ["q", "q", "r", "r"], ["a", "bb", "c", "dd"]
    with (tmp_path / "service.log").open("w") as log:
        service = _start_service(port, log)
        reward = RemoteJudgeReward(url, mode="score", deadline_s=60, backoff_s=0.1)
        assert reward(prompts, completions) == [0.5] * 4  # the scripted judge has no opinion
        service.send_signal(signal.SIGKILL)
        service.wait(10)

        # a reward call while the service is down waits, and goes on once it is back
        answers: list = []
        waiting = threading.Thread(target=lambda: answers.append(reward(prompts, completions)))
        waiting.start()
        time.sleep(0.5)
        assert waiting.is_alive() and not answers
        service = _start_service(port, log)
        waiting.join(60)
        assert answers == [[0.5] * 4]

        # down for good: one clear error at the deadline, never a reward of 0
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        impatient = RemoteJudgeReward(url, mode="score", deadline_s=1.0, backoff_s=0.1)
        with pytest.raises(RewardServiceError) as info:
            impatient(prompts, completions)
    assert url in str(info.value) and "cai reward serve" in str(info.value)
    assert os.path.getsize(tmp_path / "service.log") > 0
