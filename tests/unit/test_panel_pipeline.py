"""Judge panels through the pipeline and `cai run`: config, labels, summary, resume, refusals."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import yaml

from cai.backends.base import ChoiceRequest
from cai.backends.scripted import ScriptedBackend
from cai.config import ConfigError
from cai.pipeline import load_pipeline_config, run_pipeline
from cai.preference_data import load_preferences

LONG_LOGIT = 2.0


def write_prompts(path, count=4):
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"prompt": f"Question number {i}?"}) + "\n")
    return path


def write_config(tmp_path, **extra):
    write_prompts(tmp_path / "prompts.jsonl")
    data = {
        "name": "panel",
        "output_dir": str(tmp_path / "out"),
        "prompts": {"path": "prompts.jsonl"},
        "policy": {"kind": "scripted", "model": "policy"},
        "judge_backends": [
            {"kind": "scripted", "model": "first-fan"},
            {"kind": "scripted", "model": "second-fan"},
        ],
        "sample": {"n": 2, "max_tokens": 16},
        "judge": {"principles_per_pair": 1},
        "preferences": {"format": "jsonl"},
        "chunk_size": 2,
        **extra,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def slots(request: ChoiceRequest) -> list[int]:
    """The sampled responses ("response k <digest>") in the two answer slots, in slot order."""
    text = "\n".join(m["content"] for m in request.messages or [])
    found = sorted((text.index(f"response {k} "), k) for k in range(3) if f"response {k} " in text)
    return [k for _, k in found]


def fan_of(liking: list[int], logit: float):
    """A judge preferring the response earlier in `liking` by log-odds `logit`, either order."""

    def score(request: ChoiceRequest) -> list[float]:
        first, second = slots(request)
        return [logit, 0.0] if liking.index(first) < liking.index(second) else [0.0, logit]

    return score


class Opinionated(ScriptedBackend):
    """`kind: scripted` members whose verdicts depend on their model name."""

    SCORES: ClassVar[dict] = {
        "scripted:first-fan": fan_of([0, 1, 2], 2.0),
        "scripted:second-fan": fan_of([1, 0, 2], 1.0),
        "scripted:first-fan-too": fan_of([0, 1, 2], 2.0),
    }

    def __init__(self, *args, model_id="scripted", **kwargs):
        score = self.SCORES.get(model_id)
        if score is not None:
            kwargs["score"] = score
        super().__init__(*args, model_id=model_id, **kwargs)


@pytest.fixture
def opinionated(monkeypatch):
    monkeypatch.setattr("cai.backends.ScriptedBackend", Opinionated)


def test_config_refuses_both_judge_settings_and_mismatched_weights(tmp_path):
    path = write_config(tmp_path)
    with pytest.raises(ConfigError, match="judge_backend and judge_backends"):
        load_pipeline_config(path, ["judge_backend={kind: scripted, model: x}"])
    with pytest.raises(ConfigError, match="2 entries for 3 judges"):
        load_pipeline_config(
            path, ["judge_backends=[{kind: scripted}, {kind: scripted}, {kind: scripted}]",
                   "panel.weights=[1, 2]"],
        )  # fmt: skip
    with pytest.raises(ConfigError, match="need a panel"):
        load_pipeline_config(path, ["judge_backends=null", "panel.combine=mean_prob"])


def test_cli_run_with_two_scripted_members(tmp_path, opinionated):
    """Member one gives response 0 log-odds 2, member two gives response 1 log-odds 1: the
    panel (equal weights, mean log-odds) gives response 0 sigmoid((2 - 1) / 2) = 0.622459."""
    from typer.testing import CliRunner

    from cai.cli.app import app
    from cai.judge.judged import iter_judged

    path = write_config(tmp_path)
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    rows = load_preferences(out / "preferences.jsonl")
    assert len(rows) == 4
    assert rows["prob_chosen"] == pytest.approx([0.622459] * 4, abs=1e-6)
    assert all(c[0]["content"].startswith("response 0 ") for c in rows["chosen"])
    assert rows["judge_members"] == [["first-fan", "second-fan"]] * 4
    assert rows["prob_chosen_by_member"] == [pytest.approx([0.880797, 0.268941], abs=1e-6)] * 4
    judged = list(iter_judged(out / "judgments"))
    votes = [[(v.member, round(v.prob_a, 6)) for v in j.pair.members] for j in judged]
    # response 0 is a or b depending on sampling order; here each pair lists it as a
    assert votes == [[("first-fan", 0.880797), ("second-fan", 0.268941)]] * 4
    summary = json.loads((out / "summary.json").read_text())
    panel = {m["member"]: m for m in summary["stages"]["judge"]["panel"]}
    assert panel["first-fan"]["agreement"] == 1.0 and panel["first-fan"]["pairs"] == 4
    assert panel["second-fan"]["agreement"] == 0.0
    assert "panel members agreeing" in result.output
    fingerprint = json.loads((out / "judgments" / "job.json").read_text())["fingerprint"]
    assert fingerprint["panel"] == {
        "members": ["first-fan", "second-fan"],
        "weights": [1.0, 1.0],
        "combine": "mean_logodds",
        "min_members": 2,
    }
    assert "scripted:first-fan" in fingerprint["judge_model"]
    assert "scripted:second-fan" in fingerprint["judge_model"]
    card = (out / "preferences.jsonl.README.md").read_text()
    assert '"members": ["first-fan", "second-fan"]' in card


def test_a_changed_panel_refuses_to_mix_with_old_judgments(tmp_path, opinionated):
    from cai.jobs import JobConfigMismatchError

    path = write_config(tmp_path)
    run_pipeline(load_pipeline_config(path))
    with pytest.raises(JobConfigMismatchError, match=r"panel\.weights"):
        run_pipeline(load_pipeline_config(path, ["panel.weights=[3, 1]"]))
    # swapping a member for another model changes the panel too
    swapped = [
        "judge_backends=[{kind: scripted, model: first-fan-too}, "
        "{kind: scripted, model: second-fan}]"
    ]
    with pytest.raises(JobConfigMismatchError, match=r"panel\.members"):
        run_pipeline(load_pipeline_config(path, swapped))
    result = run_pipeline(load_pipeline_config(path, ["panel.weights=[3, 1]", "overwrite=true"]))
    # weights 3:1 -> (3 * 2 - 1) / 4 = 1.25 -> sigmoid(1.25) = 0.777300
    rows = load_preferences(result.dataset)
    assert rows["prob_chosen"] == pytest.approx([0.777300] * 4, abs=1e-6)


def test_a_panel_with_ray_is_refused_at_check_time(tmp_path):
    path = write_config(tmp_path, executor={"kind": "ray"})
    with pytest.raises(ConfigError, match=r"executor\.kind: local"):
        run_pipeline(load_pipeline_config(path))
    assert not (tmp_path / "out" / "samples").exists()


def test_member_sharing_the_policy_spec_reuses_its_engine(tmp_path, opinionated):
    path = write_config(
        tmp_path,
        policy={"kind": "scripted", "model": "first-fan"},
        judge_backends=[
            {"kind": "scripted", "model": "first-fan"},
            {"kind": "scripted", "model": "second-fan"},
        ],
    )
    policy = Opinionated(model_id="scripted:first-fan")
    result = run_pipeline(load_pipeline_config(path), policy_backend=policy)
    assert policy.calls["score"] == 4 * 2  # 4 pairs x 2 orders x 1 principle, on the policy
    assert result.summary["stages"]["preferences"]["rows_written"] == 4


def test_kwise_rankings_use_the_panel_for_every_pair(tmp_path, opinionated):
    """n = 3: pairs (0, 1) -> sigmoid((2 - 1) / 2), (0, 2) and (1, 2) -> sigmoid((2 + 1) / 2);
    Bradley-Terry ranks 0 > 1 > 2, so best-vs-worst rows choose response 0 over 2."""
    path = write_config(tmp_path, sample={"n": 3, "max_tokens": 16})
    result = run_pipeline(load_pipeline_config(path))
    rows = load_preferences(result.dataset)
    assert set(rows["method"]) == {"best_vs_worst"} and len(rows) == 4
    assert all(c[0]["content"].startswith("response 0 ") for c in rows["chosen"])
    assert all(r[0]["content"].startswith("response 2 ") for r in rows["rejected"])
    panel = {m["member"]: m for m in result.summary["stages"]["judge"]["panel"]}
    assert (panel["first-fan"]["pairs"], panel["first-fan"]["agreement"]) == (12, 1.0)
    assert panel["second-fan"]["pairs"] == 12
    assert panel["second-fan"]["agreement"] == pytest.approx(2 / 3)
