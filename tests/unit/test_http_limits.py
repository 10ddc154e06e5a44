"""The openai backend against a rate-limiting provider and a slow server (a local stub)."""

from __future__ import annotations

import time

import pytest

from cai.backends.base import GenerationParams
from cai.backends.http_errors import ServerTimeoutError
from cai.backends.http_limits import EndpointLimits
from cai.backends.openai_server import OpenAIServerBackend
from cai.testing.openai_stub import OpenAIStub, StubLimits

PARAMS = GenerationParams(max_tokens=4)


def _backend(stub: OpenAIStub, **kw) -> OpenAIServerBackend:
    backend = OpenAIServerBackend([stub.url], "stub", show_progress=False, **kw)
    backend.pool.backoff_s = 0.05
    return backend


def test_paced_to_the_providers_caps_nothing_is_lost_and_little_is_refused():
    window, rpm = 2.0, 40  # 20 requests a second
    with OpenAIStub(StubLimits(rpm=rpm, window_s=window)) as stub:
        per_minute = rpm * 60 / window
        backend = _backend(stub, limits=EndpointLimits(requests_per_minute=per_minute))
        try:
            started = time.monotonic()
            out = backend.generate_text([f"p{i}" for i in range(90)], PARAMS)
            elapsed = time.monotonic() - started
        finally:
            backend.close()
    lost = sum(g.failed for g in out)
    assert len(out) == 90 and lost <= 0.02 * 90
    assert stub.log.refused <= 0.1 * len(stub.log.admitted)  # at most 10% over the cap
    assert elapsed >= (90 - rpm) * window / rpm  # the stub held it to its rate
    assert elapsed < 2.0 * 90 * window / rpm  # and the pacing did not waste it


def test_a_429_storm_with_retry_after_loses_nothing():
    """Not told the caps, the client is refused, waits as long as Retry-After says, and
    finishes every request within its deadline."""
    with OpenAIStub(StubLimits(rpm=20, window_s=1.0)) as stub:
        backend = _backend(stub, max_retries=2)
        try:
            out = backend.generate_text([f"p{i}" for i in range(60)], PARAMS)
            stats = backend.endpoint_stats()[0]
        finally:
            backend.close()
    assert len(out) == 60 and not any(g.failed for g in out)
    assert stub.log.refused > 2  # a storm: more 429s than max_retries allows one request
    assert stats["throttled"] == stub.log.refused
    assert stats["concurrency"] < 16  # it backed off


def test_a_rate_is_learned_from_429s_when_no_cap_is_given():
    """Told nothing, the client paces itself to what the provider accepted: after the first
    refusals few more follow, and none is lost."""
    with OpenAIStub(StubLimits(rpm=20, window_s=1.0)) as stub:
        backend = _backend(stub)
        try:
            out = backend.generate_text([f"p{i}" for i in range(160)], PARAMS)
            stats = backend.endpoint_stats()[0]
        finally:
            backend.close()
    assert not [g for g in out if g.failed]
    assert stats["throttled"] == stub.log.refused > 0
    assert 0 < stats["learned_rpm"] <= 1.2 * 20 * 60  # near the cap (20 a second), not far above
    assert stub.log.refused <= 0.1 * len(stub.log.admitted)


def test_tokens_per_minute_are_paced():
    window, tpm = 2.0, 400
    with OpenAIStub(StubLimits(tpm=tpm, window_s=window)) as stub:
        limits = EndpointLimits(tokens_per_minute=tpm * 60 / window)
        backend = _backend(stub, limits=limits)
        try:
            out = backend.generate_text([f"prompt {i:04d}" for i in range(40)], PARAMS)
        finally:
            backend.close()
    assert not any(g.failed for g in out)
    assert stub.log.refused <= 0.1 * len(stub.log.admitted)


def test_a_slow_server_fails_within_the_deadline():
    with OpenAIStub(StubLimits(delay_s=5.0)) as stub:
        backend = _backend(stub, timeout_s=0.6, max_retries=5)
        try:
            started = time.monotonic()
            with pytest.raises(ServerTimeoutError, match=r"0\.6 s deadline"):
                backend.generate_text(["slow"], PARAMS)
            assert time.monotonic() - started < 3.0
        finally:
            backend.close()


def test_endpoint_stats_report_concurrency_and_queueing():
    with OpenAIStub(StubLimits(delay_s=0.01)) as stub:
        backend = _backend(stub, max_concurrency=8)
        try:
            backend.generate_text([f"p{i}" for i in range(200)], PARAMS)
            [stats] = backend.endpoint_stats()
        finally:
            backend.close()
    assert stats["url"] == stub.url and stats["requests"] == 200
    assert 1 <= stats["concurrency"] <= 8 and stats["peak_concurrency"] == 8
    assert stats["queued_s"] > 0 and stats["throttled"] == 0


def test_per_url_limits_come_from_the_spec_and_wrong_urls_are_named():
    from cai.backends import backend_spec
    from cai.backends.http_limits import endpoint_limits
    from cai.errors import CaiError

    spec = backend_spec(
        kind="openai",
        base_urls=["http://a:1/v1", "http://b:2/v1/"],
        max_concurrency=32,
        requests_per_minute=600,
        endpoint_limits={"http://b:2/v1": {"tokens_per_minute": 1000, "max_concurrency": 4}},
    )
    first, second = endpoint_limits(spec)
    assert (first.max_in_flight, first.requests_per_minute, first.tokens_per_minute) == (
        32,
        600,
        None,
    )
    assert (second.max_in_flight, second.requests_per_minute, second.tokens_per_minute) == (
        4,
        600,
        1000,
    )
    wrong = spec.model_copy(update={"endpoint_limits": {"http://c:3/v1": {"max_concurrency": 2}}})
    with pytest.raises(CaiError, match="http://c:3/v1"):
        endpoint_limits(wrong)


def test_the_client_tokenizer_is_only_for_local_checkpoints(tmp_path):
    from cai.backends.base import BackendError
    from cai.backends.client_tokens import load_client_tokenizer

    remote = ["http://10.0.0.5:8000/v1"]
    assert load_client_tokenizer("auto", {str(tmp_path)}, remote) is None
    assert load_client_tokenizer("server", {str(tmp_path)}, ["http://127.0.0.1:1/v1"]) is None
    assert load_client_tokenizer("auto", {"org/hub-id"}, ["http://127.0.0.1:1/v1"]) is None
    with pytest.raises(BackendError, match="client_tokenizer"):
        load_client_tokenizer("nope", set(), remote)


def test_requests_go_where_there_is_room():
    """A server that answers slowly fills its window, so the fast one gets more requests."""
    with OpenAIStub(StubLimits(delay_s=0.1)) as slow, OpenAIStub() as fast:
        backend = OpenAIServerBackend(
            [slow.url, fast.url], "stub", max_concurrency=4, show_progress=False
        )
        try:
            out = backend.generate_text([f"p{i}" for i in range(120)], PARAMS)
        finally:
            backend.close()
    assert not any(g.failed for g in out)
    assert len(fast.log.admitted) > 2 * len(slow.log.admitted)
