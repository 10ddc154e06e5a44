"""The human-label commands end to end on small files: route -> label -> import -> agree -> mix."""

from __future__ import annotations

import csv
import json

import typer
from typer.testing import CliRunner

from cai.cli.human import register
from cai.human.storage import read_rows


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def pref(prompt, chosen, rejected, p, **extra):
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "prompt_id": prompt,
        "pair_id": "x",
        "prob_chosen": p,
        "source": "ai",
        "principles": ["harm"],
        **extra,
    }


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_route_label_import_agree_mix(tmp_path):
    run = CliRunner().invoke
    ai = _write_jsonl(
        tmp_path / "ai.jsonl",
        [
            pref("q1", "kind", "rude", 0.95, orders_agree=True),
            pref("q2", "long", "short", 0.52, orders_agree=False),
            pref("q3", "yes", "no", 0.6, orders_agree=False),
        ],
    )
    sheet = tmp_path / "sheet.csv"
    result = run(_app(), ["route", "export", "--ai", str(ai), "--out", str(sheet), "--budget", "2"])
    assert result.exit_code == 0, result.output
    assert "exported 2 of 3" in result.output
    with sheet.open(newline="") as handle:
        items = list(csv.DictReader(handle))
    assert sorted(i["prompt"] for i in items) == ["q2", "q3"]
    for item in items:  # the person disagrees with the AI on q2, agrees on q3
        wanted = "short" if item["prompt"] == "q2" else "yes"
        item["label"] = "a" if item["response_a"] == wanted else "b"
    with sheet.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(items[0]))
        writer.writeheader()
        writer.writerows(items)

    human = tmp_path / "human.jsonl"
    result = run(_app(), ["route", "import", str(sheet), "--out", str(human), "--rater-id", "ann"])
    assert result.exit_code == 0, result.output
    assert "2 imported" in result.output
    assert {r["rater_id"] for r in read_rows(human)} == {"ann"}

    result = run(
        _app(), ["agree", "--ai", str(ai), "--human", str(human), "--out", str(tmp_path / "rep")]
    )
    assert result.exit_code == 0, result.output
    assert "2 shared pairs, accuracy 0.500" in result.output
    assert (tmp_path / "rep" / "report.html").exists() and (
        tmp_path / "rep" / "reliability.png"
    ).exists()

    mixed = tmp_path / "mixed.parquet"
    result = run(_app(), ["mix", "--ai", str(ai), "--human", str(human), "--out", str(mixed)])
    assert result.exit_code == 0, result.output
    assert "2 AI rows overridden by human labels (1 disagreed)" in result.output
    rows = read_rows(mixed)
    assert sorted((r["prompt"][0]["content"], r["source"]) for r in rows) == [
        ("q1", "ai"),
        ("q2", "human"),
        ("q3", "human"),
    ]


def test_import_human_reports_bad_rows_and_strict_refuses(tmp_path):
    run = CliRunner().invoke
    source = _write_jsonl(
        tmp_path / "hh.jsonl",
        [
            {
                "chosen": "\n\nHuman: Hi\n\nAssistant: Hello",
                "rejected": "\n\nHuman: Hi\n\nAssistant: Go",
            },
            {
                "chosen": "\n\nHuman: Hi\n\nAssistant: Same",
                "rejected": "\n\nHuman: Hi\n\nAssistant: Same",
            },
            {"chosen": "no transcript", "rejected": "\n\nHuman: Hi\n\nAssistant: Go"},
        ],
    )
    out = tmp_path / "hh_dir"
    result = run(_app(), ["import-human", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 rows read, 1 imported" in result.output and "row 3: malformed" in result.output
    assert len(read_rows(out)) == 1
    sidecar = json.loads((tmp_path / "hh_dir.import-report.json").read_text())
    assert [e["row"] for e in sidecar["errors"]] == [3]
    assert [f["kind"] for f in sidecar["flagged"]] == ["chosen_equals_rejected"]

    strict_out = tmp_path / "strict.jsonl"
    result = run(_app(), ["import-human", str(source), "--out", str(strict_out), "--strict"])
    assert result.exit_code == 1 and not strict_out.exists()


def test_bad_inputs_end_with_a_clear_message(tmp_path):
    run = CliRunner().invoke
    not_prefs = _write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    result = run(
        _app(), ["mix", "--ai", str(not_prefs), "--human", str(not_prefs), "--out", "x.jsonl"]
    )
    assert result.exit_code == 2
    assert "AI dataset row 1: missing chosen, rejected, prob_chosen" in result.output
    result = run(_app(), ["agree", "--ai", str(tmp_path / "nope"), "--human", "x", "--out", "r"])
    assert result.exit_code == 2 and "no such file" in result.output
    result = run(_app(), ["mix", "--ai", "a", "--human", "h", "--out", "o", "--weight", "human"])
    assert result.exit_code == 2 and "SOURCE=WEIGHT" in result.output
