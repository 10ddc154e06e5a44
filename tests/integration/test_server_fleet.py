"""A real vLLM server (the one `cai serve` runs) killed with SIGKILL in the middle of a batch
and restarted on the same port: the batch waits for it with the backend's default settings
and gives exactly what an undisturbed batch gives.

It reuses the session's server (`vllm_server` in conftest), so the only extra cost is the
restart; the server is left running for the tests after it.
"""

from __future__ import annotations

import threading
import time

import pytest

from cai.backends.base import ChoiceRequest, GenerationParams
from cai.backends.openai_server import OpenAIServerBackend

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_a_batch_survives_its_only_server_killed_and_restarted(vllm_server, capsys):
    url = vllm_server.base_url
    # the defaults an operator gets: 120 s per request, 5 retries, 600 s outage deadline
    backend = OpenAIServerBackend([url], "tiny", max_concurrency=2, show_progress=False)
    convs = [[{"role": "user", "content": f"Write about item {i}."}] for i in range(24)]
    params = GenerationParams(n=2, temperature=1.0, max_tokens=48, seed=9)
    judge = [
        ChoiceRequest(
            messages=[{"role": "user", "content": f"Is {i} odd? (A) yes (B) no"}],
            assistant_prefix="Answer: (",
        )
        for i in range(4)
    ]
    result: dict = {}
    try:
        started = time.monotonic()
        undisturbed = backend.generate_chat(convs, params)
        batch_s = time.monotonic() - started
        scores = backend.score_choices(judge)
        served = backend.pool.endpoints()[0]["served"]

        def run_batch() -> None:
            try:
                result["generations"] = backend.generate_chat(convs, params)
            except Exception as err:  # reported by the assertions below
                result["error"] = err

        worker = threading.Thread(target=run_batch)
        worker.start()
        deadline = time.monotonic() + batch_s + 60
        while backend.pool.endpoints()[0]["served"] < served + 4:
            assert worker.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        assert worker.is_alive(), "the batch finished before the server could be killed"

        vllm_server.kill()
        killed = time.monotonic()
        time.sleep(2.0)
        assert worker.is_alive() and "error" not in result, result.get("error")
        vllm_server.start()  # same port
        restarted_s = time.monotonic() - killed
        worker.join(timeout=300)
        finished_s = time.monotonic() - killed
        assert not worker.is_alive()
        assert "error" not in result, result.get("error")
        # seeded requests resent to the restarted server give what the undisturbed batch gave
        assert result["generations"] == undisturbed
        assert backend.pool.outages == 1 and backend.pool.retries > 0
        again = backend.score_choices(judge)
        for before, after in zip(scores, again, strict=True):
            assert after.logprobs == pytest.approx(before.logprobs, abs=1e-5)

        err = capsys.readouterr().err
        assert f"{url} stopped answering" in err and "giving up in 600 s" in err
        assert f"{url} answers again after" in err and "continuing" in err
        # one line when it goes away, one every 30 s while it is away, one when it is back
        assert err.count(url) <= restarted_s / 30 + 3
        print(
            f"\nundisturbed batch {batch_s:.1f} s; restart took {restarted_s:.1f} s; "
            f"batch done {finished_s:.1f} s after the kill; stderr:\n{err}"
        )
    finally:
        backend.close()
        if vllm_server.process is None or vllm_server.process.poll() is not None:
            vllm_server.start()  # leave the session's server running for later tests
