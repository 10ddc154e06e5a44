"""The reward service over HTTP (aiohttp): routes, one-line JSON errors, and how it runs.

Routes: POST /v1/score, /v1/compare, /v1/rank, /get_reward (OpenRLHF); GET /health and
/metrics (open, for probes and scrapers, even when the POST routes need a bearer token).
Every refusal or failure is answered as `{"error": "one line"}` with a 4xx (the request was
wrong or over a limit: do not retry as is) or a 5xx (the judge failed: retry later).

`serve_forever` runs it until SIGINT/SIGTERM (`cai reward serve`); `ServiceThread` runs it
in a background thread on 127.0.0.1 (tests, benchmarks, notebooks).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from cai.errors import BackendError
from cai.reward.service import Refusal, RewardService

ROUTES = {"/v1/score": "score", "/v1/compare": "compare", "/v1/rank": "rank"}


def build_app(service: RewardService):
    """The aiohttp application serving `service`."""
    from aiohttp import web

    @web.middleware
    async def errors(request: web.Request, handler):
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except Refusal as err:
            status = err.status
            headers = {"Retry-After": f"{err.retry_after:.3f}"} if err.retry_after else None
            return _error(status, err.message, headers)
        except web.HTTPException as err:  # unknown route, wrong method, body over the limit
            status = err.status
            return _error(status, _http_reason(err, service))
        except BackendError as err:  # the judge's engine failed: the client may retry
            status = 503
            return _error(503, f"the judge backend failed: {_line(err)}", {"Retry-After": "1"})
        except Exception as err:  # a bug: one line to the client, the traceback in the log
            status = 500
            request.app.logger.exception("reward service error")
            return _error(500, f"internal error: {type(err).__name__}: {_line(err)}")
        finally:
            service.metrics.request(_endpoint(request), status, time.monotonic() - started)

    async def judged(request: web.Request) -> web.Response:
        service.admit(request.headers.get("Authorization"), request.remote)
        body = await _json(request)
        if request.path == "/get_reward":
            return web.json_response(await service.get_reward(body))
        return web.json_response(await service.answer(ROUTES[request.path], body))

    async def health(request: web.Request) -> web.Response:
        return web.json_response(service.health())

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=service.metrics_text(), content_type="text/plain")

    async def started(app: web.Application) -> None:
        await service.start()

    async def stopped(app: web.Application) -> None:
        await service.stop()

    app = web.Application(middlewares=[errors], client_max_size=service.limits.max_body_bytes)
    for path in [*ROUTES, "/get_reward"]:
        app.router.add_post(path, judged)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(started)
    app.on_cleanup.append(stopped)
    return app


async def _json(request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise Refusal(400, f"the body is not JSON: {_line(err)}") from err


def _error(status: int, message: str, headers: dict[str, str] | None = None):
    from aiohttp import web

    return web.json_response({"error": message}, status=status, headers=headers)


def _http_reason(err, service: RewardService) -> str:
    if err.status == 413:
        return (
            f"the request body is over the limit of {service.limits.max_body_bytes} bytes; "
            "send smaller requests"
        )
    if err.status == 404:
        return "no such route; POST /v1/score, /v1/compare, /v1/rank or /get_reward"
    return _line(err.reason or err)


def _endpoint(request) -> str:
    path = request.path
    return path if path in (*ROUTES, "/get_reward", "/health", "/metrics") else "other"


def _line(value: Any) -> str:
    return " ".join(str(value).split())[:300]


# ---- running it ---------------------------------------------------------------------------------
async def _start(service: RewardService, host: str, port: int):
    from aiohttp import web

    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, bound


def serve_forever(
    service: RewardService,
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop the batcher and close the judge."""

    async def main() -> None:
        runner, bound = await _start(service, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(f"http://{host}:{bound}")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        service.close()


class ServiceThread:
    """The service on `host` in a daemon thread: `with ServiceThread(service) as s: s.url`."""

    def __init__(self, service: RewardService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="cai-reward")
        self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServiceThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, self.port = self._loop.run_until_complete(
                _start(self.service, self.host, self.port)
            )
        except BaseException as err:  # reported to the caller of __enter__
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
