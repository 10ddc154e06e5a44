"""Soft-label loss by hand, preference-row preparation, judge rewards, run plumbing."""

from __future__ import annotations

import math

import pytest

from cai.backends.base import BackendError
from cai.backends.scripted import ScriptedBackend
from cai.tables import InputFormatError
from cai.train.config import ConfigError
from cai.train.preference import (
    DPOTrainConfig,
    OnlineTrainConfig,
    _online_reward_funcs,
)
from cai.train.reward import prepare_rows
from cai.train.reward_loss import soft_label_loss
from cai.train.rewards import AssessReward, JudgeRewardSpec


def _bce(d: float, p: float) -> float:
    sig = 1 / (1 + math.exp(-d))
    return -(p * math.log(sig) + (1 - p) * math.log(1 - sig))


def test_soft_label_loss_matches_hand_computed_values():
    torch = pytest.importorskip("torch")
    r_c = torch.tensor([math.log(3.0), 0.0, 1.0], requires_grad=True)
    r_r = torch.tensor([0.0, 0.0, 2.0])
    p = torch.tensor([0.9, 0.3, 1.0])
    # row 1: sigmoid(ln 3) = 0.75 -> -(0.9 ln 0.75 + 0.1 ln 0.25); row 2: ln 2; row 3: ln(1 + e)
    rows = [0.9 * -math.log(0.75) + 0.1 * -math.log(0.25), math.log(2.0), math.log(1 + math.e)]
    assert rows[0] == pytest.approx(0.3975433, abs=1e-6)
    loss = soft_label_loss(r_c, r_r, p)
    assert loss.item() == pytest.approx(sum(rows) / 3, abs=1e-6)
    assert loss.item() == pytest.approx(0.8013174, abs=1e-6)
    loss.backward()  # d loss / d r_chosen = (sigmoid(d) - p) / n
    expected = [(0.75 - 0.9) / 3, (0.5 - 0.3) / 3, (1 / (1 + math.e) - 1.0) / 3]
    assert r_c.grad.tolist() == pytest.approx(expected, abs=1e-6)

    weighted = soft_label_loss(r_c.detach(), r_r, p, torch.tensor([1.0, 2.0, 0.5]))
    assert weighted.item() == pytest.approx((rows[0] + 2 * rows[1] + 0.5 * rows[2]) / 3, abs=1e-6)


def test_hard_labels_reduce_to_the_bradley_terry_loss():
    torch = pytest.importorskip("torch")
    d = torch.tensor([0.3, -1.2, 2.0])
    loss = soft_label_loss(d, torch.zeros(3), torch.ones(3))
    assert loss.item() == pytest.approx(-torch.nn.functional.logsigmoid(d).mean().item(), 1e-6)
    # a confident label on a wrong-way margin costs more than an unsure one
    assert _bce(-1.0, 0.95) > _bce(-1.0, 0.6)


def _rows(**extra):
    from datasets import Dataset

    base = {
        "prompt": [[{"role": "user", "content": "q"}]] * 3,
        "chosen": [[{"role": "assistant", "content": "c"}]] * 3,
        "rejected": [[{"role": "assistant", "content": "r"}]] * 3,
    }
    return Dataset.from_dict({**base, **extra})


def test_prepare_rows_reads_probabilities_sources_and_weights():
    ds = prepare_rows(
        _rows(prob_chosen=[0.8, 0.5, 1.0], source=["ai", "ai", "human"], margin=[1.0, 2.0, 3.0]),
        "soft",
        {"ai": 1.0, "human": 3.0},
        "mixed.jsonl",
    )
    assert ds["prob_chosen"] == pytest.approx([0.8, 0.5, 1.0])
    assert ds["sample_weight"] == [1.0, 1.0, 3.0]
    assert "margin" not in ds.column_names
    hard = prepare_rows(_rows(prob_chosen=[0.8, 0.5, 0.2]), "hard", {"ai": 1.0}, "x")
    assert hard["prob_chosen"] == [1.0, 0.5, 0.0]
    plain = prepare_rows(_rows(), "soft", {"ai": 1.0}, "plain TRL data")
    assert plain["prob_chosen"] == [1.0, 1.0, 1.0] and plain["sample_weight"] == [1.0] * 3


def test_prepare_rows_refuses_what_it_cannot_train_on():
    with pytest.raises(InputFormatError, match=r"source\(s\) crowd"):
        prepare_rows(_rows(source=["ai", "crowd", "ai"]), "soft", {"ai": 1.0}, "d")
    with pytest.raises(InputFormatError, match=r"row 1, value 1.5"):
        prepare_rows(_rows(prob_chosen=[0.7, 1.5, 0.9]), "soft", {"ai": 1.0}, "d")
    from datasets import Dataset

    with pytest.raises(InputFormatError, match="missing column"):
        prepare_rows(Dataset.from_dict({"chosen": ["a"]}), "soft", {"ai": 1.0}, "d")


# --- the judge as a reward ----------------------------------------------------------------


def _assess_score(request):
    """Says "follows" (A) with high probability exactly when the reply is polite."""
    body = request.messages[-1]["content"].split("<response>\n", 1)[1].split("\n</response>")[0]
    return [0.0, -3.0] if "please" in body else [-3.0, 0.0]


def _judge(score, k=2):
    from cai.constitution import load_constitution
    from cai.templates import TemplateSet

    backend = ScriptedBackend(score=score)
    return AssessReward(backend, load_constitution("default"), TemplateSet(), k=k), backend


def test_assess_reward_is_the_follow_probability_averaged_over_principles():
    reward, backend = _judge(_assess_score, k=2)
    prompts = [[{"role": "user", "content": "help me"}]] * 2
    completions = [
        [{"role": "assistant", "content": "please let me help"}],
        [{"role": "assistant", "content": "no"}],
    ]
    logged = {}
    out = reward(prompts, completions, log_metric=lambda k, v: logged.update({k: v}))
    high = 1 / (1 + math.exp(-3.0))
    assert out == pytest.approx([high, 1 - high])
    assert backend.calls["score"] == 4  # 2 completions x 2 principles, one batch
    assert logged == {"judge_reward/failures": 0.0}
    assert reward(["plain text prompt"], ["please"]) == pytest.approx([high])


def test_assess_reward_records_failures_as_none_never_a_number():
    def score(request):
        if "overflow" in request.messages[-1]["content"]:
            raise BackendError("prompt too long")
        return _assess_score(request)

    reward, _ = _judge(score, k=1)
    out = reward(["q1", "q2"], ["please", "overflow " * 3])
    assert out[0] == pytest.approx(1 / (1 + math.exp(-3.0)))
    assert out[1] is None
    assert len(reward.failures) == 1 and reward.failures[0]["kind"] == "BackendError"


# --- run plumbing ----------------------------------------------------------------------------


def test_trl_kwargs_map_shared_settings_and_pass_extras_through():
    config = DPOTrainConfig(
        model="m", output_dir="o", train_data="d", dtype="float32", trl={"eval_steps": 7}
    )
    kwargs = config.trl_kwargs()
    assert kwargs["bf16"] is False and kwargs["fp16"] is False
    assert kwargs["eval_steps"] == 7 and kwargs["output_dir"] == "o"
    assert DPOTrainConfig(model="m", output_dir="o", train_data="d", dtype="bfloat16").trl_kwargs()[
        "bf16"
    ]
    with pytest.raises(ConfigError, match="dtype"):
        DPOTrainConfig(model="m", output_dir="o", train_data="d", dtype="int8").trl_kwargs()


def test_online_training_needs_a_reward(tmp_path):
    base = {"model": "m", "output_dir": "o", "prompts": "p.jsonl"}
    with pytest.raises(InputFormatError, match="no reward"):
        _online_reward_funcs(OnlineTrainConfig(**base))
    with pytest.raises(InputFormatError, match="not a directory"):
        _online_reward_funcs(OnlineTrainConfig(**base, reward_models=[str(tmp_path / "x")]))
    spec = JudgeRewardSpec(principles_per_completion=1)
    config = OnlineTrainConfig(
        **base, reward_models=[str(tmp_path)], judge=spec, reward_weights=[1.0]
    )
    with pytest.raises(InputFormatError, match="2 rewards"):
        _online_reward_funcs(config, judge_backend=ScriptedBackend())
    ok = config.model_copy(update={"reward_weights": [1.0, 0.5]})
    funcs = _online_reward_funcs(ok, judge_backend=ScriptedBackend())
    assert funcs[0] == str(tmp_path) and isinstance(funcs[1], AssessReward)


def _slot(text: str, label: str) -> str:
    return text.split(f"({label})\n<response>\n", 1)[1].split("\n</response>", 1)[0]


def test_pairwise_reward_is_the_debiased_probability_of_beating_the_reference():
    from cai.backends.scripted import ScriptedBackend
    from cai.train.rewards import build_judge_reward

    def prefers_good(request):
        text = request.messages[-1]["content"]
        return [float("good" in _slot(text, "A")), float("good" in _slot(text, "B"))]

    backend = ScriptedBackend(score=prefers_good)
    spec = JudgeRewardSpec(mode="pairwise", judge={"principles_per_pair": 1})
    reward = build_judge_reward(spec, backend=backend)
    prompts = [[{"role": "user", "content": "q"}]] * 3
    completions = [[{"role": "assistant", "content": t}] for t in ("good", "meh", "")]
    out = reward(prompts, completions, reference=["meh", "good", "good"], prompt_id=["p"] * 3)
    p = 1 / (1 + math.exp(-1.0))
    assert out[:2] == pytest.approx([p, 1 - p])
    assert out[2] is None  # an empty completion is a recorded failure, not a score
    assert reward.failures[0]["failures"][0].kind == "empty_response"
    assert backend.calls["score"] == 4  # 2 judgeable pairs x 1 principle x 2 orders
    with pytest.raises(ValueError, match="'reference' column"):
        reward(prompts[:1], completions[:1])


def test_load_table_reads_every_format_cai_writes(tmp_path):
    from cai.tables import load_table

    rows = _rows(prob_chosen=[0.8, 0.6, 0.9], source=["ai", "human", "ai"])
    rows.save_to_disk(str(tmp_path / "prefs"))
    rows.to_parquet(str(tmp_path / "prefs.parquet"))
    rows.to_json(str(tmp_path / "prefs.jsonl"))
    for name in ("prefs", "prefs.parquet", "prefs.jsonl"):
        loaded = load_table(tmp_path / name)
        assert loaded["prob_chosen"] == pytest.approx([0.8, 0.6, 0.9]), name
        assert loaded[1]["chosen"] == [{"role": "assistant", "content": "c"}]
    with pytest.raises(InputFormatError, match="no such file"):
        load_table(tmp_path / "missing.jsonl")
    (tmp_path / "prefs.txt").write_text("x")
    with pytest.raises(InputFormatError, match=r"unknown file type '\.txt'"):
        load_table(tmp_path / "prefs.txt")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputFormatError):
        load_table(tmp_path / "empty.jsonl", allow_empty=False)
    (tmp_path / "broken.jsonl").write_text('{"chosen": [1, 2\n')
    with pytest.raises(InputFormatError, match=r"broken\.jsonl:1:17 row 1: not valid JSON"):
        load_table(tmp_path / "broken.jsonl")
