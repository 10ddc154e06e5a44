"""Each published judge-benchmark shape maps to cai's pairs (or groups), and rows that do not
fit are counted with their row number and reason, never scored."""

from __future__ import annotations

import json

import pytest

from cai.judge_eval.formats import UnknownFormatError, detect_format, judgebench_category
from cai.judge_eval.load import NoUsableRowsError, load_benchmark
from cai.judge_eval.sampling import stratified_sample


def write_jsonl(path, rows, bad_lines=()):
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        for line in bad_lines:
            handle.write(line + "\n")
    return str(path)


RB_ROWS = [
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.",
     "chosen_model": "x", "rejected_model": "y", "subset": "alpacaeval-easy", "id": 1},
    {"prompt": "2+2?", "chosen": "4", "rejected": "5", "subset": "math-prm", "id": 2},
    {"prompt": "Same?", "chosen": "same", "rejected": "same", "subset": "math-prm", "id": 3},
    {"prompt": "", "chosen": "a", "rejected": "b", "subset": "math-prm", "id": 4},
]  # fmt: skip


def test_rewardbench_pairs_and_malformed_rows(tmp_path):
    source = write_jsonl(tmp_path / "rb.jsonl", RB_ROWS, bad_lines=["{not json"])
    bench = load_benchmark(source)
    assert bench.format == "rewardbench" and bench.rows_read == 5
    assert [i.subset for i in bench.items] == ["alpacaeval-easy", "math-prm"]
    assert {m.row for m in bench.malformed} == {3, 4, 5}
    reasons = " ".join(m.reason for m in bench.malformed)
    assert "same text" in reasons and "empty" in reasons
    for item in bench.items:  # the right answer sits in the slot `expected` names
        (comparison,) = item.comparisons
        pair = bench.judged[comparison.sample_id]
        right = pair.responses[0 if comparison.expected == "a" else 1]
        assert right in ("Paris.", "4")
        assert pair.prompt[-1]["role"] == "user"


def test_rewardbench2_best_of_4_and_ties(tmp_path):
    rows = [
        {"id": "5", "prompt": "Name a prime.", "chosen": ["7"], "rejected": ["8", "9", "10"],
         "num_correct": 1, "subset": "Math"},
        {"id": "tied:3", "prompt": "Name a colour of the rainbow.", "chosen": ["red", "blue"],
         "rejected": ["pink", "brown", "black"], "num_correct": 2, "subset": "Ties"},
        {"id": "ref:3", "prompt": "Name the first colour of the rainbow.", "chosen": ["red"],
         "rejected": ["pink"], "num_correct": 1, "subset": "Ties"},
        {"id": "6", "prompt": "x", "chosen": ["a", "b"], "rejected": ["c"], "subset": "Focus"},
        {"id": "7", "prompt": "x", "chosen": ["a"], "rejected": "c", "subset": "Focus"},
    ]  # fmt: skip
    bench = load_benchmark(write_jsonl(tmp_path / "rb2.jsonl", rows))
    assert bench.format == "rewardbench2"
    best, tied, ref = bench.items
    assert best.scoring == "best_of_n" and len(best.comparisons) == 3
    assert {bench.judged[c.sample_id].responses.count("7") for c in best.comparisons} == {1}
    assert tied.scoring == "ties" and (tied.tie_kind, tied.tie_prompt) == ("tied", 3)
    group = bench.judged[tied.group_id]
    assert group.responses[: tied.num_correct] == ["red", "blue"]
    assert ref.tie_kind == "ref"
    assert sorted(m.row for m in bench.malformed) == [4, 5]


def test_rmbench_nine_cells(tmp_path):
    row = {"id": "chat/1", "prompt": "Why is ice slippery?", "domain": "chat",
           "chosen": ["Water film.", "A thin water film forms.", "**A thin water film**."],
           "rejected": ["Magic.", "It is magic, basically.", "**Magic**."]}  # fmt: skip
    short = {**row, "id": "chat/2", "chosen": row["chosen"][:2]}
    bench = load_benchmark(write_jsonl(tmp_path / "rm.jsonl", [row, short]))
    assert bench.format == "rmbench"
    (item,) = bench.items
    assert item.scoring == "style_matrix" and item.subset == "chat"
    assert sorted(c.cell for c in item.comparisons) == [(i, j) for i in range(3) for j in range(3)]
    assert bench.malformed[0].row == 2 and "3 chosen" in bench.malformed[0].reason


def test_judgebench_labels_and_categories(tmp_path):
    base = {"original_id": "o", "response_model": "m", "question": "What is 3*3?"}
    rows = [
        {**base, "pair_id": "p1", "source": "livebench-math", "response_A": "9", "response_B": "6", "label": "A>B"},
        {**base, "pair_id": "p2", "source": "mmlu-pro-law", "response_A": "6", "response_B": "9", "label": "B>A"},
        {**base, "pair_id": "p3", "source": "livecodebench", "response_A": "6", "response_B": "9", "label": "A=B"},
    ]  # fmt: skip
    bench = load_benchmark(write_jsonl(tmp_path / "jb.jsonl", rows))
    assert bench.format == "judgebench"
    assert [(i.subset, i.comparisons[0].expected) for i in bench.items] == [
        ("math", "a"),
        ("knowledge", "b"),
    ]
    assert "A=B" in bench.malformed[0].reason
    assert judgebench_category("livebench-reasoning") == "reasoning"


def _conv(q1, a1, q2=None, a2=None):
    out = [{"role": "user", "content": q1}, {"role": "assistant", "content": a1}]
    if q2:
        out += [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
    return out


def test_mtbench_votes_share_pairs(tmp_path):
    vote = {"question_id": 81, "model_a": "gpt-4", "model_b": "llama-13b", "turn": 1,
            "conversation_a": _conv("Plan a trip.", "Day 1: museum."),
            "conversation_b": _conv("Plan a trip.", "Go somewhere.")}  # fmt: skip
    turn2 = {**vote, "turn": 2, "winner": "model_b", "judge": "expert_1",
             "conversation_a": _conv("Plan a trip.", "Day 1: museum.", "Shorter?", "Museum."),
             "conversation_b": _conv("Plan a trip.", "Go somewhere.", "Shorter?", "Go.")}  # fmt: skip
    rows = [
        {**vote, "winner": "model_a", "judge": "expert_0"},
        {**vote, "winner": "tie", "judge": "expert_1"},
        turn2,
        {**vote, "winner": "maybe", "judge": "expert_2"},
    ]
    bench = load_benchmark(write_jsonl(tmp_path / "mt.jsonl", rows))
    assert bench.format == "mtbench"
    assert [i.comparisons[0].expected for i in bench.items] == ["a", "tie", "b"]
    assert bench.items[0].comparisons[0].sample_id == bench.items[1].comparisons[0].sample_id
    assert len(bench.judged) == 2  # two votes on one pair are judged once
    turn2_pair = bench.judged[bench.items[2].comparisons[0].sample_id]
    assert "User: Shorter?" in turn2_pair.responses[0]
    assert bench.malformed[0].row == 4


def test_hh_transcripts(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: Hi, how do I boil an egg?\n\nAssistant: Simmer it for 9 minutes.",
         "rejected": "\n\nHuman: Hi, how do I boil an egg?\n\nAssistant: No idea."},
        {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"},
    ]  # fmt: skip
    bench = load_benchmark(write_jsonl(tmp_path / "hh.jsonl", rows))
    assert bench.format == "hh" and len(bench.items) == 1
    pair = bench.judged[bench.items[0].comparisons[0].sample_id]
    assert pair.prompt == [{"role": "user", "content": "Hi, how do I boil an egg?"}]
    assert "differ before their last answer" in bench.malformed[0].reason


def test_unknown_and_unusable(tmp_path):
    with pytest.raises(UnknownFormatError, match="columns: foo"):
        detect_format([{"foo": 1}], "x.jsonl")
    source = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "a"}])
    with pytest.raises(NoUsableRowsError, match="row 1"):
        load_benchmark(source)
    # a named format that does not fit says what the rows look like
    with pytest.raises(NoUsableRowsError, match="looks like rewardbench"):
        load_benchmark(write_jsonl(tmp_path / "rb.jsonl", RB_ROWS[:1]), "judgebench")


def test_stratified_limit_covers_subsets_and_is_stable(tmp_path):
    rows = [
        {"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}",
         "subset": "big" if i < 30 else "small" if i < 36 else "tiny", "id": i}
        for i in range(37)
    ]  # fmt: skip
    source = write_jsonl(tmp_path / "rb.jsonl", rows)
    bench = load_benchmark(source, limit=10, seed=3)
    subsets = [i.subset for i in bench.items]
    assert len(subsets) == 10 and set(subsets) == {"big", "small", "tiny"}
    assert subsets.count("big") > subsets.count("small")
    assert bench.rows_sampled_out == 27 and len(bench.judged) == 10
    again = load_benchmark(source, limit=10, seed=3)
    assert [i.item_id for i in again.items] == [i.item_id for i in bench.items]
    assert stratified_sample(bench.items, None) == bench.items


def test_a_hub_id_goes_to_the_hub_reader(monkeypatch):
    """A Hub id is read by cai.tables' Hub reader; offline, that is one clear error."""
    from cai.tables import InputFormatError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputFormatError, match=r"allenai/reward-bench-2.*HF_HUB_OFFLINE"):
        load_benchmark("allenai/reward-bench-2", "rewardbench2", split="test")
