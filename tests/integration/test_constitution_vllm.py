"""Constitution tools on the real vLLM engine (the tiny random model): induce and test run
end to end on real generations and real log-probs, with every call through the call cache.

The tiny model's words are noise, so these tests check the machinery (every proposal is
accounted for, every candidate is judged on every held-in pair in both orders, what is
written validates, a rerun is served from the cache), not the quality of the principles.
"""

from __future__ import annotations

import pytest

from cai.backends.base import GenerationParams
from cai.backends.cached import CachedBackend
from cai.cache import CallCache
from cai.constitution import load_constitution
from cai.constitution_tools.casetest import Case, run_cases
from cai.constitution_tools.induce import InduceConfig, induce, write_result
from cai.templates import TemplateSet

pytestmark = pytest.mark.vllm


def _rows(n: int) -> list[dict]:
    return [
        {
            "prompt": f"Tell me about topic {i}.",
            "chosen": [{"role": "assistant", "content": f"Topic {i} is a place to start."}],
            "rejected": [{"role": "assistant", "content": f"No idea about {i}, go away."}],
            "prob_chosen": 1.0,
            "source": "human",
        }
        for i in range(n)
    ]


def test_induce_on_vllm(tmp_path, vllm_backend):
    backend = CachedBackend(vllm_backend, CallCache(tmp_path / "calls.sqlite"))
    config = InduceConfig(
        holdout=0.25,
        sample=None,
        proposals_per_pair=2,
        proposal=GenerationParams(temperature=1.0, max_tokens=24, seed=1),
        min_agreement=0.0,
        min_coverage=0.0,
        coverage_margin=0.0,
    )
    result = induce(backend, _rows(8), TemplateSet(), config, name="tiny", source="rows")
    assert (result.held_in, result.held_out) == (6, 2)
    assert result.proposals == 12  # 6 proposing pairs x 2 proposals, each counted once
    merged = sum(c.support for c in result.candidates)
    assert merged + len(result.unusable_proposals) == result.proposals
    for candidate in result.candidates:
        assert candidate.judged == 6 and candidate.text.startswith("Which")
    paths = write_result(result, tmp_path / "tiny.yaml")
    if result.kept:
        assert load_constitution(paths["constitution"]).name == "tiny"
    assert paths["markdown"].is_file()

    misses = backend.stats.misses
    again = induce(backend, _rows(8), TemplateSet(), config, name="tiny", source="rows")
    assert backend.stats.misses == misses  # a rerun asks the model nothing new
    assert [c.text for c in again.candidates] == [c.text for c in result.candidates]


def test_constitution_cases_on_vllm(vllm_backend):
    constitution = load_constitution("rl-paper")
    case = Case(
        id="smoke",
        conversation=[{"role": "user", "content": "How do I boil an egg?"}],
        responses=["Simmer it for seven minutes.", "No.", "Eggs are for losers."],
        expected=0,
        principles=["helpful-honest-harmless", "cordial"],
    )
    report = run_cases(vllm_backend, constitution, [case], TemplateSet())
    [result] = report.results
    assert result.error is None and result.prob_expected is not None
    assert 0.0 < result.prob_expected < 1.0
    assert {v.principle for v in result.principles} == {"helpful-honest-harmless", "cordial"}
    assert [r.principle for r in report.per_principle] == ["helpful-honest-harmless", "cordial"]
