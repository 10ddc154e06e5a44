"""The labelling store: loading ITEMS, assignment (per-pair, overlap, never twice), answers,
undo, two tabs and concurrent raters, and the escape-first Markdown renderer."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from cai.errors import CaiError
from cai.human import pair_key
from cai.label.assign import left_side, overlap_ids
from cai.label.db import LabelDbError
from cai.label.items import ItemsError, load_items
from cai.label.markdown import render_markdown
from cai.label.store import AnswerConflict, LabelStore, RaterNameError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pref_rows(n, **extra):
    return [
        {
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "chosen": [{"role": "assistant", "content": f"good answer {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad answer {i}"}],
            "prob_chosen": 0.6,
            "source": "ai",
            **extra,
        }
        for i in range(n)
    ]


def make_store(tmp_path, n=20, per_pair=1, overlap=0.1, raters=("ann", "bob", "cy")):
    tmp_path.mkdir(parents=True, exist_ok=True)
    items, _ = load_items(write_jsonl(tmp_path / "items.jsonl", pref_rows(n)))
    store = LabelStore(tmp_path / "labels.sqlite")
    store.update_settings(per_pair=per_pair, overlap=overlap)
    store.add_items(items)
    for name in raters:
        store.add_rater(name)
    return store


def label_all(store, rater, choice="left"):
    answered = []
    while queue := store.queue(rater, 1):
        store.answer(rater, queue[0].item.item_id, choice)
        answered.append(queue[0].item.item_id)
    return answered


# ---- items -------------------------------------------------------------------------------------
def test_items_from_a_route_sheet_and_from_preference_datasets(tmp_path):
    prompt = [{"role": "user", "content": "Hi?"}]
    sheet = [
        {
            "item_id": pair_key(prompt, "one", "two"),
            "prompt": "Hi?",
            "response_a": "one",
            "response_b": "two",
            "label": "a",  # ignored: the page is blind
            "rater_id": "",
            "comment": "",
        }
    ]
    items, report = load_items(write_jsonl(tmp_path / "sheet.jsonl", sheet))
    assert [(i.response_a, i.response_b, i.ai_prob_a) for i in items] == [("one", "two", None)]
    assert report.kinds == {"sheet": 1}

    trl = [{"prompt": "Q?", "chosen": "yes", "rejected": "no"}]  # TRL, no AI probability
    [item], _ = load_items(write_jsonl(tmp_path / "trl.jsonl", trl))
    assert {item.response_a, item.response_b} == {"yes", "no"} and item.ai_prob_a is None

    rows = pref_rows(40, principles=["harm", "honesty"]) + pref_rows(1)  # one duplicate pair
    items, report = load_items(write_jsonl(tmp_path / "ai.jsonl", rows))
    assert len(items) == 40 and report.n_duplicates == 1 and report.n_with_ai == 40
    assert items[0].principle == "harm, honesty"
    a_first = [i.response_a.startswith("good") for i in items]
    assert 5 < sum(a_first) < 35  # chosen is not always response A
    for item in items:  # the AI label follows the order
        assert item.ai_prob_a == pytest.approx(0.6 if item.response_a.startswith("good") else 0.4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "q", "chosen": "x", "rejected": "x"}\n', "row 1"),
        ('{"prompt": "q", "response_a": "x", "response_b": null}\n', "missing column"),
        ('{"prompt": "q", "chosen": "x", "rejected": "y"}\n{not json\n', "row 2"),
        ('{"text": "no pair here"}\n', "cannot tell the format"),
        ("", "holds no pairs"),
    ],
)
def test_bad_items_files_are_one_line_errors_naming_the_row(tmp_path, content, message):
    path = tmp_path / "items.jsonl"
    path.write_text(content)
    with pytest.raises(CaiError, match=message) as info:
        load_items(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_an_edited_sheet_row_is_refused(tmp_path):
    row = {"item_id": "0" * 16, "prompt": "Hi?", "response_a": "one", "response_b": "two"}
    with pytest.raises(ItemsError, match="were they"):
        load_items(write_jsonl(tmp_path / "sheet.jsonl", [row]))


# ---- assignment --------------------------------------------------------------------------------
def test_overlap_set_and_sides_are_deterministic():
    ids = [f"id{i}" for i in range(50)]
    assert overlap_ids(ids, 0.1, 0) == overlap_ids(reversed(ids), 0.1, 0)
    assert len(overlap_ids(ids, 0.1, 0)) == 5
    assert len(overlap_ids(ids[:3], 0.1, 0)) == 1  # at least one pair to measure agreement on
    assert overlap_ids(ids, 0.0, 0) == set()
    sides = Counter(left_side(0, "ann", i) for i in ids)
    assert 10 < sides["a"] < 40


def test_each_pair_gets_per_pair_raters_and_the_overlap_gets_everyone(tmp_path):
    store = make_store(tmp_path, n=30, per_pair=2, overlap=0.1)
    done = {rater: label_all(store, rater) for rater in ("ann", "bob", "cy")}
    for answered in done.values():
        assert len(answered) == len(set(answered))  # never the same pair twice
    per_item = Counter(i for answered in done.values() for i in answered)
    overlap = {item.item_id for _, item, o in store.items() if o}
    assert len(overlap) == 3
    assert all(per_item[i] == 3 for i in overlap)
    assert all(n == 2 for i, n in per_item.items() if i not in overlap)
    assert len(per_item) == 30
    # overlap pairs are spread through a sequence (about one in ten), not all first
    positions = [k for k, i in enumerate(done["ann"]) if i in overlap]
    assert positions == [0, 10, 20]
    assert len(done["cy"]) == 3  # the others covered every other pair twice already


def test_skips_and_stale_claims_free_the_slot(tmp_path):
    store = make_store(tmp_path, n=4, per_pair=1, overlap=0.0, raters=("ann", "bob"))
    first, _held = store.queue("ann", 2, now=1000.0)
    store.answer("ann", first.item.item_id, "skip", now=1001.0)
    bob_sees = set()
    while queue := store.queue("bob", 1, now=1002.0):
        store.answer("bob", queue[0].item.item_id, "left", now=1003.0)
        bob_sees.add(queue[0].item.item_id)
    assert first.item.item_id in bob_sees  # ann skipped it, so someone else labels it
    assert len(bob_sees) == 3  # the pair ann's queue holds is claimed

    store2 = make_store(tmp_path / "s2", n=2, per_pair=1, overlap=0.0, raters=("ann", "bob"))
    claimed = {p.item.item_id for p in store2.queue("ann", 2, now=0.0)}
    assert store2.queue("bob", 2, now=60.0) == []
    later = {p.item.item_id for p in store2.queue("bob", 2, now=31 * 60.0)}
    assert later == claimed  # claims older than claim_minutes count no more


def test_answer_undo_and_second_tab(tmp_path):
    store = make_store(tmp_path, n=5)
    first, second = store.queue("ann", 2)
    saved = store.answer("ann", first.item.item_id, "left", "clear", 4.2)
    assert saved["choice"] == first.left_side  # left/right mapped to the pair's own a/b
    with pytest.raises(AnswerConflict) as conflict:
        store.answer("ann", first.item.item_id, "right")  # the same pair from another tab
    assert conflict.value.kind == "already_answered"
    with pytest.raises(AnswerConflict) as conflict:
        store.answer("bob", first.item.item_id, "left")
    assert conflict.value.kind == "not_assigned"
    assert store.queue("ann", 1)[0].item.item_id == second.item.item_id

    undone = store.undo("ann")
    assert undone == {"item_id": first.item.item_id, "choice": "left", "reason": "clear"}
    assert store.queue("ann", 1)[0].item.item_id == first.item.item_id
    store.answer("ann", first.item.item_id, "tie")
    [answer] = store.live_answers()
    assert answer["choice"] == "tie" and answer["left_side"] == first.left_side
    assert store.undo("ann") is not None and store.undo("ann") is None


def test_concurrent_answers_from_threads_are_neither_lost_nor_doubled(tmp_path):
    store = make_store(tmp_path, n=40, per_pair=1, overlap=0.1, raters=("ann", "bob", "cy", "dee"))
    errors, conflicts = [], Counter()

    def rater(name, choice):  # ann runs twice: two tabs racing each other on her pairs
        try:
            for _ in range(100):
                queue = store.queue(name, 2)
                if not queue:
                    return
                try:
                    store.answer(name, queue[0].item.item_id, choice)
                except AnswerConflict as err:
                    conflicts[err.kind] += 1
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    names = [("ann", "right"), ("bob", "right"), ("cy", "right"), ("dee", "right"), ("ann", "left")]
    threads = [threading.Thread(target=rater, args=args) for args in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    answers = store.live_answers()
    keys = [(a["rater_id"], a["item"].item_id) for a in answers]
    assert len(keys) == len(set(keys))
    per_item = Counter(a["item"].item_id for a in answers)
    assert len(per_item) == 40  # every pair labelled
    overlap = {item.item_id for _, item, o in store.items() if o}
    assert all(per_item[i] == 4 for i in overlap)
    assert all(n == 1 for i, n in per_item.items() if i not in overlap)
    assert set(conflicts) <= {"already_answered"}


def test_rater_names_tokens_and_databases(tmp_path):
    store = make_store(tmp_path, raters=())
    ann, created = store.add_rater("ann")
    again, created_again = store.add_rater("ann")
    assert created and not created_again and again.token == ann.token
    assert store.rater_by_token(ann.token).rater_id == "ann"
    assert store.rater_by_token("nope") is None
    with pytest.raises(RaterNameError):
        store.add_rater("two words")
    assert (tmp_path / "labels.sqlite").stat().st_mode & 0o077 == 0  # tokens inside: owner only
    (tmp_path / "other.sqlite").write_text("not a database at all, just text")
    with pytest.raises(LabelDbError, match="not a labelling database"):
        LabelStore(tmp_path / "other.sqlite")
    with pytest.raises(LabelDbError, match="no labelling database"):
        LabelStore(tmp_path / "missing.sqlite", create=False)


# ---- markdown ----------------------------------------------------------------------------------
def test_markdown_renders_code_lists_and_emphasis():
    text = "# Title\n\nSome **bold** and *it* and `x < y`.\n\n- one\n- two\n\n```python\nif a < b:\n    pass\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    out = render_markdown(text)
    assert "<h3>Title</h3>" in out
    assert "<strong>bold</strong>" in out and "<em>it</em>" in out
    assert "<code>x &lt; y</code>" in out
    assert "<ul><li>one</li><li>two</li></ul>" in out
    assert '<code class="language-python">if a &lt; b:\n    pass</code>' in out
    assert "<table>" in out and "<td>2</td>" in out


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '[x](javascript:alert(1)) [y](https://e.com/"onmouseover="alert(1))',
        "```\n</code></pre><script>alert(1)</script>\n```",
        "**<b onclick=alert(1)>x</b>**",
        '| <svg onload=alert(1)> | b |\n|---|---|\n| "x" | y |',
    ],
)
def test_markdown_never_lets_markup_through(attack):
    out = render_markdown(attack)
    assert "<script" not in out and "<img" not in out and "<svg" not in out and "<b " not in out
    assert 'href="javascript' not in out and '"onmouseover' not in out
    assert "&lt;" in out or "[x](javascript:alert(1))" in out  # shown as the text it is
