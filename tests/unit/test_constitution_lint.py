"""`cai constitution lint`: static findings on crafted files, and the agreement matrix on a
judgments directory built with a scripted judge whose principles are redundant, conflicting,
flat and position-biased by construction."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from typer.testing import CliRunner

from cai.backends.base import ChoiceRequest
from cai.backends.scripted import ScriptedBackend
from cai.cli.app import app
from cai.constitution import load_constitution
from cai.constitution_tools.lint import LintConfig, static_findings
from cai.constitution_tools.lintreport import lint_constitution
from cai.judge.compare import JudgeConfig, PairwiseJudge
from cai.records import Sample
from cai.stages.judge import judge_samples
from cai.templates import TemplateSet

runner = CliRunner()


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def codes(findings) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for f in findings:
        out.setdefault(f.code, []).append(f.principles)
    return out


CRAFTED = """\
name: crafted
description: What this constitution is for, in a sentence or two.
defaults:
  principles_per_judgment: 1
principles:
  - id: helpful
    comparison_question: Which response is more helpful to the user?
  - id: helpful-again
    comparison_question: Which response is the most helpful for the user?
  - id: yes-no
    comparison_question: Is the response polite and respectful to everyone?
  - id: less-harm
    comparison_question: Which response is less harmful to people?
  - id: todo
    comparison_question: "Which response is better on TODO: write the question here?"
  - id: templated
    comparison_question: Which response better respects {{ user_name }} and their goals?
  - id: tiered-but-mean
    tier: 1
    critique_request: What is wrong with the reply here?
    revision_request: Rewrite the reply to fix it.
  - id: vague
    comparison_question: Which response is better?
  - id: assess-compares
    assessment_question: Which response is more accurate than the other one?
"""


def test_static_findings_on_a_crafted_file(tmp_path):
    path = write(tmp_path, "crafted.yaml", CRAFTED)
    findings = static_findings(load_constitution(path))
    found = codes(findings)
    assert found["near-duplicate"] == [["helpful", "helpful-again"]]
    assert found["not-a-comparison"] == [["yes-no"]]
    assert ["less-harm"] in found["negated-framing"]
    assert found["placeholder"][0] == ["todo"]
    assert len(found["placeholder"]) == 2  # and the starter's description
    assert found["template-variable"] == [["templated"]]
    assert found["empty-question"] == [["vague"]]
    assert found["assessment-compares"] == [["assess-compares"]]
    assert ["tiered-but-mean"] in found["unused-tier"]  # a tier without a comparison question
    assert any(f == ["tiered-but-mean"] for f in found["unused-tier"])
    severity = {f.code: f.severity for f in findings}
    assert severity["not-a-comparison"] == "error" and severity["negated-framing"] == "info"
    duplicate = next(f for f in findings if f.code == "near-duplicate")
    assert duplicate.line == 9 and duplicate.file.endswith("crafted.yaml")
    assert "similarity" in duplicate.message
    # The bundled constitutions have nothing worse than notes.
    for name in ("default", "helpful-only", "medical-safety", "rl-paper"):
        assert {f.severity for f in static_findings(load_constitution(name))} <= {"info"}


def test_tiers_and_weights_that_never_matter(tmp_path):
    mean = write(
        tmp_path,
        "mean.yaml",
        """\
        name: mean
        principles:
          - id: a
            tier: 1
            weight: 3
            comparison_question: Which response is more accurate?
          - id: b
            tier: 2
            comparison_question: Which response is kinder to the reader?
        """,
    )
    found = codes(static_findings(load_constitution(mean)))
    assert found["unused-tier"] == [["a", "b"]]  # tiers under mean aggregation
    assert found["unused-weight"] == [["a"]]  # weights without weighted sampling
    one_tier = write(
        tmp_path,
        "one.yaml",
        """\
        name: one
        defaults: {aggregation: tiered, weighted_sampling: true, principles_per_judgment: 2}
        principles:
          - id: a
            tier: 1
            weight: 3
            comparison_question: Which response is more accurate?
          - id: b
            tier: 1
            comparison_question: Which response is kinder to the reader?
        """,
    )
    found = codes(static_findings(load_constitution(one_tier)))
    assert found["single-tier"] == [["a", "b"]]
    assert found["unused-weight"] == [["a"]]  # k draws every principle: weights moot
    zero_margin = write(
        tmp_path,
        "zero.yaml",
        """\
        name: zero
        defaults: {aggregation: tiered, tier_margin: 0}
        principles:
          - id: a
            tier: 1
            comparison_question: Which response is more accurate?
          - id: b
            comparison_question: Which response is kinder to the reader?
        """,
    )
    found = codes(static_findings(load_constitution(zero_margin)))
    assert "unused-tier" in found and found["untiered"] == [["b"]]


def test_user_templates_with_unknown_variables(tmp_path):
    templates = tmp_path / "prompts"
    templates.mkdir()
    (templates / "compare.jinja").write_text(
        "[[user]]\n{{ principle.comparison_question }}\n{{ principle.question }}\n"
    )
    findings = static_findings(load_constitution("helpful-only"), templates_dir=templates)
    [bad] = [f for f in findings if f.code == "template-variable"]
    assert bad.line == 3 and "`principle.question`" in bad.message and bad.severity == "error"


# ---- empirical ---------------------------------------------------------------------------------
EMPIRICAL = """\
name: empirical
defaults:
  principles_per_judgment: 5
principles:
  - id: helpful
    comparison_question: "[helpful] Which response helps the user more?"
  - id: useful
    comparison_question: "[useful] Which response would the user find more useful?"
  - id: contrarian
    comparison_question: "[contrarian] Which response is more daring and unusual?"
  - id: flat
    comparison_question: "[flat] Which response uses the nicer font?"
  - id: positional
    comparison_question: "[positional] Which response has the better vibe overall?"
"""
RESPONSE = re.compile(r"<response>\n(.*?)\n</response>", re.S)


def by_principle(request: ChoiceRequest) -> list[float]:
    text = "\n".join(m["content"] for m in request.messages or [])
    pid = re.search(r"\[(\w+)\] Which", text).group(1)
    first, _ = RESPONSE.findall(text)[:2]
    good_first = first.startswith("GOOD")
    logit = {
        "helpful": 1.4 if good_first else -1.4,
        "useful": 1.1 if good_first else -1.1,
        "contrarian": -1.4 if good_first else 1.4,
        "flat": 0.0,
        "positional": 3.0,  # the first slot, whatever it holds
    }[pid]
    return [0.0, -logit]


@pytest.fixture
def judged_run(tmp_path):
    constitution_path = write(tmp_path, "empirical.yaml", EMPIRICAL)
    constitution = load_constitution(constitution_path)
    samples = [
        Sample(
            prompt_id=f"p{i}",
            prompt=[{"role": "user", "content": f"question {i}"}],
            responses=[f"GOOD answer {i}", f"BAD answer {i}"][:: 1 if i % 2 else -1],
            finish_reasons=["stop", "stop"],
            policy_model="m",
        )
        for i in range(8)
    ]
    judge = PairwiseJudge(
        ScriptedBackend(score=by_principle), constitution, TemplateSet(), JudgeConfig()
    )
    judge_samples(judge, samples, tmp_path / "run" / "judgments", total=len(samples))
    # People prefer GOOD on 6 pairs and BAD on 2.
    human = tmp_path / "human.jsonl"
    with human.open("w") as handle:
        for i, sample in enumerate(samples):
            good, bad = sorted(sample.responses)  # "BAD ..." < "GOOD ..."
            good, bad = bad, good
            chosen, rejected = (good, bad) if i < 6 else (bad, good)
            row = {
                "prompt": sample.prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "prob_chosen": 1.0,
                "source": "human",
            }
            handle.write(json.dumps(row) + "\n")
    return constitution_path, tmp_path / "run" / "judgments", human


def test_agreement_matrix_finds_redundant_conflicting_and_idle_principles(judged_run):
    constitution_path, judgments, human = judged_run
    report = lint_constitution(load_constitution(constitution_path), judgments, human)
    empirical = report.empirical
    assert empirical.pairs == 8
    ids = empirical.matrix.ids
    assert ids == ["helpful", "useful", "contrarian", "flat", "positional"]
    m = {
        (a, b): empirical.matrix.agreement[i][j]
        for i, a in enumerate(ids)
        for j, b in enumerate(ids)
    }
    c = {
        (a, b): empirical.matrix.correlation[i][j]
        for i, a in enumerate(ids)
        for j, b in enumerate(ids)
    }
    assert m[("helpful", "useful")] == 1.0 and m[("helpful", "contrarian")] == 0.0
    assert c[("helpful", "contrarian")] == pytest.approx(-1.0)
    assert m[("helpful", "flat")] is None  # flat never decides, so nothing to agree on
    found = codes(report.findings)
    assert found["redundant"] == [["helpful", "useful"]]
    assert found["conflicting"] == [["helpful", "contrarian"], ["useful", "contrarian"]]
    assert ["flat"] in found["never-moves"]
    assert found["order-disagreement"] == [["positional"]]
    assert found["disagrees-with-people"] == [["contrarian"]]
    stats = {s.principle: s for s in empirical.stats}
    assert stats["helpful"].human_agreement == pytest.approx(0.75)
    assert stats["contrarian"].human_agreement == pytest.approx(0.25)
    assert stats["positional"].order_disagreement == 1.0
    assert stats["flat"].moves == 0
    assert stats["helpful"].moves == 8  # contrarian cancels it: leaving it out flips the label
    # Suggest dropping the redundant principle that agrees less with people (a tie here:
    # both 75%), else the one that moves fewer labels, else the later id.
    redundant = next(f for f in report.findings if f.code == "redundant")
    assert "suggested: `useful`" in redundant.fix
    assert empirical.judge_human_agreement == pytest.approx(0.75)


def test_cli_writes_markdown_json_and_heatmap(judged_run, tmp_path):
    constitution_path, judgments, human = judged_run
    result = runner.invoke(
        app,
        [
            "constitution",
            "lint",
            str(constitution_path),
            "--judgments",
            str(judgments.parent),
            "--human",
            str(human),
            "--out",
            str(tmp_path / "lint"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "warning [redundant] `helpful` and `useful` vote alike on 100% of 8 shared pairs"
        in result.stdout
    )
    assert "the judge agrees with people on 75% of 8 shared pairs" in result.stdout
    png = (tmp_path / "lint" / "agreement.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    markdown = (tmp_path / "lint" / "lint.md").read_text()
    assert "## Agreement matrix" in markdown and "| contrarian | 8 | 8 |" in markdown
    data = json.loads((tmp_path / "lint" / "lint.json").read_text())
    assert data["empirical"]["matrix"]["ids"][0] == "helpful"
    strict = runner.invoke(
        app,
        ["constitution", "lint", str(constitution_path), "--judgments", str(judgments), "--strict"],
    )
    assert strict.exit_code == 1  # warnings count under --strict


def test_cli_exit_codes(tmp_path):
    crafted = write(tmp_path, "crafted.yaml", CRAFTED)
    result = runner.invoke(app, ["constitution", "lint", str(crafted)])
    assert result.exit_code == 1  # errors: not a comparison, placeholder, template variable
    assert "error [not-a-comparison]" in result.stdout
    clean = runner.invoke(app, ["constitution", "lint", "helpful-only"])
    assert clean.exit_code == 0 and "0 error(s), 0 warning(s)" in clean.stdout
    missing = runner.invoke(app, ["constitution", "lint", "default", "--judgments", str(tmp_path)])
    assert missing.exit_code == 2 and "holds no finished judgments" in missing.stderr
    human_only = runner.invoke(app, ["constitution", "lint", "default", "--human", str(crafted)])
    assert human_only.exit_code == 2 and "--human needs --judgments" in human_only.stderr


def test_lint_config_thresholds_are_used(tmp_path):
    path = write(tmp_path, "crafted.yaml", CRAFTED)
    loose = static_findings(load_constitution(path), LintConfig(duplicate_threshold=0.9))
    assert "near-duplicate" not in codes(loose)
