"""Each benchmark counted its own way, on the scripted judge through the real stage runner:
pairs, best-of-4, RM-Bench's style matrix, RewardBench 2's Ties formula, MT-Bench votes;
the grid's cells, resume, the report files and the anchors' verdict lines."""

from __future__ import annotations

import json
import math

import pytest

from cai.backends.scripted import ScriptedBackend
from cai.judge_eval.anchors import verdict
from cai.judge_eval.evaluate import run_judge_eval
from cai.judge_eval.grid import JudgeEvalConfig, apply_judge_kind
from cai.judge_eval.scoring import ItemResult, rewardbench_sections, ties_score


def knows_the_answer(request) -> list[float]:
    """Prefers the slot holding the text with RIGHT in it (the options list A before B)."""
    text = request.messages[-1]["content"] if request.messages else request.text
    right, wrong = text.find("RIGHT"), text.find("WRONG")
    a_right = right != -1 and (wrong == -1 or right < wrong)
    return [math.log(0.9), math.log(0.1)] if a_right else [math.log(0.1), math.log(0.9)]


def first_slot(request) -> list[float]:
    return [math.log(0.7), math.log(0.3)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def grid(tmp_path, sources, **extra) -> JudgeEvalConfig:
    return JudgeEvalConfig.model_validate(
        {
            "benchmarks": [{"source": s} for s in sources],
            "judges": [{"name": "oracle", "backend": {"kind": "scripted", "model": "oracle"}}],
            "judge": {"principles_per_pair": 1},
            "bootstrap": {"n_resamples": 200},
            "output_dir": str(tmp_path / "out"),
            **extra,
        }
    )


def test_benchmarks_counted_their_own_way(tmp_path):
    rb = write_jsonl(tmp_path / "rb.jsonl", [
        {"prompt": f"q{i}", "chosen": f"RIGHT {i}", "rejected": f"WRONG {i}", "id": i,
         "subset": "alpacaeval-easy" if i % 2 else "math-prm"} for i in range(6)
    ] + [{"prompt": "q", "chosen": "same", "rejected": "same", "subset": "math-prm", "id": 6}])  # fmt: skip
    rb2 = write_jsonl(tmp_path / "rb2.jsonl", [
        {"id": "1", "prompt": "p", "chosen": ["RIGHT a"], "rejected": ["WRONG b", "WRONG c", "WRONG d"],
         "num_correct": 1, "subset": "Math"},
        {"id": "ref:1", "prompt": "r", "chosen": ["RIGHT x"], "rejected": ["WRONG y", "WRONG z"],
         "num_correct": 1, "subset": "Ties"},
        {"id": "tied:1", "prompt": "t", "chosen": ["RIGHT x", "RIGHT w"], "rejected": ["WRONG y"],
         "num_correct": 2, "subset": "Ties"},
    ])  # fmt: skip
    rm = write_jsonl(tmp_path / "rm.jsonl", [
        {"id": "1", "prompt": "p", "domain": "safety-refuse",
         "chosen": ["RIGHT 1", "RIGHT 22", "RIGHT 333"], "rejected": ["WRONG 1", "WRONG 22", "WRONG 333"]},
    ])  # fmt: skip
    conv = lambda a: [{"role": "user", "content": "q"}, {"role": "assistant", "content": a}]  # noqa: E731
    mt = write_jsonl(tmp_path / "mt.jsonl", [
        {"question_id": 1, "model_a": "m1", "model_b": "m2", "judge": f"h{k}", "turn": 1,
         "winner": w, "conversation_a": conv("RIGHT one"), "conversation_b": conv("WRONG two")}
        for k, w in enumerate(["model_a", "model_b", "tie"])
    ])  # fmt: skip
    jb = write_jsonl(tmp_path / "jb.jsonl", [
        {"pair_id": "p1", "original_id": "o", "source": "livebench-math", "question": "3*3?",
         "response_model": "m", "response_A": "WRONG 6", "response_B": "RIGHT 9", "label": "B>A"},
    ])  # fmt: skip
    hh = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": "\n\nHuman: Hi?\n\nAssistant: RIGHT hello", "rejected": "\n\nHuman: Hi?\n\nAssistant: WRONG go"},
    ])  # fmt: skip
    config = grid(tmp_path, [rb, rb2, rm, mt, jb, hh])
    report = run_judge_eval(config, backends={"oracle": ScriptedBackend(score=knows_the_answer)})
    (cell,) = report.cells
    scores = {b.benchmark: b for b in cell.benchmarks}
    assert scores["rb"].score == 1.0 and set(scores["rb"].sections) == {"Chat", "Reasoning"}
    assert scores["rb"].flip_rate == 0.0 and scores["rb"].tie_rate == 0.0
    rb2_score = scores["rb2"]
    ties = next(s for s in rb2_score.subsets if s.subset == "Ties")
    assert ties.accuracy == 1.0
    assert ties.score is not None and 0.6 <= ties.score <= 1.01
    assert rb2_score.score == pytest.approx((1.0 + ties.score) / 2)
    rm_all = scores["rm"].subsets[0]
    assert (rm_all.hard, rm_all.normal, rm_all.easy) == (1.0, 1.0, 1.0)
    assert scores["rm"].sections == {"safety": 1.0}
    votes = scores["mt"].overall
    assert (votes.scored, votes.accuracy) == (2, 0.5)  # the tie vote is left out
    assert votes.with_ties == pytest.approx(1 / 3)
    assert scores["mt"].comparisons == 3 and len(scores["rb"].principles) >= 1
    assert (scores["jb"].score, scores["jb"].subsets[0].subset) == (1.0, "math")
    assert (scores["hh"].format, scores["hh"].score) == ("hh", 1.0)
    out = tmp_path / "out"
    for name in ("report.json", "report.md", "report.html", "accuracy.png"):
        assert (out / name).is_file()
    markdown = (out / "report.md").read_text()
    assert "rb2 (rewardbench2)" in markdown
    assert (
        scores["rb"].malformed == 1
        and "row 7 (line 7): chosen and rejected are the same text" in markdown
    )
    assert json.loads((out / "report.json").read_text())["cells"][0]["cell"] == "oracle"
    items = [json.loads(line) for line in (out / "cells/oracle/mt/items.jsonl").open()]
    assert [i["outcomes"][0]["judge_says"] for i in items] == ["a"] * 3  # one pair, three votes
    assert [i["value"] for i in items] == [1.0, 0.0, None]


def test_grid_cells_resume_and_position_bias(tmp_path):
    rb = write_jsonl(tmp_path / "rb.jsonl", [
        {"prompt": f"q{i}", "chosen": f"RIGHT {i}", "rejected": f"WRONG {i}", "id": i} for i in range(4)
    ])  # fmt: skip
    config = grid(tmp_path, [rb], constitutions=["default", "helpful-only"], methods=["logprob"])
    assert [c.name for c in config.cells()] == ["oracle__default", "oracle__helpful-only"]
    backend = ScriptedBackend(score=first_slot)
    report = run_judge_eval(config, backends={"oracle": backend})
    for cell in report.cells:
        (b,) = cell.benchmarks
        # a judge that reads only the slot: both orders disagree, debiased to exact ties
        assert (b.flip_rate, b.tie_rate, b.overall.accuracy) == (1.0, 1.0, 0.5)
        assert b.run.pairs_judged_now == 4 and b.run.tokens > 0
    calls = backend.calls["score"]
    again = run_judge_eval(config, backends={"oracle": backend})
    assert backend.calls["score"] == calls  # every cell resumed: no new judge call
    assert all(c.benchmarks[0].run.pairs_resumed == 4 for c in again.cells)
    for first, rerun in zip(report.cells, again.cells, strict=True):  # seconds kept over runs
        assert rerun.benchmarks[0].run.judge_seconds == first.benchmarks[0].run.judge_seconds


def test_ties_formula_matches_rewardbench2():
    ref = ItemResult(item_id="ref:1", subset="Ties", scoring="ties", value=1.0,
                     ties_stats=(True, None, 1.0), tie_kind="ref", tie_prompt=1)  # fmt: skip
    tied = ItemResult(item_id="tied:1", subset="Ties", scoring="ties", value=1.0,
                      ties_stats=(True, 1.0, 3.0), tie_kind="tied", tie_prompt=1)  # fmt: skip
    # 0.3 tied acc + 0.3 ref acc + 0.2 (3 > 1) + 0.2 (min(1, 3) > 1 is false) + 0.01 tanh(0)
    assert ties_score([ref, tied])[0] == pytest.approx(0.8)
    score, note = ties_score([ref])
    assert score == 1.0 and "plain accuracy" in note


def test_rewardbench_section_weights():
    sections = rewardbench_sections({"math-prm": 1.0, "hep-python": 0.0, "alpacaeval-easy": 0.5})
    assert sections["Reasoning"] == pytest.approx(984 / (984 + 164))
    assert sections["Chat"] == 0.5


def test_verdict_lines_and_grid_checks():
    line = verdict("rewardbench2", 0.26, sampled=True, malformed=2, method="logprob")
    assert "Skywork" in line and "near chance" in line and "--limit sample" in line
    assert "Not like-for-like" in line
    assert "no published anchor" in verdict("rmbench", 0.7, False, 0, "cot")
    with pytest.raises(ValueError, match="format"):
        JudgeEvalConfig.model_validate(
            {
                "benchmarks": [{"source": "x", "format": "nope"}],
                "judges": [{"backend": {"model": "m"}}],
            }
        )
    with pytest.raises(ValueError, match="exactly one"):
        JudgeEvalConfig.model_validate({"benchmarks": [{"source": "x"}], "judges": [{}]})
    options = apply_judge_kind({"judges": [{"backend": {"model": "m"}}], "judge_kind": "openai"})
    assert options["judges"][0]["backend"]["kind"] == "openai"


def states_the_answer(prompt, params, index) -> str:
    text = prompt[-1]["content"] if not isinstance(prompt, str) else prompt
    return f"Checking both, Response {'A' if text.find('RIGHT') < text.find('WRONG') else 'B'} is right."


def test_cot_verdict_and_panel_cells(tmp_path):
    rb = write_jsonl(tmp_path / "rb.jsonl", [
        {"prompt": f"q{i}", "chosen": f"RIGHT {i}", "rejected": f"WRONG {i}", "id": i} for i in range(3)
    ])  # fmt: skip
    config = grid(
        tmp_path,
        [rb],
        judges=[
            {"name": "oracle", "backend": {"kind": "scripted", "model": "oracle"}},
            {"name": "duo", "panel": [{"kind": "scripted", "model": "p1"}, {"kind": "scripted", "model": "p2"}]},
        ],
        methods=["cot"],
    )  # fmt: skip
    backend = ScriptedBackend(respond=states_the_answer)  # scores stay uniform
    report = run_judge_eval(config, backends={"oracle": backend})
    (cot,) = report.cells[0].benchmarks
    assert backend.calls["generate"] > 0 and cot.tie_rate == 1.0  # uniform scores: all ties
    (panel,) = report.cells[1].benchmarks
    assert panel.overall.scored == 3 and report.cells[1].judge_models == ["p1", "p2"]
    scored = backend.calls["score"]
    verdict_grid = grid(
        tmp_path, [rb], methods=["verdict"], output_dir=str(tmp_path / "verdict")
    )
    (by_label,) = run_judge_eval(verdict_grid, backends={"oracle": backend}).cells[0].benchmarks
    # the written answers read by the label they state: every pair right, both orders agree,
    # and no log-probs asked for
    assert (by_label.score, by_label.flip_rate, by_label.tie_rate) == (1.0, 0.0, 0.0)
    assert backend.calls["score"] == scored
    with pytest.raises(ValueError, match=r"judge\.method is set by each cell"):
        grid(tmp_path, [rb], methods=["verdict"], judge={"method": "verdict"})


def test_best_of_n_credit_splits_ties_like_rewardbench2():
    from cai.judge_eval.scoring import Outcome, best_of_n_credit

    def said(*verdicts):
        return [
            Outcome(sample_id=str(i), expected="a", p_right=None, judge_says=v, credit=None)
            for i, v in enumerate(verdicts)
        ]

    assert best_of_n_credit(said("a", "a", "a")) == 1.0
    assert best_of_n_credit(said("a", "tie", "a")) == 0.5
    assert best_of_n_credit(said("tie", "tie", "a")) == pytest.approx(1 / 3)
    assert best_of_n_credit(said("a", "b", "tie")) == 0.0
