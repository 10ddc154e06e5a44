"""Principles written for one use: each command samples only what it can use, and refuses a
constitution with nothing for it, naming the principles and what each one carries."""

from __future__ import annotations

import json
import logging
import textwrap

import pytest
from typer.testing import CliRunner

from cai.backends.scripted import ScriptedBackend
from cai.cli.app import app
from cai.constitution import load_constitution, sample_principles
from cai.constitution.usage import ConstitutionUseError, check_use, require_use
from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
from cai.judge.critique import CritiqueConfig, CritiqueReviser
from cai.templates import TemplateSet

runner = CliRunner()

FILES = {
    "judge-only.yaml": """\
        name: judge-only
        principles:
          - id: kind
            comparison_question: Which response is kinder?
          - id: clear
            comparison_question: Which response is clearer?
        """,
    "revise-only.yaml": """\
        name: revise-only
        principles:
          - id: fix-tone
            critique_request: What in the reply is unkind?
            revision_request: Rewrite the reply to be kind.
          - id: fix-facts
            critique_request: What in the reply is wrong?
            revision_request: Rewrite the reply so it is correct.
        """,
    "mixed.yaml": """\
        name: mixed
        principles:
          - id: kind
            comparison_question: Which response is kinder?
          - id: fix-tone
            critique_request: What in the reply is unkind?
            revision_request: Rewrite the reply to be kind.
          - id: kind-yes-no
            assessment_question: Is the reply kind?
        """,
}


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in FILES.items():
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "samples.jsonl").write_text(
        json.dumps({"prompt": "hi there", "responses": ["hello!", "go away"]}) + "\n"
    )
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "hi there"}) + "\n")
    return tmp_path


def test_check_use_lists_usable_and_skipped(files):
    mixed = load_constitution("mixed.yaml")
    judge = check_use(mixed, "judge")
    assert (judge.usable, judge.skipped) == (["kind"], ["fix-tone", "kind-yes-no"])
    assert "uses 1 of 3 principles; skipped 2" in judge.note()
    assert check_use(mixed, "revise").usable == ["fix-tone"]
    # assess takes an assessment question, or rewords a comparison question
    assert check_use(mixed, "assess").usable == ["kind", "kind-yes-no"]


def test_sampling_draws_only_usable_principles_and_keeps_old_draws(files):
    mixed = load_constitution("mixed.yaml")
    for key in ("a", "b", "c", "d"):
        assert [p.id for p in sample_principles(mixed, key, 3, 0, use="judge")] == ["kind"]
    default = load_constitution("default")
    for key in ("a", "b", "c"):  # every principle fits: the same draw as before uses existed
        assert sample_principles(default, key, 4, 1, use="judge") == sample_principles(
            default, key, 4, 1
        )


def test_the_judge_refuses_a_revise_only_constitution_naming_ids(files):
    revise_only = load_constitution("revise-only.yaml")
    with pytest.raises(ConstitutionUseError) as info:
        PairwiseJudge(ScriptedBackend(), revise_only, TemplateSet(), JudgeConfig())
    message = str(info.value)
    assert message.startswith("revise-only.yaml: constitution 'revise-only' has no principle")
    assert "fix-tone (revise), fix-facts (revise)" in message


def test_the_reviser_refuses_a_comparison_only_constitution(files):
    with pytest.raises(ConstitutionUseError) as info:
        CritiqueReviser(
            ScriptedBackend(), load_constitution("rl-paper"), TemplateSet(), CritiqueConfig()
        )
    assert "no principle cai revise can use" in str(info.value)
    assert "helpful-honest-harmless (judge, assess)" in str(info.value)


def test_the_judge_uses_only_comparison_principles_and_says_what_it_skipped(files, caplog):
    from cai.constitution import usage

    usage._warned.clear()  # the note is logged once per process and constitution
    mixed = load_constitution("mixed.yaml")
    with caplog.at_level(logging.WARNING, logger="cai.constitution"):
        judge = PairwiseJudge(
            ScriptedBackend(), mixed, TemplateSet(), JudgeConfig(principles_per_pair=3)
        )
        require_use(mixed, "judge")  # warned once per constitution, not per call
    notes = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert notes == [
        "cai judge uses 1 of 3 principles; skipped 2 without a `comparison_question`: fix-tone, kind-yes-no"
    ]
    pair = PairToJudge(
        key="p", conversation=[{"role": "user", "content": "hi"}], response_a="x", response_b="y"
    )
    [result] = judge.judge_pairs([pair])
    assert result.ok and result.principles == ["kind"]


def test_cli_commands_take_what_they_need_and_refuse_the_rest(files):
    judged = runner.invoke(
        app,
        [
            "judge",
            "samples.jsonl",
            "--out",
            "j",
            "--backend",
            "scripted",
            "--model",
            "t",
            "--constitution",
            "judge-only.yaml",
        ],
    )
    assert judged.exit_code == 0, judged.output
    refused = runner.invoke(
        app,
        [
            "judge",
            "samples.jsonl",
            "--out",
            "j2",
            "--backend",
            "scripted",
            "--model",
            "t",
            "--constitution",
            "revise-only.yaml",
        ],
    )
    assert refused.exit_code == 2
    assert "no principle cai judge can use" in refused.stderr
    assert "fix-tone (revise), fix-facts (revise)" in refused.stderr

    revised = runner.invoke(
        app,
        [
            "revise",
            "prompts.jsonl",
            "--out",
            "r",
            "--backend",
            "scripted",
            "--model",
            "t",
            "--constitution",
            "revise-only.yaml",
        ],
    )
    assert revised.exit_code == 0, revised.output
    refused = runner.invoke(
        app,
        [
            "revise",
            "prompts.jsonl",
            "--out",
            "r2",
            "--backend",
            "scripted",
            "--model",
            "t",
            "--constitution",
            "judge-only.yaml",
        ],
    )
    assert refused.exit_code == 2
    assert "no principle cai revise can use" in refused.stderr
    assert "kind (judge, assess), clear (judge, assess)" in refused.stderr


def test_validate_for_a_use(files):
    result = runner.invoke(
        app,
        [
            "constitution",
            "validate",
            "judge-only.yaml",
            "mixed.yaml",
            "revise-only.yaml",
            "--for",
            "judge",
        ],
    )
    assert result.exit_code == 2
    assert "ok   judge-only.yaml" in result.stdout
    assert "skipped 2 without a `comparison_question`: fix-tone, kind-yes-no" in result.stdout
    assert "FAIL revise-only.yaml: no principle usable for judge" in result.stderr
    assert "  fix-tone: revise" in result.stderr
    ok = runner.invoke(app, ["constitution", "validate", "revise-only.yaml", "--for", "revise"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["constitution", "validate", "mixed.yaml", "--for", "train"])
    assert bad.exit_code == 2 and "judge, revise, assess" in bad.output


def test_assess_asks_the_assessment_question_or_rewords_the_comparison(files):
    mixed = load_constitution("mixed.yaml")
    templates = TemplateSet()
    conversation = [{"role": "user", "content": "hi"}]

    def last(pid: str) -> str:
        rendered = templates.render(
            "assess",
            conversation=conversation,
            response="hello",
            principle=mixed.principle(pid),
            constitution=mixed,
        )
        return rendered.messages[-1]["content"]

    assert "Is the reply kind?" in last("kind-yes-no")
    assert "Judge the reply by this question" not in last("kind-yes-no")
    assert "Judge the reply by this question: Which response is kinder?" in last("kind")
