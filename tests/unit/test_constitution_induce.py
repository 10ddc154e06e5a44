"""`cai constitution induce` end to end on a scripted model with known answers.

People in this data prefer the shorter response on 13 of 16 pairs, and politeness is
unrelated to their choice. The scripted proposer writes "more concise" when the preferred
response is the shorter one, "more detailed" when it is the longer one, and something
unusable every fifth pair; the scripted judge applies each principle literally. Induction
must keep the concise principle, reject the others with their numbers, and write a
constitution that validates.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from typer.testing import CliRunner

from cai.backends.base import ChoiceRequest, GenerationParams
from cai.backends.scripted import ScriptedBackend
from cai.cli.app import app
from cai.constitution import load_constitution
from cai.constitution_tools.induce import (
    InduceConfig,
    human_pairs,
    induce,
    merge_proposals,
    parse_principle,
    split_pairs,
    write_result,
)
from cai.templates import TemplateSet

runner = CliRunner()
RESPONSE = re.compile(r"\((\w)\)\n<response>\n(.*?)\n</response>", re.S)


def rows() -> list[dict]:
    out = []
    for i in range(16):
        short, long = f"Short {i}.", f"A much longer and more detailed answer number {i}."
        if i % 2:  # politeness is noise: on either side, half the time
            short = "please, " + short
        elif i % 4 == 0:
            long = "please, " + long
        chosen, rejected = (short, long) if i < 13 else (long, short)
        out.append(
            {
                "prompt": f"question {i}",
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "prob_chosen": 1.0,
                "source": "human",
                "rater_id": "r1",
            }
        )
    return out


def propose(prompt, params: GenerationParams, index: int) -> str:
    text = "\n".join(m["content"] for m in prompt)
    options = dict(RESPONSE.findall(text))
    preferred = re.search(r"People preferred response \((\w)\)", text).group(1)
    other = "B" if preferred == "A" else "A"
    number = int(re.search(r"question (\d+)", text).group(1))
    if number % 5 == 4:
        return "ok"
    if len(options[preferred]) < len(options[other]):
        return (
            "Select the response that is more concise."
            if number % 2
            else "1. Which response is more concise and to the point?"
        )
    return "Which response is more detailed?"


def judge(request: ChoiceRequest) -> list[float]:
    text = "\n".join(m["content"] for m in request.messages or [])
    (_, first), (_, second) = RESPONSE.findall(text)[:2]
    if "concise" in text:
        p_first = 0.85 if len(first) < len(second) else 0.15
    elif "detailed" in text:
        p_first = 0.85 if len(first) > len(second) else 0.15
    elif "polite" in text:
        p_first = 0.5 + 0.3 * (("please" in first) - ("please" in second))
    else:
        p_first = 0.5
    return [0.0, -math.log(p_first / (1 - p_first))]


class InduceBackend(ScriptedBackend):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("respond", propose)
        kwargs.setdefault("score", judge)
        super().__init__(*args, **kwargs)


def test_parse_principle():
    assert parse_principle("Which response is kinder") == "Which response is kinder?"
    assert parse_principle('1. "Select the response that is shorter."') == (
        "Which response is shorter?"
    )
    assert parse_principle("- Principle: prefer short answers.\nmore text") == (
        "Which response better follows this principle: prefer short answers?"
    )
    assert parse_principle("ok") is None and parse_principle("") is None
    # What a 135M model really wrote: repetition, no quality, pair talk, a paragraph.
    assert parse_principle("Which response is clearer? Which one is better? Which one") == (
        "Which response is clearer?"
    )
    assert parse_principle("Which response is better?") is None
    assert parse_principle('The answer to this question is: "Which response?') is None
    assert parse_principle("The response (B) is the best choice because it is.") is None
    assert parse_principle(" ".join(["word"] * 40)) is None


def test_split_is_seeded_and_stable_under_reordering():
    pairs, ties = human_pairs(rows())
    assert len(pairs) == 16 and ties == 0
    held_in, held_out = split_pairs(pairs, 0.25, seed=0)
    assert len(held_out) == 4 and len(held_in) == 12
    _, again_out = split_pairs(list(reversed(pairs)), 0.25, seed=0)
    assert {p.key for p in again_out} == {p.key for p in held_out}
    assert {p.key for p in split_pairs(pairs, 0.25, seed=1)[1]} != {p.key for p in held_out}


def test_merge_groups_rewordings_and_counts_support():
    merged = merge_proposals(
        [
            ("a", "Which response is more concise?"),
            ("b", "Which response is more concise and to the point?"),
            ("c", "Which response is more concise?"),
            ("d", "Which response is less concise?"),
            ("e", "Which response is more detailed?"),
        ],
        threshold=0.7,
    )
    assert [(c.text, c.support) for c in merged] == [
        ("Which response is more concise?", 3),
        ("Which response is less concise?", 1),
        ("Which response is more detailed?", 1),
    ]


def test_induce_keeps_what_explains_the_labels(tmp_path):
    result = induce(
        InduceBackend(),
        rows(),
        TemplateSet(),
        InduceConfig(holdout=0.25, sample=None),
        name="learned",
        source="human.jsonl",
    )
    assert (result.pairs, result.held_in, result.held_out) == (16, 12, 4)
    assert result.proposing_pairs == 12 and result.proposals == 12
    assert result.unusable_proposals == ["ok"] * len(result.unusable_proposals)
    [kept] = result.kept
    assert kept.id == "more-concise" and kept.text.startswith("Which response is more concise")
    assert kept.coverage == 1.0 and kept.judged == 12
    held_in_short_wins = kept.agreed
    assert kept.agreement == pytest.approx(held_in_short_wins / 12) and kept.agreement > 0.6
    detailed = next(c for c in result.candidates if "detailed" in c.text)
    assert not detailed.kept and detailed.reason.startswith("agreement")
    assert detailed.agreement == pytest.approx(1 - kept.agreement)
    held = result.held_out_report
    assert held.pairs == 4 and held.decided == 4 and held.agreement is not None

    paths = write_result(result, tmp_path / "learned.yaml")
    constitution = load_constitution(paths["constitution"])
    assert constitution.principle_ids == ["more-concise"]
    assert constitution.principle("more-concise").comparison_question == kept.text
    text = paths["constitution"].read_text()
    assert f"# agreement {kept.agreement:.2f} on the 12 of 12 held-in pairs" in text
    assert f"support: {kept.support} proposal(s)" in text
    report = paths["markdown"].read_text()
    assert "| more-concise | Which response is more concise" in report
    assert "## Held-out pairs" in report
    assert json.loads(paths["json"].read_text())["held_out"] == 4


def test_cli_writes_the_constitution_or_explains_why_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("cai.backends.ScriptedBackend", InduceBackend)
    (tmp_path / "human.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows()))
    base = ["constitution", "induce", "human.jsonl", "--backend", "scripted", "--model", "s"]
    made = runner.invoke(app, [*base, "--out", "learned.yaml", "--cache", "calls.sqlite"])
    assert made.exit_code == 0, made.output
    assert "16 pairs (12 held-in, 4 held-out)" in made.stdout
    assert "more-concise: agreement" in made.stdout
    assert load_constitution("learned.yaml").name == "learned"
    assert (tmp_path / "learned.report.md").is_file()

    again = runner.invoke(app, [*base, "--out", "learned.yaml", "--cache", "calls.sqlite"])
    assert again.exit_code == 2 and "already exists" in again.stderr
    cached = runner.invoke(
        app, [*base, "--out", "learned.yaml", "--cache", "calls.sqlite", "--force"]
    )
    assert cached.exit_code == 0 and "call cache: 0 sent to the model" in cached.stdout

    none = runner.invoke(app, [*base, "--out", "none.yaml", "--min-agreement", "1", "--no-cache"])
    assert none.exit_code == 1
    assert "no candidate cleared the thresholds" in none.stderr
    assert not (tmp_path / "none.yaml").exists() and (tmp_path / "none.report.md").is_file()

    (tmp_path / "one.jsonl").write_text(json.dumps(rows()[0]) + "\n")
    few = runner.invoke(app, [*base[:2], "one.jsonl", *base[3:], "--out", "x.yaml", "--no-cache"])
    assert few.exit_code == 2 and "at least 2 human pairs" in few.stderr
