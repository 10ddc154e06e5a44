"""`cai eval judge` on the real vLLM path: a 2-cell grid (two constitutions) of the tiny
model judging a RewardBench-shaped and a RewardBench 2-shaped file (best-of-4 and Ties)
through the stage runner, on the session engine; a rerun resumes every cell."""

from __future__ import annotations

import json

import pytest

from cai.judge.judged import iter_judged
from cai.judge_eval.evaluate import run_judge_eval
from cai.judge_eval.grid import JudgeEvalConfig

pytestmark = [pytest.mark.vllm]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_two_cell_grid_on_vllm(tmp_path, tiny_model_dir, vllm_backend):
    rb = write_jsonl(tmp_path / "rb.jsonl", [
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome.", "subset": "alpacaeval-easy", "id": 1},
        {"prompt": "2 + 2?", "chosen": "4", "rejected": "5", "subset": "math-prm", "id": 2},
        {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No.", "subset": "alpacaeval-easy", "id": 3},
    ])  # fmt: skip
    rb2 = write_jsonl(tmp_path / "rb2.jsonl", [
        {"id": "1", "prompt": "Name a prime.", "chosen": ["7"], "rejected": ["8", "9", "10"],
         "num_correct": 1, "subset": "Math"},
        {"id": "ref:1", "prompt": "A colour?", "chosen": ["red"], "rejected": ["tea", "sky"],
         "num_correct": 1, "subset": "Ties"},
        {"id": "tied:1", "prompt": "Colours?", "chosen": ["red", "blue"], "rejected": ["tea"],
         "num_correct": 2, "subset": "Ties"},
    ])  # fmt: skip
    spec = {"kind": "vllm", "model": str(tiny_model_dir), "dtype": "float32", "max_model_len": 2048}
    grid = JudgeEvalConfig.model_validate(
        {
            "benchmarks": [{"source": rb}, {"source": rb2}],
            "judges": [{"name": "tiny", "backend": spec}],
            "constitutions": ["default", "helpful-only"],
            "judge": {"principles_per_pair": 1},
            "bootstrap": {"n_resamples": 100},
            "output_dir": str(tmp_path / "out"),
        }
    )
    report = run_judge_eval(grid, backends={"tiny": vllm_backend})
    assert [c.cell for c in report.cells] == ["tiny__default", "tiny__helpful-only"]
    for cell in report.cells:
        rb_score, rb2_score = cell.benchmarks
        assert rb_score.overall.scored == 3 and rb_score.comparisons_failed == 0
        assert rb_score.score is not None and 0.0 <= rb_score.score <= 1.0
        assert rb_score.orders_known == 3 and rb_score.run.tokens > 0
        assert rb2_score.overall.items == 3 and rb2_score.overall.failed == 0
        run_dir = tmp_path / "out" / rb2_score.run.run_dir
        kinds = sorted(j.kind for j in iter_judged(run_dir / "judgments"))
        assert kinds == ["pair"] * 3 + ["ranking"] * 2  # best-of-4: 3 pairs; Ties: 2 groups
    # the two constitutions judge with different principles, so their pairs differ in prompt
    first, second = (c.benchmarks[0].principles for c in report.cells)
    assert {p.principle for p in first} != {p.principle for p in second}
    again = run_judge_eval(grid, backends={"tiny": vllm_backend})
    assert all(b.run.pairs_judged_now == 0 for c in again.cells for b in c.benchmarks)
    assert (tmp_path / "out" / "report.html").read_text().count("<table>") >= 4
