"""The revise stage in the token ledger and under a token budget, on the scripted backend.

The scripted backend counts whitespace-separated words as tokens. Every answer here is
"ok <digest of the request>" (2 tokens), and each prompt "question i" is 2 tokens. With 5 prompts and 2 rounds,
each prompt makes 1 initial answer + 2 x (critique, revision) = 5 generations, so the job
makes 25 calls and 50 completion tokens; the initial answers' prompts are 5 x 2 = 10 tokens,
and the critique and revision prompts (rendered templates) are counted from what the backend
itself reported for each call.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from typer.testing import CliRunner

from cai.backends.scripted import ScriptedBackend
from cai.cli.app import app
from cai.ledger import CHUNK_TOKENS, chunk_file_tokens, job_tokens
from cai.pipeline import run_revise
from cai.sft_data import load_split
from cai.stages.revise import ReviseConfig, read_summary

CONSTITUTION = """
name: ledger-test
version: "1"
principles:
  - id: harmless
    critique_request: "What is harmful here?"
    revision_request: "Rewrite it to be harmless."
    comparison_question: "Which is more harmless?"
  - id: honest
    critique_request: "What is dishonest here?"
    revision_request: "Rewrite it to be honest."
    comparison_question: "Which is more honest?"
"""


def two_words(prompt, params, index) -> str:
    """A 2-token answer that differs per request (so revisions change and rows are kept)."""
    return "ok " + hashlib.sha256(prompt[-1]["content"].encode()).hexdigest()[:8]


class Recording(ScriptedBackend):
    """The scripted backend, keeping the token counts it reported for every call."""

    def __init__(self, crash_on: str | None = None, respond=two_words) -> None:
        super().__init__(respond=respond, model_id="scripted:unit")
        self.crash_on = crash_on
        self.reported: list[tuple[str, int, int]] = []

    def generate_chat(self, conversations, params):
        if self.crash_on and any(self.crash_on in c[-1]["content"] for c in conversations):
            raise RuntimeError("killed")
        generations = super().generate_chat(conversations, params)
        for conversation, g in zip(conversations, generations, strict=True):
            last = conversation[-1]["content"]
            self.reported.append((last, g.prompt_tokens, sum(g.completion_tokens)))
        return generations

    @property
    def spent(self) -> int:
        return sum(prompt + completion for _, prompt, completion in self.reported)


def _config(tmp_path, out="out", **changes) -> ReviseConfig:
    prompts = tmp_path / "prompts.jsonl"
    if not prompts.exists():
        prompts.write_text(
            "".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(5))
        )
    constitution = tmp_path / "constitution.yaml"
    constitution.write_text(CONSTITUTION)
    values = {
        "prompts": str(prompts),
        "out": str(tmp_path / out),
        "constitution": str(constitution),
        "rounds": 2,
        "chunk_size": 2,
        "max_examples": 0,
        "preferences": True,
        "format": "jsonl",
        "guards": {"policy": "split"},
    }
    return ReviseConfig(**{**values, **changes})


def _chunk_files(out):
    return sorted((out / "work" / "chunks").glob("*.jsonl"))


def test_every_critique_and_revision_generation_is_counted(tmp_path):
    backend = Recording()
    summary = run_revise(_config(tmp_path), backend=backend)

    tokens = summary.tokens
    assert (tokens.calls, tokens.completion, tokens.cached_calls) == (25, 50, 0)
    initial = [p for text, p, _ in backend.reported if text.startswith("question ")]
    assert initial == [2] * 5  # "question i": the 5 initial answers' prompts
    assert tokens.prompt == sum(p for _, p, _ in backend.reported) > 10
    assert tokens.spent == backend.spent
    ledger = job_tokens(tmp_path / "out" / "work")
    assert list(ledger.stages) == ["revise"] and list(ledger.stages["revise"]) == ["scripted:unit"]
    assert ledger.total("revise") == tokens
    # chunks of 2, 2 and 1 prompts: 10, 10 and 5 calls, each carried by its chunk's first row
    assert [chunk_file_tokens(p).total().calls for p in _chunk_files(tmp_path / "out")] == [
        10,
        10,
        5,
    ]
    assert read_summary(tmp_path / "out")["tokens"]["spent"] == backend.spent
    card = (tmp_path / "out" / "sft" / "README.md").read_text()
    assert f"- tokens: {backend.spent:,} spent" in card and "in 25 calls" in card


def empty_revision_of_question_3(prompt, params, index) -> str:
    """Like two_words, but revisions of 'question 3' are empty (a row for the flagged split)."""
    rewriting = prompt[0]["role"] == "system" and prompt[0]["content"].startswith("You rewrite")
    if rewriting and "question 3" in prompt[-1]["content"]:
        return ""
    return two_words(prompt, params, index)


def test_chunk_tokens_never_reach_the_datasets(tmp_path):
    summary = run_revise(_config(tmp_path), backend=Recording(respond=empty_revision_of_question_3))
    assert summary.flagged_path and summary.guards.split == 1
    first_lines = [p.read_text().splitlines()[0] for p in _chunk_files(tmp_path / "out")]
    assert all(CHUNK_TOKENS in json.loads(line) for line in first_lines)  # the work files hold them
    rows = [*load_split(summary.sft_path, "train"), *load_split(summary.preferences_path, "train")]
    rows += load_split(summary.flagged_path, "flagged")
    assert len(rows) == 4 + 1 + summary.preferences and summary.preferences == 4
    assert not [row for row in rows if CHUNK_TOKENS in row]
    written = [p for p in (tmp_path / "out").rglob("*.jsonl") if "work" not in p.parts]
    names = sorted(str(p.relative_to(tmp_path / "out")) for p in written)
    assert names == ["preferences/train.jsonl", "sft/flagged.jsonl", "sft/train.jsonl"]
    assert not [p for p in written if CHUNK_TOKENS in p.read_text()]


def test_a_resumed_run_counts_the_whole_job(tmp_path):
    crashed = Recording(crash_on="question 2")
    with pytest.raises(RuntimeError, match="killed"):
        run_revise(_config(tmp_path), backend=crashed)
    assert len(crashed.reported) == 10  # the first chunk (2 prompts) was committed
    resumed = Recording()
    summary = run_revise(_config(tmp_path), backend=resumed)
    assert (summary.prompts_resumed, summary.prompts_processed_now) == (2, 3)
    assert len(resumed.reported) == 15

    fresh = run_revise(_config(tmp_path, out="fresh"), backend=Recording())
    assert summary.tokens == fresh.tokens
    assert summary.tokens.calls == 25 and summary.tokens.spent == crashed.spent + resumed.spent


def test_a_budget_stops_revise_at_a_chunk_boundary_and_a_larger_one_finishes_it(tmp_path):
    fresh = run_revise(_config(tmp_path, out="fresh"), backend=Recording())
    first_chunk = chunk_file_tokens(_chunk_files(tmp_path / "fresh")[0]).spent
    # chunk 1 runs (no estimate yet); chunk 2 is estimated at chunk 1's spend: over the budget
    budget = {"max_tokens": first_chunk + 1}

    stopped_backend = Recording()
    stopped = run_revise(_config(tmp_path, budget=budget), backend=stopped_backend)
    assert stopped.stopped and stopped.prompts == 5 and stopped.prompts_processed_now == 2
    assert stopped.tokens.spent == first_chunk == stopped_backend.spent
    assert stopped.lines() == ["revised: 2 of 5 prompts before the token budget stopped it"]
    assert not (tmp_path / "out" / "sft").exists()
    assert read_summary(tmp_path / "out")["stopped"] is True

    again_backend = Recording()
    again = run_revise(_config(tmp_path, budget={"max_tokens": 1_000_000}), backend=again_backend)
    assert not again.stopped and (again.prompts_resumed, again.prompts_processed_now) == (2, 3)
    assert len(again_backend.reported) == 15  # only the 3 prompts not revised before
    assert again.tokens == fresh.tokens
    rows = load_split(again.sft_path, "train").to_list()
    assert rows == load_split(fresh.sft_path, "train").to_list()
    # each prompt once, in input order: nothing lost, nothing duplicated
    assert [r["messages"][0]["content"] for r in rows] == [f"question {i}" for i in range(5)]


def _pipeline(tmp_path, **extra):
    (tmp_path / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(5))
    )
    (tmp_path / "constitution.yaml").write_text(CONSTITUTION)
    data = {
        "name": "unit",
        "output_dir": str(tmp_path / "run"),
        "prompts": {"path": "prompts.jsonl"},
        "constitution": "constitution.yaml",
        "policy": {"kind": "scripted", "model": "unit"},
        "stages": ["revise"],
        "revise": {"rounds": 2, "max_examples": 0},
        "chunk_size": 2,
        **extra,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_pipeline_counts_and_budgets_revise_like_the_other_stages(tmp_path):
    from cai.pipeline import format_summary, load_pipeline_config, run_pipeline

    path = _pipeline(tmp_path)
    backend = Recording()
    stopped = run_pipeline(
        load_pipeline_config(path, ["budget.max_tokens=1"]), policy_backend=backend
    )
    assert stopped.stopped.startswith(
        f"token budget reached: the revise stage stopped after 2 of 5 prompts, {backend.spent:,} "
        "of 1 tokens spent"
    )
    assert stopped.summary["stages"]["revise"]["stopped"] is True
    assert stopped.summary["tokens"]["spent"] == backend.spent
    assert stopped.stopped in format_summary(stopped)

    rest = Recording()
    done = run_pipeline(load_pipeline_config(path), policy_backend=rest)
    assert done.stopped is None and len(rest.reported) == 15
    stage = done.summary["stages"]["revise"]
    assert stage["prompts_resumed"] == 2 and stage["tokens"]["calls"] == 25
    assert stage["tokens"]["spent"] == done.summary["tokens"]["spent"] == backend.spent + rest.spent
    assert "revise unit: " in format_summary(done)


def test_cli_revise_takes_a_token_budget_and_exits_3_when_it_stops(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": "three"}\n')
    out = tmp_path / "out"
    args = ["revise", str(prompts), "--out", str(out), "--backend", "scripted"]
    args += ["--constitution", "helpful-only", "--rounds", "1", "--format", "jsonl"]
    args += ["--set", "chunk_size=2"]
    stopped = CliRunner().invoke(app, [*args, "--token-budget", "1"])
    assert stopped.exit_code == 3, stopped.output
    assert "revised: 2 of 3 prompts before the token budget stopped it" in stopped.output
    [line] = [x for x in stopped.output.splitlines() if x.startswith("token budget reached")]
    assert line.startswith("token budget reached: the revise stage stopped after 2 of 3 prompts")
    assert "tokens spent: " in stopped.output and "; budget 1" in stopped.output

    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "revised: 3 prompts (1 now, 2 resumed), 1 round(s)" in done.output
    # the whole job: 3 prompts x (initial answer, critique, revision), resumed chunk included
    [revise_line] = [x for x in done.output.splitlines() if x.startswith("  revise ")]
    assert revise_line.endswith(" tokens in 9 calls") and "tokens spent: " in done.output
    assert len(load_split(out / "sft")) == 3
