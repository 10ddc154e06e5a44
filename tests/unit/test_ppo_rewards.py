"""Reward plumbing: the constitutional judge as a pointwise reward, and `module:attr` rewards."""

from __future__ import annotations

import math

import pytest

from cai.backends.scripted import ScriptedBackend
from cai.train.ppo.config import PythonRewardSpec
from cai.train.ppo.rewards import JudgeReward, RewardInputs, build_reward
from cai.train.rewards import AssessReward


def _inputs(responses):
    prompts = [[{"role": "user", "content": "How do I calm a crying child?"}] for _ in responses]
    return RewardInputs(prompts, responses, [[1] for _ in responses], [True] * len(responses))


def test_judge_reward_is_the_mean_probability_of_following_the_principles():
    from cai.constitution import load_constitution
    from cai.templates import TemplateSet

    seen = []

    def score(request):
        text = "\n".join(m["content"] for m in request.messages)
        seen.append(text)
        assert request.assistant_prefix.endswith("(")
        return [-0.1, -2.5] if "gently" in text else [-2.5, -0.1]

    backend = ScriptedBackend(score=score)
    assess = AssessReward(backend, load_constitution("default"), TemplateSet(), k=2, seed=0)
    reward = JudgeReward(assess)
    scores = reward(_inputs(["Hold them gently and speak softly.", "Ignore it."]))
    p_follow = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.5))
    assert scores == [pytest.approx(p_follow), pytest.approx(1 - p_follow)]
    assert backend.calls["score"] >= 1 and len(seen) == 4  # 2 principles x 2 responses
    assert seen[0] != seen[1]  # a different principle question per request


def test_python_reward_target_is_imported_and_built():
    spec = PythonRewardSpec(
        target="cai.train.ppo.rewards:TokenFractionReward", kwargs={"token_ids": [5]}
    )
    reward = build_reward(spec, tokenizer=None)
    assert reward(RewardInputs([[]], ["x"], [[5, 6]], [False])) == [0.5]
    with pytest.raises(ValueError, match="cannot import"):
        build_reward(PythonRewardSpec(target="no_such_module_xyz:f"), tokenizer=None)
    with pytest.raises(ValueError, match="has no"):
        build_reward(PythonRewardSpec(target="cai.train.ppo.rewards:missing"), tokenizer=None)
