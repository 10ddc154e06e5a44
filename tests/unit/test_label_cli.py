"""`cai label add-rater | links | export`: the export is read by `cai agree`, `cai route
import`, `cai import-human` and `cai mix` as they are."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.label.items import load_items
from cai.label.store import LabelStore
from cai.tables import read_rows

run = CliRunner().invoke


def ai_rows(n):
    return [
        {
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "chosen": [{"role": "assistant", "content": f"=good answer {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad answer {i}, with a, comma"}],
            "prompt_id": f"p{i}",
            "pair_id": "x",
            "prob_chosen": 0.9,
            "source": "ai",
            "principles": ["harm"],
        }
        for i in range(n)
    ]


@pytest.fixture
def labelled(tmp_path):
    """A database where ann and bob labelled every pair (overlap 1.0): ann always picks the
    AI's choice, bob the other response, except for one tie, one 'both bad' and one skip."""
    ai = tmp_path / "ai.jsonl"
    ai.write_text("".join(json.dumps(r) + "\n" for r in ai_rows(6)))
    items, _ = load_items(ai)
    store = LabelStore(tmp_path / "labels.sqlite")
    store.update_settings(overlap=1.0)
    store.add_items(items)
    for name in ("ann", "bob"):
        result = run(app, ["label", "add-rater", name, "--db", str(tmp_path / "labels.sqlite")])
        assert result.exit_code == 0 and f"{name}: http://127.0.0.1:8765/r/" in result.output
    for rater in ("ann", "bob"):
        k = 0
        while queue := store.queue(rater, 1):
            pending = queue[0]
            good_left = (pending.left_side == "a") == pending.item.response_a.startswith("=good")
            picks_good = rater == "ann"
            choice = "left" if good_left == picks_good else "right"
            if rater == "bob":
                choice = {0: "tie", 1: "both_bad", 2: "skip"}.get(k, choice)
            store.answer(
                rater, pending.item.item_id, choice, reason='because, "quoted"', seconds=1.5
            )
            k += 1
    return tmp_path, ai, store


def test_add_rater_is_idempotent_and_links_lists_everyone(labelled):
    tmp_path, _, store = labelled
    db = str(tmp_path / "labels.sqlite")
    again = run(app, ["label", "add-rater", "ann", "--db", db, "--url", "http://10.0.0.5:9000/"])
    token = {r.rater_id: r.token for r in store.raters()}["ann"]
    assert f"ann: http://10.0.0.5:9000/r/{token} (already a rater" in again.output
    links = run(app, ["label", "links", "--db", db])
    assert links.exit_code == 0 and "bob: http" in links.output and "admin: http" in links.output
    bad = run(app, ["label", "add-rater", "two words", "--db", db])
    assert bad.exit_code == 2 and "cannot be used" in bad.output


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_export_reads_back_in_agree_route_import_and_mix(labelled, suffix):
    tmp_path, ai, _ = labelled
    human = tmp_path / f"human{suffix}"
    result = run(
        app, ["label", "export", "--db", str(tmp_path / "labels.sqlite"), "-o", str(human)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 11 human labels (2 ties, 2 raters; 1 skips left out)" in result.output
    rows = read_rows(human)
    assert len(rows) == 11
    row = next(r for r in rows if r["rater_id"] == "bob" and r["choice"] == "both_bad")
    assert row["label"] == "tie" and float(row["prob_chosen"]) == 0.5
    assert row["shown_left"] in ("a", "b") and row["labelled_at"].endswith("Z")
    assert row["reason"] == 'because, "quoted"' and float(row["seconds"]) == 1.5

    agree = run(app, ["agree", "--ai", str(ai), "--human", str(human), "-o", str(tmp_path / "rep")])
    assert agree.exit_code == 0, agree.output
    report = json.loads((tmp_path / "rep" / "agreement.json").read_text())
    assert report["n_pairs"] == 6
    assert report["inter_rater"]["n_pairs"] == 5  # both raters labelled 5 pairs (bob skipped one)

    back = tmp_path / "back.jsonl"
    routed = run(app, ["route", "import", str(human), "-o", str(back)])
    assert routed.exit_code == 0, routed.output
    assert "11 imported (2 ties), 0 malformed" in routed.output
    assert sorted(r["rater_id"] for r in read_rows(back)) == ["ann"] * 6 + ["bob"] * 5

    table = run(
        app, ["import-human", str(human), "--format", "table", "-o", str(tmp_path / "t.jsonl")]
    )
    assert table.exit_code == 0 and "11 imported" in table.output

    mixed = tmp_path / "mix.jsonl"
    mix = run(app, ["mix", "--ai", str(ai), "--human", str(human), "-o", str(mixed)])
    assert mix.exit_code == 0, mix.output
    assert "6 AI rows overridden" in mix.output
    assert {r["source"] for r in read_rows(mixed)} == {"human"}


def test_export_refuses_an_empty_or_missing_database(tmp_path):
    db = tmp_path / "labels.sqlite"
    missing = run(app, ["label", "export", "--db", str(db), "-o", str(tmp_path / "h.jsonl")])
    assert missing.exit_code == 2 and "no labelling database" in missing.output
    LabelStore(db)
    empty = run(app, ["label", "export", "--db", str(db), "-o", str(tmp_path / "h.jsonl")])
    assert empty.exit_code == 2 and "no answers to export yet" in empty.output
    assert not (tmp_path / "h.jsonl").exists()


def test_serve_reports_bad_items_in_one_line(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('{"prompt": "q", "chosen": "x", "rejected": "y"}\n{"prompt": "q2"}\n')
    result = run(app, ["label", "serve", str(items), "--db", str(tmp_path / "l.sqlite")])
    assert result.exit_code == 2
    assert f"{items}:2 row 2" in result.output and len(result.output.strip().splitlines()) == 1
    none = run(app, ["label", "serve", "--db", str(tmp_path / "new.sqlite")])
    assert none.exit_code == 2 and "holds no pairs" in none.output
