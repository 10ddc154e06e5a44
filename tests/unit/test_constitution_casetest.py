"""`cai constitution test`: reading cases, judging them, exit codes and JUnit XML.

The scripted judge is a rule: principle `kind` prefers the response that says "please",
principle `short` prefers the shorter response; both read the two responses out of the
rendered prompt, so the answer order is honoured exactly as a real judge would see it.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from cai.backends.base import ChoiceRequest
from cai.backends.scripted import ScriptedBackend
from cai.cli.app import app
from cai.constitution import load_constitution
from cai.constitution_tools.casetest import CasesError, junit_xml, read_cases, run_cases
from cai.templates import TemplateSet

runner = CliRunner()
RESPONSE = re.compile(r"<response>\n(.*?)\n</response>", re.S)

CONSTITUTION = """\
name: rules
principles:
  - id: kind
    comparison_question: Which response is kinder?
  - id: short
    comparison_question: Which response is shorter?
  - id: fix-only
    critique_request: What is wrong?
    revision_request: Fix it.
"""

CASES = """\
cases:
  - id: polite-wins
    prompt: "Can you help?"
    responses: ["please, let me help you with that", "no"]
    expected: A
    principles: [kind]
  - id: short-wins
    prompt: "Say yes or no."
    chosen: "yes"
    rejected: "well, it depends on many things, please"
  - id: wrong-expectation
    prompt: "Hi"
    responses: ["no", "please, hello and welcome"]
    expected: A
    principles: [kind]
  - id: three-way
    prompt: "Greet me."
    responses: ["go", "please, hello", "please, hello there, friend, welcome aboard"]
    expected: B
"""


def rule_score(request: ChoiceRequest) -> list[float]:
    text = "\n".join(m["content"] for m in request.messages or [])
    first, second = RESPONSE.findall(text)[:2]
    if "kinder" in text:
        p_first = (
            0.9
            if "please" in first and "please" not in second
            else (0.1 if "please" in second and "please" not in first else 0.5)
        )
    else:
        p_first = 0.8 if len(first) < len(second) else 0.2
    return [0.0, -math.log(p_first / (1 - p_first))]


class RuleBackend(ScriptedBackend):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("score", rule_score)
        super().__init__(*args, **kwargs)


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules.yaml").write_text(CONSTITUTION)
    (tmp_path / "cases.yaml").write_text(CASES)
    return tmp_path


def test_cases_are_judged_per_principle_and_overall(files):
    constitution = load_constitution("rules.yaml")
    cases = read_cases("cases.yaml", constitution)
    assert [c.expected for c in cases] == [0, 0, 0, 1]
    report = run_cases(RuleBackend(), constitution, cases, TemplateSet())
    by_id = {r.id: r for r in report.results}
    assert by_id["polite-wins"].passed and by_id["polite-wins"].prob_expected == pytest.approx(0.9)
    assert [v.principle for v in by_id["polite-wins"].principles] == ["kind"]
    # Both principles judge it: short prefers "yes" (0.8), kind prefers the other (0.1).
    short = by_id["short-wins"]
    assert not short.passed and short.prob_expected == pytest.approx((0.8 + 0.1) / 2)
    assert {v.principle: v.passed for v in short.principles} == {"kind": False, "short": True}
    assert not by_id["wrong-expectation"].passed and by_id["wrong-expectation"].winner == "B"
    three = by_id["three-way"]  # kind ties B and C; short puts B above C
    assert three.passed and three.winner == "B" and three.prob_expected > 0.5
    rates = {p.principle: (p.passed, p.cases) for p in report.per_principle}
    # kind: B only ties C in three-way; short: "go" (A) is shortest there.
    assert rates == {"kind": (1, 4), "short": (1, 2)}
    assert report.passed == 2 and report.pass_rate == 0.5
    assert "fix-only" not in rates  # no comparison question: never judged


def test_junit_xml_is_valid_and_marks_failures(files):
    constitution = load_constitution("rules.yaml")
    report = run_cases(RuleBackend(), constitution, read_cases("cases.yaml"), TemplateSet())
    root = ET.fromstring(junit_xml(report))
    suite = root.find("testsuite")
    assert root.tag == "testsuites" and suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["polite-wins"].find("failure") is None
    failure = cases["wrong-expectation"].find("failure")
    assert failure is not None and "expected A, judge picked B" in failure.get("message")
    assert "kind: FAIL" in failure.text


@pytest.mark.parametrize(
    "text,message",
    [
        ("- prompt: hi\n  responses: [a]\n  expected: A\n", "two or more responses"),
        ("- prompt: hi\n  responses: [a, b]\n  expected: C\n", "one of A, B"),
        ("- prompt: hi\n  responses: [a, a]\n  expected: A\n", "identical"),
        (
            "- prompt: hi\n  chosen: a\n  rejected: b\n  principles: [kindness]\n",
            "did you mean `kind`",
        ),
        (
            "- prompt: hi\n  chosen: a\n  rejected: b\n  principles: [fix-only]\n",
            "no comparison_question",
        ),
        ("- promt: hi\n  chosen: a\n  rejected: b\n", "did you mean `prompt`"),
        (
            "- id: x\n  prompt: a\n  chosen: a\n  rejected: b\n- id: x\n  prompt: a\n  chosen: c\n  rejected: d\n",
            "used twice",
        ),
    ],
)
def test_bad_cases_name_file_line_and_field(files, text, message):
    (files / "bad.yaml").write_text(text)
    with pytest.raises(CasesError) as info:
        read_cases("bad.yaml", load_constitution("rules.yaml"))
    assert message in str(info.value)
    assert str(info.value).startswith("bad.yaml:")


def test_jsonl_cases(files):
    rows = [
        {"id": "j1", "prompt": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"},
        {"prompt": "yo", "responses": ["x", "y", "z"], "expected": "c"},
    ]
    (files / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cases = read_cases("cases.jsonl")
    assert [(c.id, c.expected, c.line) for c in cases] == [("j1", 0, 1), ("case-2", 2, 2)]


def test_cli_exit_codes_junit_and_the_call_cache(files, monkeypatch):
    monkeypatch.setattr("cai.backends.ScriptedBackend", RuleBackend)
    base = ["constitution", "test", "rules.yaml", "cases.yaml", "--backend", "scripted"]
    base += ["--model", "rules", "--cache", "calls.sqlite"]
    failing = runner.invoke(app, [*base, "--junit", "report.xml"])
    assert failing.exit_code == 1, failing.output
    assert "FAIL  wrong-expectation: expected A, judge picked B" in failing.stdout
    assert "PASS  polite-wins" in failing.stdout
    assert "overall: 2/4 cases passed (50%)" in failing.stdout
    assert "pass rate 50% is below --min-pass 100%" in failing.stderr
    # 2 orders x (1 + 2 + 1 principle-pairs + 3 pairs x 2 principles) = 20 scorings
    assert "call cache: 20 sent to the model, 0 served from cache" in failing.stdout
    assert ET.parse(files / "report.xml").getroot().find("testsuite").get("failures") == "2"

    enough = runner.invoke(app, [*base, "--min-pass", "0.5"])
    assert enough.exit_code == 0, enough.output
    assert "call cache: 0 sent to the model, 20 served from cache" in enough.stdout

    (files / "bad.yaml").write_text("- prompt: hi\n")
    bad = runner.invoke(
        app,
        ["constitution", "test", "rules.yaml", "bad.yaml", "--backend", "scripted", "--no-cache"],
    )
    assert bad.exit_code == 2 and "bad.yaml:1 row 1: responses:" in bad.stderr


def test_new_writes_cases_that_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = runner.invoke(app, ["constitution", "new", "mine"])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "mine.cases.yaml").is_file()
    cases = read_cases("mine.cases.yaml", load_constitution("mine.yaml"))
    assert [c.id for c in cases] == ["boiled-egg-steps", "kind-about-a-mistake"]
    again = runner.invoke(app, ["constitution", "new", "mine"])
    assert again.exit_code == 2 and "already exists" in again.stderr
