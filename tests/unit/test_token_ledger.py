"""The token ledger (engine counts, cached calls apart) and the run's token budget.

The scripted backend counts whitespace-separated words as tokens. Each sample prompt here,
"Question number i?", is 3 tokens, and each of its n = 2 responses "response k <digest>" is
3 tokens, so sampling one prompt spends 3 + 2 x 3 = 9 tokens and a chunk of 2 prompts 18.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from cai.backends.base import ChoiceRequest, GenerationParams
from cai.backends.cached import CachedBackend
from cai.backends.scripted import ScriptedBackend
from cai.budget import BudgetConfig, TokenBudget, TokenPrice, model_name, tokens_report
from cai.cache import CallCache
from cai.ledger import LedgerBackend, TokenLedger
from cai.pipeline import format_summary, load_pipeline_config, run_pipeline
from cai.preference_data import load_preferences

CONVS = [[{"role": "user", "content": "one two three"}], [{"role": "user", "content": "four"}]]


def test_generations_and_scores_are_counted_from_the_engine_counts():
    backend = LedgerBackend(ScriptedBackend(model_id="m"), "sample")
    backend.generate_chat(CONVS, GenerationParams(n=2, max_tokens=8))
    request = ChoiceRequest(messages=CONVS[0], assistant_prefix="Answer: (")
    backend.score_choices([request])
    ledger = backend.take()
    counts = ledger.stages["sample"]["m"]
    # prompts 3 + 1, completions 2 x 3 words each ("response k <digest>"), score prompt 3 + 2
    assert (counts.calls, counts.prompt, counts.completion) == (3, 3 + 1 + 5, 12)
    assert counts.spent == 21 and backend.take().spent == 0  # take() starts afresh


def test_cached_answers_and_repeats_are_counted_apart(tmp_path):
    inner = ScriptedBackend(model_id="m")
    cached = CachedBackend(inner, CallCache(tmp_path / "calls.sqlite"))
    backend = LedgerBackend(cached, "sample")
    params = GenerationParams(n=1, max_tokens=8)
    backend.generate_chat([CONVS[0], CONVS[0]], params)  # one engine call, asked twice
    first = backend.take().stages["sample"]["m"]
    assert (first.calls, first.prompt, first.cached_calls, first.cached_prompt) == (1, 3, 1, 3)
    backend.generate_chat([CONVS[0], CONVS[1]], params)  # first from the cache, second new
    second = backend.take().stages["sample"]["m"]
    assert (second.calls, second.prompt, second.completion) == (1, 1, 3)
    assert (second.cached_calls, second.cached_prompt, second.cached_completion) == (1, 3, 3)
    assert inner.calls["generate"] == 2


def test_ledgers_merge_and_round_trip():
    a, b = TokenLedger(), TokenLedger()
    a.record("judge", "m", 10, 0, cached=False)
    b.record("judge", "m", 5, 0, cached=False)
    b.record("judge", "m", None, None, cached=False)
    b.record("sample", "p", 3, 6, cached=True)
    merged = TokenLedger.model_validate(json.loads(a.merged(b).model_dump_json()))
    assert merged.stages["judge"]["m"].prompt == 15
    assert merged.stages["judge"]["m"].uncounted_calls == 1
    assert merged.spent == 15 and merged.total("sample").cached_completion == 6


def test_cost_per_thousand_labels_from_a_price_table():
    ledger = TokenLedger()
    ledger.record("sample", "vllm:policy#0123:float32", 1_000, 3_000, cached=False)
    ledger.record("judge", "openai:judge:abc", 20_000, 0, cached=False)
    ledger.record("judge", "scripted:free", 7, 0, cached=False)
    prices = {"policy": TokenPrice(prompt=1.0, completion=2.0), "judge": TokenPrice(prompt=0.5)}
    report = tokens_report(ledger, BudgetConfig(prices=prices), labels=40)
    # (1000 x 1 + 3000 x 2 + 20000 x 0.5) / 1e6 = 0.017 dollars; per 1000 labels: 0.425
    assert report.cost == pytest.approx(0.017)
    assert report.cost_per_1000_labels == pytest.approx(0.425)
    assert report.unpriced_models == ["free"]
    assert model_name("vllm:org/name@abc:bfloat16") == "org/name"


def test_budget_estimates_the_next_chunk_from_finished_ones():
    budget = TokenBudget(40, "sample")
    assert budget.admit(2)  # nothing finished yet: no estimate, and nothing spent
    budget.items_done, budget.ledger = 2, _spent(18)
    assert budget.estimate(2) == 18 and budget.admit(2)  # 18 + 18 <= 40
    budget.items_done, budget.ledger = 4, _spent(36)
    assert not budget.admit(2) and budget.stopped_at == 4  # 36 + 18 > 40
    assert TokenBudget(None, "x").admit(1_000)
    assert not TokenBudget(10, "judge", spent_before=10).admit(1)


def _spent(tokens: int) -> TokenLedger:
    ledger = TokenLedger()
    ledger.record("sample", "m", tokens, 0, cached=False)
    return ledger


def write_config(tmp_path, name="out", **extra):
    prompts = tmp_path / "prompts.jsonl"
    with prompts.open("w") as handle:
        for i in range(6):
            handle.write(json.dumps({"prompt": f"Question number {i}?"}) + "\n")
    data = {
        "output_dir": str(tmp_path / name),
        "prompts": {"path": "prompts.jsonl"},
        "policy": {"kind": "scripted", "model": "unit"},
        "sample": {"n": 2, "max_tokens": 16},
        "judge": {"principles_per_pair": 1},
        "preferences": {"format": "jsonl"},
        "chunk_size": 2,
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def content_score(request: ChoiceRequest) -> list[float]:
    """Content-dependent stand-in scores, so pairs are labeled rather than tied."""
    digest = hashlib.sha256(text_of(request).encode()).digest()
    return [digest[0] / 64, digest[1] / 64]


def text_of(request: ChoiceRequest) -> str:
    return "".join(m["content"] for m in request.messages or [])


def test_budget_stops_at_a_chunk_boundary_and_a_larger_budget_resumes(tmp_path):
    backend = ScriptedBackend(score=content_score, model_id="scripted:unit")
    path = write_config(tmp_path)
    stopped = run_pipeline(
        load_pipeline_config(path, ["budget.max_tokens=40"]), policy_backend=backend
    )
    # chunk 1: 18 (no estimate yet); chunk 2: 18 + 18 = 36 <= 40; chunk 3: 36 + 18 > 40
    assert stopped.stopped.startswith(
        "token budget reached: the sample stage stopped after 4 of 6 prompts, 36 of 40 tokens"
    )
    assert "--token-budget" in stopped.stopped and stopped.dataset is None
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["stages"]) == ["sample"] and summary["stopped"] == stopped.stopped
    assert summary["tokens"]["spent"] == 36
    assert stopped.stopped in format_summary(stopped)
    calls = backend.calls["generate"]

    again = run_pipeline(
        load_pipeline_config(path, ["budget.max_tokens=1000000"]), policy_backend=backend
    )
    assert again.stopped is None
    assert backend.calls["generate"] == calls + 2  # only the 2 prompts not sampled before
    sample = again.summary["stages"]["sample"]
    assert sample["prompts_resumed"] == 4 and sample["tokens"]["spent"] == 6 * 9
    tokens = again.summary["tokens"]
    judge_spent = again.summary["stages"]["judge"]["tokens"]["spent"]
    assert judge_spent > 0 and tokens["spent"] == 6 * 9 + judge_spent

    fresh = run_pipeline(
        load_pipeline_config(write_config(tmp_path, name="fresh")),
        policy_backend=ScriptedBackend(score=content_score, model_id="scripted:unit"),
    )
    assert load_preferences(again.dataset).to_list() == load_preferences(fresh.dataset).to_list()
    assert fresh.summary["tokens"]["spent"] == tokens["spent"]


def test_budget_stops_the_judge_stage_and_the_cli_says_so(tmp_path):
    from typer.testing import CliRunner

    from cai.cli.app import app

    path = write_config(tmp_path)
    result = CliRunner().invoke(app, ["run", str(path), "--token-budget", "60"])
    assert result.exit_code == 3, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("token budget")]
    # sampling spends 54; the judge's first chunk runs (no estimate yet), then it stops
    assert line.startswith("token budget reached: the judge stage stopped after 2 of 6 prompts")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["stages"]) == {"sample", "judge"}
    assert summary["stages"]["judge"]["stopped"] is True
    done = CliRunner().invoke(app, ["run", str(path)])
    assert done.exit_code == 0, done.output
    assert "pairs written" in done.output and "tokens spent" in done.output


def test_summary_shows_cost_per_thousand_labels(tmp_path):
    backend = ScriptedBackend(score=content_score, model_id="scripted:unit")
    prices = {"unit": {"prompt": 1000.0, "completion": 2000.0}}
    config = load_pipeline_config(write_config(tmp_path, budget={"prices": prices}))
    result = run_pipeline(config, policy_backend=backend)
    tokens = result.summary["tokens"]
    total = tokens["ledger"]["stages"]
    prompt = sum(m["prompt"] for s in total.values() for m in s.values())
    completion = sum(m["completion"] for s in total.values() for m in s.values())
    cost = (prompt * 1000 + completion * 2000) / 1e6
    labels = result.summary["stages"]["preferences"]["rows_written"]
    assert tokens["labels"] == labels > 0
    assert tokens["cost"] == pytest.approx(cost)
    assert tokens["cost_per_1000_labels"] == pytest.approx(cost / labels * 1000)
    assert "per 1,000 labels" in format_summary(result)
