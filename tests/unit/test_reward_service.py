"""The reward service on the scripted backend: batching, per-item errors, limits, numbers.

The scripted judge reads the values written into the responses it is shown ("v=0.3"): a
pointwise assessment gives P(follows) = v, a comparison gives P(first) = v1 / (v1 + v2). So
every answer can be checked by content against the request it belongs to.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import pickle
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cai.backends.base import BackendError, ContextOverflowError
from cai.backends.scripted import ScriptedBackend
from cai.constitution import load_constitution
from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
from cai.ledger import counting
from cai.reward import AsyncRemoteJudgeReward, RemoteJudgeReward, RewardServiceError
from cai.reward.app import ServiceThread
from cai.reward.batcher import MicroBatcher
from cai.reward.limits import ServiceLimits
from cai.reward.scoring import JudgeScorer
from cai.reward.service import BatchSettings, RewardService
from cai.serving import free_port
from cai.templates import TemplateSet

VALUE = re.compile(r"<response>\s*v=([0-9.]+)")


def value_score(request) -> list[float]:
    if "v=overflow" in request.messages[-1]["content"]:
        raise ContextOverflowError("the prompt does not fit")
    values = [float(v) for v in VALUE.findall(request.messages[-1]["content"])]
    if len(values) == 1:
        return [math.log(values[0]), math.log(1.0 - values[0])]
    return [math.log(values[0]), math.log(values[1])]


def make_service(backend=None, limits=None, wait_ms=2.0, **kwargs) -> RewardService:
    backend = counting(backend or ScriptedBackend(score=value_score), "reward")
    scorer = JudgeScorer(backend, load_constitution("default"), TemplateSet(None), JudgeConfig())
    return RewardService(scorer, limits, BatchSettings(max_wait_ms=wait_ms), **kwargs)


@pytest.fixture(scope="module")
def served():
    with ServiceThread(make_service()) as server:
        yield server


def post(url: str, path: str, body, headers=None) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=headers or {}, timeout=30)


def test_the_batcher_runs_concurrent_requests_as_one_batch_and_splits_answers_back():
    calls: list[list[tuple[str, list]]] = []

    def run(jobs):
        calls.append(list(jobs))
        return [[f"{mode}:{item}" for item in items] for mode, items in jobs]

    async def main():
        batcher = MicroBatcher(run, max_wait_s=0.05, max_items=100)
        await batcher.start()
        try:
            jobs = [
                batcher.submit("score", [f"r{n}-{i}" for i in range(n % 3 + 1)]) for n in range(10)
            ]
            return await asyncio.gather(*jobs), batcher.stats
        finally:
            await batcher.stop()

    answers, stats = asyncio.run(main())
    assert len(calls) == 1 and stats.batches == 1 and stats.requests == 10
    for n, answer in enumerate(answers):
        assert answer == [f"score:r{n}-{i}" for i in range(n % 3 + 1)]


def test_the_batcher_caps_batch_size_and_an_outage_fails_only_its_batch():
    sizes: list[int] = []

    def run(jobs):
        sizes.append(sum(len(items) for _, items in jobs))
        if any("boom" in items for _, items in jobs):
            raise BackendError("engine gone")
        return [list(items) for _, items in jobs]

    async def main():
        batcher = MicroBatcher(run, max_wait_s=0.05, max_items=4)
        await batcher.start()
        try:
            first = await asyncio.gather(
                *[batcher.submit("score", [f"a{i}", f"b{i}"]) for i in range(4)]
            )
            with pytest.raises(BackendError):
                await batcher.submit("score", ["boom"])
            after = await batcher.submit("score", ["ok"])
            return first, after
        finally:
            await batcher.stop()

    first, after = asyncio.run(main())
    assert max(sizes[:-2]) <= 4 and first == [[f"a{i}", f"b{i}"] for i in range(4)]
    assert after == ["ok"]


def test_score_answers_match_their_requests_by_content_under_concurrency(served):
    def ask(n: int) -> tuple[int, list]:
        items = [{"prompt": f"question {n}", "response": f"v=0.{n:02d}{i}"} for i in range(3)]
        return n, post(served.url, "/v1/score", {"items": items}).json()["results"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(1, 33)))
    for n, results in answers:
        assert len(results) == 3
        for i, result in enumerate(results):
            assert result["reward"] == pytest.approx(float(f"0.{n:02d}{i}"))
            assert len(result["principles"]) == 4  # the constitution's principles_per_judgment
            assert all(
                p["p_follows"] == pytest.approx(result["reward"]) for p in result["principles"]
            )


def test_a_malformed_item_gets_its_own_error_and_the_rest_are_scored(served):
    items = [
        {"prompt": "q", "response": "v=0.25"},
        {"prompt": "q"},  # no response
        {"prompt": [], "response": "v=0.5"},  # no messages
        {"prompt": [{"role": "user", "content": "q"}], "response": "v=0.75"},
        {"prompt": "q", "response": "v=overflow"},
    ]
    results = post(served.url, "/v1/score", {"items": items}).json()["results"]
    assert results[0]["reward"] == pytest.approx(0.25) and results[0]["error"] is None
    assert results[1]["reward"] is None and results[1]["error"]["kind"] == "invalid_item"
    assert "response" in results[1]["error"]["message"]
    assert results[2]["error"]["kind"] == "invalid_item"
    assert results[3]["reward"] == pytest.approx(0.75)
    assert results[4]["reward"] is None and results[4]["error"]["kind"] == "context_overflow"


def test_compare_gives_the_pairwise_judges_numbers(served):
    prompt = [{"role": "user", "content": "pick one"}]
    body = {
        "items": [
            {"prompt": prompt, "chosen": "v=0.8", "rejected": "v=0.2"},
            {"prompt": prompt, "chosen": "v=0.1", "rejected": "v=0.3"},
        ]
    }
    results = post(served.url, "/v1/compare", body).json()["results"]
    judge = PairwiseJudge(
        ScriptedBackend(score=value_score), load_constitution("default"), TemplateSet(None)
    )
    from cai.records import pair_key

    direct = judge.judge_pairs(
        [
            PairToJudge(key=pair_key(prompt, a, b), conversation=prompt, response_a=a, response_b=b)
            for a, b in (("v=0.8", "v=0.2"), ("v=0.1", "v=0.3"))
        ]
    )
    for result, judgment in zip(results, direct, strict=True):
        assert result["prob_chosen"] == judgment.prob_a
        assert result["per_order"] == judgment.per_order
        assert result["principles"] == judgment.principles
    assert results[0]["prob_chosen"] == pytest.approx(0.8)
    assert results[1]["prob_chosen"] == pytest.approx(0.25)


def test_rank_orders_each_group_and_centres_it(served):
    groups = [
        {"prompt": "a", "responses": ["v=0.2", "v=0.9", "v=0.5"]},
        {"prompt": "b", "responses": ["v=0.7", "", "v=0.1"]},
        {"prompt": "c", "responses": ["v=0.4"]},
    ]
    results = post(served.url, "/v1/rank", {"groups": groups}).json()["results"]
    first = results[0]["rewards"]
    assert first[1] > first[2] > first[0] and sum(first) == pytest.approx(0.0, abs=1e-9)
    second = results[1]["rewards"]
    assert second[1] is None and second[0] > second[2]
    assert results[1]["error"]["kind"] == "empty_response"
    assert results[2]["rewards"] == [None] and results[2]["error"]["kind"] == "too_few_responses"


def test_openrlhf_get_reward_in_its_exact_shape(served):
    prompt = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    body = {
        "query": [prompt + "v=0.6<|im_end|>", prompt + "v=0.3<|endoftext|>", "other v=0.5"],
        "prompts": [prompt, prompt, prompt],
        "labels": ["", "", ""],
    }
    answer = post(served.url, "/get_reward", body).json()
    assert answer["rewards"][:2] == pytest.approx([0.6, 0.3]) and answer["rewards"][2] is None
    assert answer["scores"] == answer["rewards"]
    assert answer["extra_logs"]["cai_judge_reward"] == answer["rewards"]
    assert answer["errors"][2]["kind"] == "invalid_item" and answer["errors"][0] is None


def test_bad_requests_get_a_4xx_with_one_line(served):
    cases = [
        ("/v1/score", b"not json", 400),
        ("/v1/score", {"items": []}, 422),
        ("/v1/score", {"things": [1]}, 422),
        ("/v1/nothing", {"items": [1]}, 404),
    ]
    for path, body, status in cases:
        if isinstance(body, bytes):
            reply = httpx.post(served.url + path, content=body, timeout=30)
        else:
            reply = post(served.url, path, body)
        assert reply.status_code == status, (path, reply.text)
        error = reply.json()["error"]
        assert isinstance(error, str) and "\n" not in error and error


def test_limits_tokens_rate_and_sizes():
    limits = ServiceLimits(
        api_keys=["k1", "k2"],
        rate_limit=0.01,
        burst=2,
        max_items=3,
        max_group_size=3,
        max_body_bytes=2048,
    )
    with ServiceThread(make_service(limits=limits)) as server:
        item = {"prompt": "q", "response": "v=0.5"}
        assert post(server.url, "/v1/score", {"items": [item]}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert post(server.url, "/v1/score", {"items": [item]}, wrong).status_code == 401
        k1, k2 = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}
        too_many = post(server.url, "/v1/score", {"items": [item] * 4}, k1)
        assert too_many.status_code == 413 and "limit is 3" in too_many.json()["error"]
        group = {"groups": [{"prompt": "q", "responses": ["v=0.1"] * 4}]}
        big = post(server.url, "/v1/rank", group, k1)
        assert big.status_code == 413 and "group 0" in big.json()["error"]
        limited = post(server.url, "/v1/score", {"items": [item]}, k1)  # k1's burst is spent
        assert limited.status_code == 429 and float(limited.headers["Retry-After"]) > 0
        assert "rate limit" in limited.json()["error"]
        assert post(server.url, "/v1/score", {"items": [item]}, k2).status_code == 200
        assert httpx.get(server.url + "/health").status_code == 200  # probes need no token


def test_a_large_body_is_refused_with_413():
    with ServiceThread(make_service(limits=ServiceLimits(max_body_bytes=2048))) as server:
        reply = post(
            server.url, "/v1/score", {"items": [{"prompt": "q" * 5000, "response": "v=0.5"}]}
        )
        assert reply.status_code == 413 and "2048 bytes" in reply.json()["error"]


def test_health_and_metrics_count_what_was_served(served):
    post(served.url, "/v1/score", {"items": [{"prompt": "q", "response": "v=0.5"}, {}]})
    post(
        served.url,
        "/v1/compare",
        {"items": [{"prompt": "q", "chosen": "v=0.6", "rejected": "v=0.4"}]},
    )
    health = httpx.get(served.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "scripted"
    assert health["judge_health"]["pairs_judged"] >= 1
    text = httpx.get(served.url + "/metrics").text
    assert 'cai_reward_requests_total{endpoint="/v1/score",status="200"}' in text
    assert 'cai_reward_item_errors_total{endpoint="score",kind="invalid_item"}' in text
    assert 'cai_reward_request_seconds_bucket{endpoint="/v1/compare",le="+Inf"}' in text
    assert re.search(r"^cai_reward_batches_total [1-9]", text, re.M)
    assert re.search(r"^cai_reward_judge_mean_confidence 0\.\d+", text, re.M)
    assert "cai_reward_queue_items 0" in text


def test_the_token_budget_stops_the_service_with_402():
    with ServiceThread(make_service(max_tokens=1)) as server:
        item = {"items": [{"prompt": "q", "response": "v=0.5"}]}
        assert post(server.url, "/v1/score", item).status_code == 200
        reply = post(server.url, "/v1/score", item)
        assert reply.status_code == 402 and "budget" in reply.json()["error"]


def test_the_client_groups_by_prompt_in_rank_mode_and_pickles(served):
    reward = pickle.loads(pickle.dumps(RemoteJudgeReward(served.url + "/v1/rank", mode="rank")))
    assert reward.__name__ == "cai_judge_rank"
    prompts = [[{"role": "user", "content": p}] for p in ("x", "y", "x", "y")]
    completions = [
        [{"role": "assistant", "content": c}] for c in ("v=0.2", "v=0.6", "v=0.8", "v=0.3")
    ]
    rewards = reward(prompts=prompts, completions=completions, trainer_state=object())
    assert rewards[2] > 0 > rewards[0] and rewards[0] == pytest.approx(-rewards[2])
    assert rewards[1] > 0 > rewards[3]
    # how TRL tells an async reward function (trl.trainer.utils.is_async_callable)
    assert not inspect.iscoroutinefunction(reward.__call__)
    assert inspect.iscoroutinefunction(AsyncRemoteJudgeReward(served.url).__call__)
    scored = asyncio.run(
        AsyncRemoteJudgeReward(served.url, mode="score")(prompts=prompts, completions=completions)
    )
    assert scored == pytest.approx([0.2, 0.6, 0.8, 0.3])
    compare = RemoteJudgeReward(served.url, mode="compare")
    beats = compare(prompts[:1], completions[:1], reference=["v=0.8"])
    assert beats == pytest.approx([0.2])
    with pytest.raises(RewardServiceError, match="reference"):
        compare(prompts[:1], completions[:1])


def test_the_client_raises_one_clear_error_when_nothing_listens():
    url = f"http://127.0.0.1:{free_port()}"
    reward = RemoteJudgeReward(url, mode="score", deadline_s=0.6, backoff_s=0.05)
    with pytest.raises(RewardServiceError) as info:
        reward(["q"], ["v=0.5"])
    message = str(info.value)
    assert url in message and "0.6 s" in message and "cai reward serve" in message


def test_an_engine_outage_is_a_503_and_the_client_says_so():
    def broken(request):
        raise BackendError("the engine died")

    with ServiceThread(make_service(ScriptedBackend(score=broken))) as server:
        reply = post(server.url, "/v1/score", {"items": [{"prompt": "q", "response": "a"}]})
        assert reply.status_code == 503 and "engine died" in reply.json()["error"]
        reward = RemoteJudgeReward(server.url, mode="score", deadline_s=0.5, backoff_s=0.05)
        with pytest.raises(RewardServiceError, match="HTTP 503"):
            reward(["q"], ["a"])


def test_a_refusal_is_raised_at_once_not_retried():
    limits = ServiceLimits(api_keys=["k"])
    with ServiceThread(make_service(limits=limits)) as server:
        reward = RemoteJudgeReward(server.url, mode="score", deadline_s=60)
        with pytest.raises(RewardServiceError, match="HTTP 401"):
            reward(["q"], ["v=0.5"])
        assert RemoteJudgeReward(server.url, mode="score", token="k")(["q"], ["v=0.5"]) == [
            pytest.approx(0.5)
        ]


def test_ppo_takes_the_service_as_its_reward(served):
    from pydantic import TypeAdapter

    from cai.config import ConfigError
    from cai.train.ppo.config import RewardSpec
    from cai.train.ppo.rewards import RemoteReward, RewardError, RewardInputs, build_reward

    spec = TypeAdapter(RewardSpec).validate_python({"kind": "remote", "url": served.url})
    reward = build_reward(spec, tokenizer=None)
    assert isinstance(reward, RemoteReward)
    prompts = [[{"role": "user", "content": "q"}]] * 2
    inputs = RewardInputs(prompts, ["v=0.3", "v=0.9"], [[1], [2]], [True, True])
    assert reward(inputs) == pytest.approx([0.3, 0.9])
    bad = RewardInputs(prompts, ["v=0.3", "v=overflow"], [[1], [2]], [True, True])
    with pytest.raises(RewardError, match="could not score 1 of 2"):
        reward(bad)
    ranked = TypeAdapter(RewardSpec).validate_python(
        {"kind": "remote", "url": served.url, "mode": "rank"}
    )
    with pytest.raises(ConfigError, match="mode: score"):
        build_reward(ranked, tokenizer=None)


def test_the_verl_reward_function_sync_and_async(served, monkeypatch):
    from cai.reward import verl

    info = {"question": "q", "index": 3}
    assert verl.compute_score("src", "v=0.4", "", info, url=served.url) == {
        "score": pytest.approx(0.4)
    }
    compared = asyncio.run(
        verl.compute_score_async("src", "v=0.6", "v=0.2", info, url=served.url, mode="compare")
    )
    assert compared == {"score": pytest.approx(0.75)}
    monkeypatch.setenv(verl.URL_ENV, served.url)
    assert verl.compute_score("src", "v=0.7", None, {"prompt": "q"})["score"] == pytest.approx(0.7)
    with pytest.raises(RewardServiceError, match="extra_info"):
        verl.compute_score("src", "v=0.7", None, {})
    with pytest.raises(RewardServiceError, match="one response per call"):
        verl.compute_score("src", "v=0.7", None, info, mode="rank")


def test_the_call_cache_and_the_ledger_count_a_repeated_request(tmp_path):
    from cai.backends.cached import CachedBackend
    from cai.cache import CallCache

    scripted = ScriptedBackend(score=value_score)
    cached = CachedBackend(scripted, CallCache(tmp_path / "calls.sqlite"))
    with ServiceThread(make_service(cached)) as server:
        item = {"items": [{"prompt": "q", "response": "v=0.35"}]}
        first = post(server.url, "/v1/score", item).json()["results"]
        again = post(server.url, "/v1/score", item).json()["results"]
        assert first == again and first[0]["reward"] == pytest.approx(0.35)
        assert scripted.calls["score"] == 4  # the second request never reached the engine
        text = httpx.get(server.url + "/metrics").text
        assert "cai_reward_cache_hits_total 4" in text and "cai_reward_cached_calls_total 4" in text
        health = httpx.get(server.url + "/health").json()
        assert health["tokens_spent"] > 0
    cached.close()


def test_a_request_that_breaks_its_batch_fails_alone():
    def run(jobs):
        if any("poison" in items for _, items in jobs):
            raise ValueError("cannot render this one")
        return [[item.upper() for item in items] for _, items in jobs]

    async def main():
        batcher = MicroBatcher(run, max_wait_s=0.05, max_items=100)
        await batcher.start()
        try:
            jobs = [
                batcher.submit("score", ["a"]),
                batcher.submit("score", ["poison"]),
                batcher.submit("score", ["b", "c"]),
            ]
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await batcher.stop()

    first, broken, third = asyncio.run(main())
    assert first == ["A"] and third == ["B", "C"]
    assert isinstance(broken, ValueError)


def test_a_message_role_the_templates_cannot_render_is_an_item_error(served):
    items = [
        {"prompt": [{"role": "tool", "content": "x"}], "response": "v=0.5"},
        {
            "prompt": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "q"}],
            "response": "v=0.45",
        },
    ]
    results = post(served.url, "/v1/score", {"items": items}).json()["results"]
    assert (
        results[0]["error"]["kind"] == "invalid_item" and "role" in results[0]["error"]["message"]
    )
    assert results[1]["reward"] == pytest.approx(0.45)


def test_openrlhf_prompts_are_read_back_into_messages():
    from cai.reward.protocol import prompt_messages

    chatml = "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
    assert prompt_messages(chatml + "<|im_start|>assistant\n") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    llama = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    assert prompt_messages(llama) == [{"role": "user", "content": "hi"}]
    assert prompt_messages("Question: hi\nAnswer:") == "Question: hi\nAnswer:"
    assert prompt_messages("<|im_start|>tool\nx<|im_end|>") == "<|im_start|>tool\nx<|im_end|>"


def test_the_service_runs_an_openai_backend_from_its_batch_thread():
    """A server fleet as the judge: the openai backend's own event loop serves the batcher's
    worker thread (the stub answers like vLLM: first label at log-prob -0.5, second -1.5)."""
    from cai.backends import make_backend
    from cai.testing.openai_stub import OpenAIStub

    with OpenAIStub() as stub:
        spec = {"kind": "openai", "model": "stub", "base_urls": [stub.url], "show_progress": False}
        backend = make_backend(spec)
        try:
            with ServiceThread(make_service(backend)) as server:
                item = {"items": [{"prompt": "q", "response": "a"}]}
                result = post(server.url, "/v1/score", item).json()["results"][0]
        finally:
            backend.close()
    assert result["reward"] == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert stub.log.admitted


def test_grpo_and_rloo_configs_take_the_reward_service_as_a_reward():
    """`remote_judge:` in a GRPO / RLOO config puts the service's client among TRL's
    reward_funcs, after the reward models and the in-process judge."""
    from cai.reward.client import RemoteJudgeReward
    from cai.train.preference import OnlineTrainConfig, _online_reward_funcs

    config = OnlineTrainConfig(
        model="m",
        prompts="p.jsonl",
        output_dir="out",
        remote_judge={"url": "http://127.0.0.1:8100", "mode": "rank"},
    )
    [reward] = _online_reward_funcs(config)
    assert isinstance(reward, RemoteJudgeReward) and reward.mode == "rank"
    with pytest.raises(Exception, match="url"):
        OnlineTrainConfig(model="m", prompts="p.jsonl", output_dir="o", remote_judge={"url": "x"})
