"""Round logic of SL-CAI revision chains and the revise stage, on the scripted backend.

The scripted backend answers from what the rendered prompt asks for, so each test can check
which principle, answer, critique and few-shot examples every model call actually received.
"""

from __future__ import annotations

import re

import pytest

from cai.backends.base import ContextOverflowError
from cai.backends.scripted import ScriptedBackend
from cai.constitution import load_constitution, sample_principles
from cai.judge.critique import ChainStart, CritiqueConfig, CritiqueReviser
from cai.pipeline import run_revise
from cai.sft_data import load_split
from cai.stages.revise import ReviseConfig, iter_chains, read_summary
from cai.templates import TemplateSet

CONSTITUTION = """
name: test-sl
version: "1"
principles:
{principles}
"""
PRINCIPLE = """
  - id: p{i}
    critique_request: "CRIT-p{i}: what is wrong?"
    revision_request: "REV-p{i}: rewrite it."
    comparison_question: "Which is better for p{i}?"
"""
EXAMPLE = """
    examples:
      - prompt: "example prompt"
        response: "example response"
        critique: "EXAMPLE-CRITIQUE-p0"
        revision: "EXAMPLE-REVISION-p0"
"""


@pytest.fixture
def constitution(tmp_path):
    principles = PRINCIPLE.format(i=0).rstrip() + EXAMPLE
    principles += "".join(PRINCIPLE.format(i=i) for i in range(1, 5))
    path = tmp_path / "constitution.yaml"
    path.write_text(CONSTITUTION.format(principles=principles))
    return load_constitution(path)


def _between(text: str, tag: str) -> str:
    return re.search(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.S).group(1)


def scripted_answer(prompt, params, index) -> str:
    """initial -> 'A0(prompt)'; critique -> 'C[p](answer)'; revision -> 'R[p](answer)'."""
    system = prompt[0]["content"] if prompt[0]["role"] == "system" else ""
    last = prompt[-1]["content"]
    if system.startswith("You review"):
        principle = re.search(r"CRIT-(p\d)", last).group(1)
        return f"C[{principle}]({_between(last, 'response')})"
    if system.startswith("You rewrite"):
        principle = re.search(r"REV-(p\d)", last).group(1)
        assert _between(last, "critique").startswith(f"C[{principle}]")
        return f"R[{principle}]({_between(last, 'response')})"
    return f"A0({last})"


class BatchRecordingBackend(ScriptedBackend):
    """The scripted backend, also recording each generate_chat batch as it arrived."""

    def __init__(self, respond=scripted_answer, overflow_marker: str | None = None):
        super().__init__(respond=respond)
        self.batches: list[list[list[dict]]] = []
        self.overflow_marker = overflow_marker

    def generate_chat(self, conversations, params):
        self.batches.append(conversations)
        if self.overflow_marker and any(
            self.overflow_marker in c[-1]["content"] for c in conversations
        ):
            raise ContextOverflowError("prompt too long")
        return super().generate_chat(conversations, params)


def _starts(n: int) -> list[ChainStart]:
    return [
        ChainStart(
            key=f"k{i}", conversation=[{"role": "user", "content": f"q{i}"}], response=f"a{i}"
        )
        for i in range(n)
    ]


def test_rounds_chain_each_revision_into_the_next_critique(constitution):
    backend = BatchRecordingBackend()
    reviser = CritiqueReviser(
        backend, constitution, TemplateSet(), CritiqueConfig(rounds=3, seed=7, max_examples=0)
    )
    chains = reviser.revise(_starts(4))
    # Batched across prompts: one critique call and one revision call per round.
    assert [len(b) for b in backend.batches] == [4] * 6
    for chain in chains:
        assert len(chain.rounds) == 3 and chain.failure is None
        answer = chain.initial_response
        for round_index, result in enumerate(chain.rounds):
            expected = sample_principles(
                constitution, key=f"{chain.key}:{round_index}", k=1, seed=7
            )
            assert result.principle_id == expected[0].id
            assert result.answer_before == answer
            assert result.critique == f"C[{result.principle_id}]({answer})"
            assert result.revision == f"R[{result.principle_id}]({answer})"
            answer = result.revision
        assert chain.final_response == answer
        assert chain.principles == [r.principle_id for r in chain.rounds]


def test_principle_sampling_is_reproducible_and_depends_on_the_seed(constitution):
    def principles(seed: int) -> list[list[str]]:
        reviser = CritiqueReviser(
            BatchRecordingBackend(),
            constitution,
            TemplateSet(),
            CritiqueConfig(rounds=4, seed=seed),
        )
        return [c.principles for c in reviser.revise(_starts(6))]

    first = principles(1)
    assert first == principles(1)
    assert first != principles(2)
    # Rounds of one prompt do not all reuse one principle.
    assert any(len(set(p)) > 1 for p in first)


def test_few_shot_examples_come_from_the_rounds_principle(constitution):
    backend = BatchRecordingBackend()
    reviser = CritiqueReviser(
        backend, constitution, TemplateSet(), CritiqueConfig(rounds=1, max_examples=1)
    )
    chains = reviser.revise(_starts(30))
    critique_batch, revise_batch = backend.batches
    with_p0 = [i for i, c in enumerate(chains) if c.principles == ["p0"]]
    assert with_p0 and len(with_p0) < len(chains)  # both cases occur among these keys
    for i in range(len(chains)):
        has_example = {"role": "assistant", "content": "EXAMPLE-CRITIQUE-p0"} in critique_batch[i]
        assert has_example == (i in with_p0)
        revision_example = {"role": "assistant", "content": "EXAMPLE-REVISION-p0"}
        assert (revision_example in revise_batch[i]) == (i in with_p0)

    bare = BatchRecordingBackend()
    CritiqueReviser(
        bare, constitution, TemplateSet(), CritiqueConfig(rounds=1, max_examples=0)
    ).revise(_starts(30))
    assert all(m["role"] != "assistant" for c in bare.batches[0] for m in c)


def test_context_overflow_stops_only_that_chain(constitution):
    backend = BatchRecordingBackend(overflow_marker="a1")
    chains = CritiqueReviser(backend, constitution, TemplateSet(), CritiqueConfig(rounds=2)).revise(
        _starts(3)
    )
    assert chains[1].failure and "exceeds the context" in chains[1].failure
    assert chains[1].rounds == []
    assert [len(c.rounds) for c in (chains[0], chains[2])] == [2, 2]


def _config(tmp_path, constitution, **changes) -> ReviseConfig:
    prompts = tmp_path / "prompts.jsonl"
    if not prompts.exists():
        prompts.write_text("\n".join(f'{{"prompt": "question {i}"}}' for i in range(5)) + "\n")
    values = {
        "prompts": str(prompts),
        "out": str(tmp_path / "out"),
        "constitution": str(constitution.source_path),
        "rounds": 2,
        "chunk_size": 2,
        "max_examples": 0,
    }
    values.update(changes)
    return ReviseConfig(**values)


def flaky_answer(prompt, params, index) -> str:
    """Like scripted_answer, but revisions of 'question 3' come back empty."""
    text = scripted_answer(prompt, params, index)
    if text.startswith("R[") and "question 3" in prompt[-1]["content"]:
        return ""
    return text


def test_stage_writes_sft_rows_flagged_split_and_preferences(tmp_path, constitution):
    backend = BatchRecordingBackend(respond=flaky_answer)
    config = _config(tmp_path, constitution, preferences=True)
    summary = run_revise(config, backend=backend)

    assert summary.prompts == 5 and summary.prompts_processed_now == 5 and summary.rounds == 2
    assert summary.guards.flagged == 1 and summary.guards.split == 1
    assert summary.guards.by_flag == {"empty_revision": 1}
    train = load_split(summary.sft_path, "train")
    flagged = load_split(summary.sft_path, "flagged")
    assert len(train) == 4 and len(flagged) == 1
    row = train[0]
    final = row["rounds"][-1]["revision"]
    assert row["messages"] == [
        {"role": "user", "content": "question 0"},
        {"role": "assistant", "content": final},
    ]
    assert row["initial_response"] == "A0(question 0)"
    assert row["principles"] == [r["principle_id"] for r in row["rounds"]]
    assert row["flags"] == [] and row["constitution_name"] == "test-sl"
    assert flagged[0]["flags"] == ["empty_revision"]
    assert flagged[0]["round_flags"][0] == "empty_revision"

    prefs = load_split(summary.preferences_path, "train")
    assert len(prefs) == 4 and summary.preferences_skipped == 0
    assert set(prefs["method"]) == {"revision"} and set(prefs["n_judgments"]) == {0}
    assert prefs[0]["chosen"][0]["content"] == final
    assert prefs[0]["rejected"][0]["content"] == "A0(question 0)"
    assert read_summary(config.out)["guards"]["flagged"] == 1
    assert (tmp_path / "out" / "config.resolved.yaml").is_file()
    assert (tmp_path / "out" / "sft" / "README.md").is_file()


def test_rerun_resumes_without_model_calls_and_reroutes_by_policy(tmp_path, constitution):
    first = BatchRecordingBackend(respond=flaky_answer)
    run_revise(_config(tmp_path, constitution), backend=first)
    assert first.calls["generate"] > 0

    again = BatchRecordingBackend(respond=flaky_answer)
    summary = run_revise(
        _config(tmp_path, constitution, guards={"policy": "drop"}, format="jsonl"), backend=again
    )
    assert again.calls["generate"] == 0
    assert summary.prompts_resumed == 5 and summary.prompts_processed_now == 0
    assert summary.guards.dropped == 1 and summary.flagged_path is None
    assert len(load_split(summary.sft_path, "train")) == 4
    assert (tmp_path / "out" / "sft" / "train.jsonl").is_file()
    assert len(list(iter_chains(tmp_path / "out"))) == 5


def test_resume_after_a_crash_redoes_only_the_unfinished_chunk(tmp_path, constitution):
    class CrashOnce(BatchRecordingBackend):
        def generate_chat(self, conversations, params):
            if any("question 2" in c[-1]["content"] for c in conversations):
                raise RuntimeError("killed")
            return super().generate_chat(conversations, params)

    with pytest.raises(RuntimeError, match="killed"):
        run_revise(_config(tmp_path, constitution), backend=CrashOnce())
    resumed = BatchRecordingBackend()
    summary = run_revise(_config(tmp_path, constitution), backend=resumed)
    assert summary.prompts_resumed == 2 and summary.prompts_processed_now == 3
    prompts_seen = {c[-1]["content"] for c in resumed.batches[0]}
    assert prompts_seen == {"question 2", "question 3"}


def test_changed_settings_refuse_to_mix_results(tmp_path, constitution):
    from cai.jobs import JobConfigMismatchError

    run_revise(_config(tmp_path, constitution), backend=BatchRecordingBackend())
    with pytest.raises(JobConfigMismatchError, match="critique"):
        run_revise(_config(tmp_path, constitution, rounds=3), backend=BatchRecordingBackend())


def test_rounds_default_to_the_constitution(tmp_path, constitution):
    summary = run_revise(
        _config(tmp_path, constitution, rounds=None), backend=BatchRecordingBackend()
    )
    assert summary.rounds == constitution.defaults.critique_rounds


def test_pipeline_settings_build_a_full_config(tmp_path, constitution):
    from cai.stages.revise import ReviseConfig as ReviseSettings

    settings = ReviseSettings(rounds=3, guards={"policy": "keep"}, revision={"max_tokens": 9})
    config = ReviseConfig.from_settings(
        settings,
        prompts="p.jsonl",
        out=str(tmp_path),
        constitution=str(constitution.source_path),
        backend={"kind": "scripted"},
    )
    assert (config.rounds, config.guards.policy, config.revision.max_tokens) == (3, "keep", 9)
    assert config.backend.kind == "scripted" and config.prompts == "p.jsonl"


def test_a_template_with_an_assistant_prefix_is_refused(tmp_path, constitution):
    custom = tmp_path / "templates"
    custom.mkdir()
    source = (TemplateSet().source_path("critique")).read_text()
    (custom / "critique.jinja").write_text('{% set assistant_prefix = "Critique:" %}' + source)
    reviser = CritiqueReviser(
        BatchRecordingBackend(), constitution, TemplateSet(custom), CritiqueConfig()
    )
    with pytest.raises(ValueError, match="sets an assistant_prefix"):
        reviser.revise(_starts(1))


def test_weighted_sampling_never_picks_a_zero_weight_principle(tmp_path):
    principles = PRINCIPLE.format(i=0) + "    weight: 0\n" + PRINCIPLE.format(i=1)
    path = tmp_path / "weighted.yaml"
    path.write_text(CONSTITUTION.format(principles=principles))
    reviser = CritiqueReviser(
        BatchRecordingBackend(),
        load_constitution(path),
        TemplateSet(),
        CritiqueConfig(rounds=2, weighted=True),
    )
    assert {p for c in reviser.revise(_starts(10)) for p in c.principles} == {"p1"}
