"""The human-label commands end to end on small files: route -> label -> import -> agree -> mix."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from cai.cli.app import app
from cai.human import pair_key
from cai.tables import read_rows


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
    result = run(app, ["route", "export", "--ai", str(ai), "--out", str(sheet), "--budget", "2"])
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
    result = run(app, ["route", "import", str(sheet), "--out", str(human), "--rater-id", "ann"])
    assert result.exit_code == 0, result.output
    assert "2 imported" in result.output
    assert {r["rater_id"] for r in read_rows(human)} == {"ann"}

    result = run(
        app, ["agree", "--ai", str(ai), "--human", str(human), "--out", str(tmp_path / "rep")]
    )
    assert result.exit_code == 0, result.output
    assert "2 shared pairs, accuracy 0.500" in result.output
    assert (tmp_path / "rep" / "report.html").exists() and (
        tmp_path / "rep" / "reliability.png"
    ).exists()

    mixed = tmp_path / "mixed.parquet"
    result = run(app, ["mix", "--ai", str(ai), "--human", str(human), "--out", str(mixed)])
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
    result = run(app, ["import-human", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 rows read, 1 imported" in result.output and "row 3: malformed" in result.output
    assert len(read_rows(out)) == 1
    sidecar = json.loads((tmp_path / "hh_dir.import-report.json").read_text())
    assert [e["row"] for e in sidecar["errors"]] == [3]
    assert [f["kind"] for f in sidecar["flagged"]] == ["chosen_equals_rejected"]

    strict_out = tmp_path / "strict.jsonl"
    result = run(app, ["import-human", str(source), "--out", str(strict_out), "--strict"])
    assert result.exit_code == 1 and not strict_out.exists()


def test_bad_inputs_end_with_a_clear_message(tmp_path):
    run = CliRunner().invoke
    not_prefs = _write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    result = run(
        app, ["mix", "--ai", str(not_prefs), "--human", str(not_prefs), "--out", "x.jsonl"]
    )
    assert result.exit_code == 2
    assert f"{not_prefs} row 1: missing chosen, rejected, prob_chosen" in result.output
    assert "Traceback" not in result.output
    result = run(app, ["agree", "--ai", str(tmp_path / "nope"), "--human", "x", "--out", "r"])
    assert result.exit_code == 2 and f"{tmp_path / 'nope'}: no such file" in result.output
    result = run(app, ["mix", "--ai", "a", "--human", "h", "--out", "o", "--weight", "human"])
    assert result.exit_code == 2 and "SOURCE=WEIGHT" in result.output


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_export_import_round_trip_is_exact_for_long_and_formula_like_cells(tmp_path):
    long_answer = "=" + "long answer " * (220 * 1024 // 12)  # > 200 KiB, starts like a formula
    rows = [
        pref("=SUM(A1:A9)", long_answer, "-1 is the answer", 0.55),
        pref("@mention", "+1 agreed", "'=already quoted", 0.6),
        pref("plain", "\ttabbed", "\rreturn", 0.5),
    ]
    ai = _write_jsonl(tmp_path / "ai.jsonl", rows)
    sheet = tmp_path / "sheet.csv"
    assert _invoke("route", "export", "--ai", ai, "--out", sheet, "--budget", 3).exit_code == 0
    raw = sheet.read_text(encoding="utf-8")
    assert "'=SUM(A1:A9)" in raw and "'-1 is the answer" in raw and "''=already quoted" in raw
    # a person fills `label` in a tool that keeps every other cell as it is
    csv.field_size_limit(1 << 30)
    with sheet.open(newline="", encoding="utf-8") as handle:
        items = list(csv.DictReader(handle))
    for item in items:
        item["label"] = "a"
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(items[0]))
        writer.writeheader()
        writer.writerows(items)

    human = tmp_path / "human.jsonl"
    result = _invoke("route", "import", sheet, "--out", human)
    assert result.exit_code == 0 and "3 rows read, 3 imported" in result.output
    imported = {r["pair_id"]: r for r in read_rows(human)}
    for row in rows:
        back = imported[
            pair_key(row["prompt"], row["chosen"][0]["content"], row["rejected"][0]["content"])
        ]
        assert back["prompt"] == row["prompt"]
        texts = {back["chosen"][0]["content"], back["rejected"][0]["content"]}
        assert texts == {row["chosen"][0]["content"], row["rejected"][0]["content"]}
    result = _invoke("agree", "--ai", ai, "--human", human, "--out", tmp_path / "rep")
    assert result.exit_code == 0 and "3 shared pairs" in result.output


def test_bom_csv_with_aliases_and_unknown_columns_is_reported(tmp_path):
    source = tmp_path / "labels.csv"
    source.write_bytes(
        "\ufeffQuestion,Preferred,dispreferred,Annotator,batch\n"
        "Is water wet?,Yes,No,ann,7\n"
        "Sky colour?,Blue,Green,bob,7\n".encode()
    )
    out = tmp_path / "human.jsonl"
    result = _invoke("import-human", source, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 rows read, 2 imported" in result.output
    assert (
        "columns read as: Question -> prompt, Preferred -> chosen, dispreferred -> rejected, "
        "Annotator -> rater_id" in result.output
    )
    assert "columns ignored (the trl format does not use them): batch (2 rows)" in result.output
    rows = read_rows(out)
    assert [
        (r["prompt"][0]["content"], r["chosen"][0]["content"], r["rater_id"]) for r in rows
    ] == [
        ("Is water wet?", "Yes", "ann"),
        ("Sky colour?", "Blue", "bob"),
    ]
    sidecar = json.loads((tmp_path / "human.jsonl.import-report.json").read_text())
    assert sidecar["columns_mapped"]["Annotator"] == "rater_id"
    assert sidecar["unknown_columns"] == {"batch": 2}


def test_file_where_every_row_is_malformed_fails(tmp_path):
    source = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "?"}, {"chosen": "x"}])
    out = tmp_path / "human.jsonl"
    result = _invoke("import-human", source, "--out", out)
    assert result.exit_code == 2 and not out.exists()
    assert _error_line(result).startswith(
        f"error: {source}: none of its 2 rows could be imported: 2 malformed (e.g. row 1: "
        "cannot tell the format from columns ['question']"
    )
    assert "import-report.json" in _error_line(result)

    unlabelled = tmp_path / "sheet.csv"
    unlabelled.write_text("item_id,prompt,response_a,response_b,label\n,q,x,y,\n")
    result = _invoke("route", "import", unlabelled, "--out", out)
    assert result.exit_code == 2
    assert "its one row could not be imported: 1 unlabelled (e.g. row 1 (line 2): no label" in (
        _error_line(result)
    )

    empty = tmp_path / "empty.csv"
    empty.write_text("prompt,chosen,rejected\n")
    result = _invoke("import-human", empty, "--out", out)
    assert result.exit_code == 2 and f"{empty}: the file holds no rows" in _error_line(result)


def test_non_utf8_label_row_is_reported_and_the_others_imported(tmp_path):
    source = tmp_path / "labels.csv"
    source.write_bytes(b"prompt,chosen,rejected\nq1,good,bad\nq2,caf\xe9,tea\nq3,yes,no\n")
    result = _invoke("import-human", source, "--out", tmp_path / "h.jsonl")
    assert result.exit_code == 0
    assert "3 rows read, 2 imported" in result.output
    assert "row 2 (line 3): malformed: not UTF-8 text: byte 0xe9 at byte offset 41" in result.output


def test_agree_without_shared_pairs_says_why(tmp_path):
    ai = _write_jsonl(tmp_path / "ai.jsonl", [pref("q1", "kind", "rude", 0.9)])
    human = _write_jsonl(
        tmp_path / "human.jsonl", [pref("q1", "kind\r\n", "rude", 1.0, source="human")]
    )
    result = _invoke("agree", "--ai", ai, "--human", human, "--out", tmp_path / "rep")
    assert result.exit_code == 2
    line = _error_line(result)
    assert f"the AI dataset {ai} has 1 pair, the human dataset {human} 1 pair" in line
    assert "1 prompt in both, but never with the same two responses" in line
    assert "1 pair would match if whitespace and line endings were ignored" in line
    assert "A pair id is computed from the prompt and both responses" in line


def test_nothing_to_route_or_mix_is_an_error(tmp_path):
    ai = _write_jsonl(tmp_path / "ai.jsonl", [pref("q1", "kind", "rude", 0.95)])
    human = _write_jsonl(
        tmp_path / "human.jsonl", [pref("q1", "kind", "rude", 1.0, source="human")]
    )
    sheet = tmp_path / "s.csv"
    result = _invoke(
        "route", "export", "--ai", ai, "--out", sheet, "--budget", 5, "--exclude", human
    )
    assert result.exit_code == 2 and not sheet.exists()
    assert (
        "nothing to route: every AI row (1) holds a pair people already labelled" in result.output
    )
    result = _invoke("route", "export", "--ai", ai, "--out", sheet, "--budget", 5, "--min-score", 2)
    assert result.exit_code == 2
    assert "no pair scores at least min_score 2.0 (the most uncertain of 1 pair scores 0.100)" in (
        result.output
    )

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = _invoke("mix", "--ai", ai, "--human", empty, "--out", tmp_path / "m.jsonl")
    assert result.exit_code == 2 and f"{empty}: the dataset holds no rows" in result.output
    result = _invoke(
        "mix", "--ai", ai, "--human", human, "--out", tmp_path / "m.jsonl", "--weight", "human=0"
    )
    assert result.exit_code == 2 and "the mix would hold no rows" in result.output


def test_bad_options_are_one_line_errors(tmp_path):
    ai = _write_jsonl(tmp_path / "ai.jsonl", [pref("q1", "kind", "rude", 0.95)])
    result = _invoke("import-human", ai, "--out", tmp_path / "o.jsonl", "--format", "xml")
    assert result.exit_code == 2 and "--format: unknown format 'xml'" in _error_line(result)
    result = _invoke("route", "export", "--ai", ai, "--out", tmp_path / "s.xlsx", "--budget", 1)
    assert result.exit_code == 2 and "s.xlsx: cannot write a labelling sheet" in _error_line(result)
    result = _invoke(
        "mix", "--ai", ai, "--human", ai, "--out", tmp_path / "m.jsonl", "--weight", "robots=1"
    )
    assert result.exit_code == 2 and "unknown source 'robots'" in _error_line(result)
