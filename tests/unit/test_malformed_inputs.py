"""Every bad input to every command that reads files: exit code 2, one message, no traceback.

Each case writes a malformed file, runs the real CLI command on it (the scripted backend where
a model is needed, or a vLLM model path that does not exist, to prove the input is checked
before any model loads) and asserts the exit code, that the message names the file and the
row / line / key, and that no traceback is printed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai.cli.app import app


@dataclass
class Case:
    name: str
    files: dict[str, bytes | str]
    args: Callable[[Path], list[str]]
    expect: list[str]
    """Substrings the one error message must contain (file name, row/line/key, the cause)."""
    one_line: bool = True
    """False for `constitution validate`, which lists every problem of a file, one per line."""


def _jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _sample(path: str) -> Callable[[Path], list[str]]:
    return lambda d: ["sample", str(d / path), "--out", str(d / "run"), "--backend", "scripted"]


def _judge(path: str) -> Callable[[Path], list[str]]:
    # a vLLM model that does not exist: the samples must be rejected before it is looked up
    return lambda d: [
        "judge", str(d / path), "--out", str(d / "run"), "--backend", "vllm",
        "--model", str(d / "no-such-model"),
    ]  # fmt: skip


def _run(path: str, *extra: str) -> Callable[[Path], list[str]]:
    return lambda d: ["run", str(d / path), "--out", str(d / "run"), *extra]


def _validate(path: str) -> Callable[[Path], list[str]]:
    return lambda d: ["constitution", "validate", str(d / path)]


def _import(path: str) -> Callable[[Path], list[str]]:
    return lambda d: ["import-human", str(d / path), "--out", str(d / "human.jsonl")]


GOOD_PROMPTS = _jsonl({"prompt": "Hello?"}, {"prompt": "Bye?"})
SAMPLE = {"prompt": "q?", "responses": ["a", "b"]}
PIPELINE = "prompts: {path: prompts.jsonl}\npolicy: {kind: scripted}\n"
TRL_ROW = {"prompt": "q?", "chosen": "good", "rejected": "bad"}

CASES = [
    # ---- prompts (cai sample) ----------------------------------------------------------------
    Case("prompts non-utf8", {"p.jsonl": b'{"prompt": "caf\xe9"}\n'}, _sample("p.jsonl"),
         ["p.jsonl", "UTF-8"]),
    Case("prompts row is a string", {"p.jsonl": _jsonl({"prompt": "ok?"}, '"just text"')},
         _sample("p.jsonl"), ["p.jsonl", "2"]),
    Case("prompts row is a list", {"p.jsonl": _jsonl("[1, 2]")}, _sample("p.jsonl"),
         ["p.jsonl", "1"]),
    Case("prompts invalid json", {"p.jsonl": _jsonl({"prompt": "ok?"}, '{"prompt": ')},
         _sample("p.jsonl"), ["p.jsonl", "2", "JSON"]),
    Case("prompts deeply nested json", {"p.jsonl": "[" * 100_000 + "]" * 100_000 + "\n"},
         _sample("p.jsonl"), ["p.jsonl", "1"]),
    Case("prompts empty file", {"p.jsonl": ""}, _sample("p.jsonl"), ["p.jsonl", "no prompts"]),
    Case("prompts blank file", {"p.jsonl": "\n   \n\n"}, _sample("p.jsonl"),
         ["p.jsonl", "no prompts"]),
    Case("prompts message without content",
         {"p.jsonl": _jsonl({"messages": [{"role": "user"}]})}, _sample("p.jsonl"),
         ["p.jsonl", "1", "content"]),
    Case("prompts unknown role",
         {"p.jsonl": _jsonl({"messages": [{"role": "wizard", "content": "hi"}]})},
         _sample("p.jsonl"), ["p.jsonl", "1", "wizard"]),
    Case("prompts no prompt column", {"p.jsonl": _jsonl({"query": "hi?"})}, _sample("p.jsonl"),
         ["p.jsonl", "1", "column"]),
    Case("prompts csv row with extra fields", {"p.csv": "prompt\nhello?\nhi?,extra\n"},
         _sample("p.csv"), ["p.csv", "3"]),
    Case("prompts csv non-utf8", {"p.csv": b"prompt\ncaf\xe9?\n"}, _sample("p.csv"),
         ["p.csv", "UTF-8"]),
    Case("prompts missing file", {}, _sample("missing.jsonl"), ["missing.jsonl"]),
    Case("prompts unknown extension", {"p.txt": "hello?\n"}, _sample("p.txt"),
         ["p.txt", ".txt"]),
    Case("prompts corrupt parquet", {"p.parquet": b"PAR1 not really parquet"},
         _sample("p.parquet"), ["p.parquet"]),
    # ---- samples (cai judge) -----------------------------------------------------------------
    Case("samples row is a string", {"s.jsonl": _jsonl(SAMPLE, '"text"')}, _judge("s.jsonl"),
         ["s.jsonl", "row 2"]),
    Case("samples without responses", {"s.jsonl": _jsonl({"prompt": "q?"})}, _judge("s.jsonl"),
         ["s.jsonl", "row 1", "responses"]),
    Case("samples responses not a list",
         {"s.jsonl": _jsonl({"prompt": "q?", "responses": "a b"})}, _judge("s.jsonl"),
         ["s.jsonl", "row 1", "responses"]),
    Case("samples cai record missing fields",
         {"s.jsonl": _jsonl({"prompt_id": "x", "prompt": [], "responses": ["a"],
                             "finish_reasons": "stop", "policy_model": "m"})},
         _judge("s.jsonl"), ["s.jsonl", "row 1"]),
    Case("samples non-utf8", {"s.jsonl": b'{"prompt": "\xff", "responses": ["a", "b"]}\n'},
         _judge("s.jsonl"), ["s.jsonl", "UTF-8"]),
    Case("samples missing", {}, _judge("nothing.jsonl"), ["nothing.jsonl"]),
    Case("samples trl row with a blank answer",
         {"s.jsonl": _jsonl(TRL_ROW, {"prompt": "q?", "chosen": "", "rejected": "bad"})},
         _judge("s.jsonl"), ["s.jsonl", "row 2"]),
    # ---- pipeline YAML (cai run) --------------------------------------------------------------
    Case("pipeline unknown key", {"c.yaml": PIPELINE + "sampel: {n: 2}\n",
                                  "prompts.jsonl": GOOD_PROMPTS},
         _run("c.yaml"), ["c.yaml:3", "sampel", "sample"]),
    Case("pipeline wrong type", {"c.yaml": PIPELINE + "sample: {n: many}\n",
                                 "prompts.jsonl": GOOD_PROMPTS},
         _run("c.yaml"), ["c.yaml:3", "sample.n"]),
    Case("pipeline top level is a list", {"c.yaml": "- a\n- b\n"}, _run("c.yaml"),
         ["c.yaml", "mapping"]),
    Case("pipeline bad yaml syntax", {"c.yaml": "prompts: {path: [\n"}, _run("c.yaml"),
         ["c.yaml", "YAML"]),
    Case("pipeline non-utf8", {"c.yaml": b"name: caf\xe9\n"}, _run("c.yaml"),
         ["c.yaml", "UTF-8"]),
    Case("pipeline deeply nested", {"c.yaml": "a: " + "[" * 5000 + "]" * 5000 + "\n"},
         _run("c.yaml"), ["c.yaml"]),
    Case("pipeline bad override", {"c.yaml": PIPELINE, "prompts.jsonl": GOOD_PROMPTS},
         _run("c.yaml", "--set", "sample.n"), ["sample.n", "key=value"]),
    Case("pipeline missing templates dir",
         {"c.yaml": PIPELINE + "templates: no-such-templates\n", "prompts.jsonl": GOOD_PROMPTS},
         _run("c.yaml"), ["no-such-templates"]),
    Case("pipeline missing constitution file",
         {"c.yaml": PIPELINE + "constitution: mine.yaml\n", "prompts.jsonl": GOOD_PROMPTS},
         _run("c.yaml"), ["mine.yaml"]),
    # ---- constitutions ------------------------------------------------------------------------
    Case("constitution non-utf8", {"k.yaml": b"name: caf\xe9\n"}, _validate("k.yaml"),
         ["k.yaml"], one_line=False),
    Case("constitution deeply nested", {"k.yaml": "name: " + "[" * 5000 + "]" * 5000 + "\n"},
         _validate("k.yaml"), ["k.yaml"], one_line=False),
    Case("constitution unknown key",
         {"k.yaml": "name: x\nprinciples:\n  - id: a\n    critique_request: c\n"
                    "    revision_request: r\n    comparison_question: q\n    wieght: 2\n"},
         _validate("k.yaml"), ["k.yaml:7", "wieght"], one_line=False),
    # ---- human labels -------------------------------------------------------------------------
    Case("human csv non-utf8", {"h.csv": b"prompt,chosen,rejected\nq,caf\xe9,b\n"},
         _import("h.csv"), ["h.csv", "UTF-8"]),
    Case("human every row malformed",
         {"h.jsonl": _jsonl({"prompt": "q"}, {"chosen": "a"}, '"text"')},
         _import("h.jsonl"), ["h.jsonl"]),
    Case("human csv row with extra fields",
         {"h.csv": "prompt,chosen,rejected\nq?,good,bad,surplus\n"}, _import("h.csv"),
         ["h.csv", "2"]),
    Case("human missing file", {}, _import("nope.csv"), ["nope.csv"]),
    Case("agree with no pair in common",
         {"ai.jsonl": _jsonl({**TRL_ROW, "prompt": "one?", "prob_chosen": 0.9}),
          "human.jsonl": _jsonl({**TRL_ROW, "prompt": "two?", "prob_chosen": 1.0})},
         lambda d: ["agree", "--ai", str(d / "ai.jsonl"), "--human", str(d / "human.jsonl"),
                    "--out", str(d / "report")],
         ["no pair"]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_input_is_one_clear_error(case: Case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, content in case.files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(app, case.args(tmp_path))
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    if case.one_line:
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, output
        message = output[output.index("error: ") :]
    else:
        message = output
    for expected in case.expect:
        assert expected.lower() in message.lower(), f"{expected!r} not in {message!r}"
    assert not (tmp_path / "run" / "config.resolved.yaml").exists()


def test_at_least_thirty_cases():
    assert len(CASES) >= 30


def test_a_corrupt_cache_is_named_and_moved_aside(tmp_path):
    cache = tmp_path / "calls.sqlite"
    cache.write_bytes(b"this is not a database" * 100)
    result = CliRunner().invoke(app, ["cache", "stats", str(cache)])
    assert "Traceback" not in result.output
    assert "calls.sqlite" in result.output
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("calls.sqlite.corrupt")]
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not")
    with sqlite3.connect(cache) as db:  # a fresh, working cache took its place
        db.execute("select 1")
