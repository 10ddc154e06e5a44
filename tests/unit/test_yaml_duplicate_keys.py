"""A YAML file that gives the same key twice means two things: every YAML cai reads refuses it.

YAML itself keeps the last of two equal keys and says nothing, so `sample:` written twice in a
pipeline ran with the second. Each kind of file cai reads (pipeline, loop, constitution, test
cases, trainer, eval and revise settings, a `--set` value) is given a duplicate key here, and
the one error must name the file and both lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.yamlmap import DuplicateKeyError, parse_yaml

PRINCIPLE = (
    "  - id: a\n    critique_request: c\n    revision_request: r\n    comparison_question: q\n"
)


@dataclass
class Case:
    name: str
    file: str
    text: str
    args: Callable[[Path], list[str]]
    expect: list[str]
    """Substrings of the error: the file at the second line, both lines, the key."""
    one_line: bool = True


CASES = [
    Case("pipeline", "p.yaml", "name: x\nsample:\n  n: 2\nsample:\n  n: 4\n",
         lambda d: ["run", str(d / "p.yaml"), "--out", str(d / "run")],
         ["p.yaml:4", "lines 2 and 4", "`sample`"]),
    Case("pipeline, nested mapping", "p.yaml", "policy:\n  kind: scripted\n  kind: vllm\n",
         lambda d: ["run", str(d / "p.yaml"), "--out", str(d / "run")],
         ["p.yaml:3", "lines 2 and 3", "policy.kind"]),
    Case("pipeline given to constitution test", "p.yaml", "chunk_size: 2\nchunk_size: 3\n",
         lambda d: ["constitution", "test", "default", str(d / "cases.yaml"), "--config",
                    str(d / "p.yaml"), "--backend", "scripted"],
         ["p.yaml:2", "lines 1 and 2", "`chunk_size`"]),
    Case("loop", "l.yaml", "rounds: 1\nname: x\nrounds: 2\n",
         lambda d: ["loop", str(d / "l.yaml"), "--out", str(d / "loop")],
         ["l.yaml:3", "lines 1 and 3", "`rounds`"]),
    Case("constitution", "k.yaml", "name: x\nprinciples:\n" + PRINCIPLE + "name: y\n",
         lambda d: ["constitution", "validate", str(d / "k.yaml")],
         ["k.yaml:7", "lines 1 and 7", "`name`"], one_line=False),
    Case("constitution cases", "cases.yaml",
         "- prompt: hi\n  responses: [a, b]\n  prompt: again\n",
         lambda d: ["constitution", "test", "default", str(d / "cases.yaml"), "--backend",
                    "scripted"],
         ["cases.yaml:3", "lines 1 and 3", "`prompt`"]),
    Case("trainer settings", "t.yaml", "model: m\nbeta: 0.1\nbeta: 0.2\n",
         lambda d: ["train", "dpo", "--config", str(d / "t.yaml")],
         ["t.yaml:3", "lines 2 and 3", "`beta`"]),
    Case("eval settings", "e.yaml", "prompts: p.jsonl\nprompts: q.jsonl\n",
         lambda d: ["eval", "winrate", "--config", str(d / "e.yaml")],
         ["e.yaml:2", "lines 1 and 2", "`prompts`"]),
    Case("revise settings", "r.yaml", "out: a\nout: b\n",
         lambda d: ["revise", "--config", str(d / "r.yaml")],
         ["r.yaml:2", "lines 1 and 2", "`out`"]),
    Case("a --set value", "p.yaml", "name: x\n",
         lambda d: ["run", str(d / "p.yaml"), "--out", str(d / "run"), "--set",
                    "sample={n: 2, n: 3}"],
         ["sample={n: 2, n: 3}", "`n` twice"]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_key_given_twice_is_refused_with_both_lines(case: Case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / case.file).write_text(case.text, encoding="utf-8")
    if case.file != "cases.yaml":
        (tmp_path / "cases.yaml").write_text("- prompt: hi\n  responses: [a, b]\n  expected: A\n")
    result = CliRunner().invoke(app, case.args(tmp_path))
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    if case.one_line:
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, output
    for expected in case.expect:
        assert expected in output, f"{expected!r} not in {output!r}"
    assert not (tmp_path / "run").exists()


def test_parse_yaml_refuses_a_duplicate_and_names_both_positions():
    with pytest.raises(DuplicateKeyError) as caught:
        parse_yaml("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    err = caught.value
    assert (err.first_line, err.line, err.column) == (3, 5, 3)
    assert err.loc == ("b", "c") and err.key == "b.c"
    assert "lines 3 and 5" in err.message


def test_a_caller_that_lists_every_problem_gets_them_all_in_file_order():
    parsed = parse_yaml("x: 1\ny: 2\ny: 3\nx: 4\n", keep_duplicates=True)
    assert parsed.data == {"x": 4, "y": 3}
    assert [(d.key, d.first_line, d.line) for d in parsed.duplicate_keys()] == [
        ("y", 2, 3),
        ("x", 1, 4),
    ]


def test_equal_keys_in_different_mappings_are_not_duplicates():
    parsed = parse_yaml(
        "policy: {kind: vllm}\njudge_backend: {kind: vllm}\nlist: [{a: 1}, {a: 2}]\n"
    )
    assert parsed.duplicate_keys() == []


def test_a_key_beside_a_merge_key_overrides_it_and_is_not_a_duplicate():
    parsed = parse_yaml("base: &b {n: 1, m: 5}\nsample:\n  <<: *b\n  n: 2\n")
    assert parsed.data["sample"] == {"n": 2, "m": 5}
    assert parsed.position(("sample", "n")) == (4, 3)  # the override, not the merged key
    assert parsed.position(("sample", "m")) == (1, 17)  # where the merged key was written


def test_a_flow_mapping_names_its_one_line():
    with pytest.raises(DuplicateKeyError, match="both on line 2"):
        parse_yaml("a: 1\nb: {x: 1, x: 2}\n")
