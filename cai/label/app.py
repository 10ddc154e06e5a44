"""The labelling web app (FastAPI): one page per rater, a small JSON API, an admin page.

Routes (TOKEN is a rater's or the admin's random token):

- `GET /r/TOKEN`: the rater's page; sets a session cookie and embeds a CSRF token for it.
- `GET /r/TOKEN/api/queue`: the pair to show and the next one (prefetched), and progress.
- `POST /r/TOKEN/api/answer`: `{"item_id", "choice": left|right|tie|both_bad|skip, "reason",
  "seconds"}`; committed to SQLite before the reply, which carries the next pairs.
- `POST /r/TOKEN/api/undo`: undo the rater's last answer; the pair comes back first.
- `GET /admin/TOKEN` and `/admin/TOKEN/stats.json`: progress, agreement, position bias.
- `GET /static/...`: the page's own CSS and JS (no CDN; the page works offline).

Every POST needs a JSON body, the CSRF token in `X-CSRF-Token` (an HMAC of the rater and the
session cookie under a secret kept in the database, so it survives restarts), and, when the
browser sends them, an `Origin` naming this server and a same-origin `Sec-Fetch-Site`.
Responses carry a strict Content-Security-Policy (scripts and styles from this server only,
no inline script), so even a rendering mistake could not run code from the data; every text
from the data is escaped by `cai.label.markdown` anyway. The AI's label never leaves the
server unless the app was made with `show_ai=True`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from cai.backends.base import Message
from cai.label.markdown import render_markdown
from cai.label.store import AnswerConflict, LabelStore, Pending

HERE = Path(__file__).resolve().parent
COOKIE = "cai_label_sid"
PREFETCH = 2
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def csrf_token(secret: str, rater_id: str, sid: str) -> str:
    return hmac.new(secret.encode(), f"{rater_id}\x00{sid}".encode(), hashlib.sha256).hexdigest()


def render_conversation(messages: list[Message]) -> str:
    parts = []
    for message in messages:
        role = message["role"]
        parts.append(
            f'<div class="turn turn-{html.escape(role)}">'
            f'<div class="role">{html.escape(ROLE_NAMES.get(role, role))}</div>'
            f'<div class="md">{render_markdown(message["content"])}</div></div>'
        )
    return "".join(parts)


def item_payload(pending: Pending, show_ai: bool) -> dict[str, Any]:
    """One pair as the rater sees it: left and right in their order, rendered safely."""
    item = pending.item
    a_left = pending.left_side == "a"
    left, right = (
        (item.response_a, item.response_b) if a_left else (item.response_b, item.response_a)
    )
    payload: dict[str, Any] = {
        "item_id": item.item_id,
        "conversation_html": render_conversation(item.prompt),
        "left_html": render_markdown(left),
        "right_html": render_markdown(right),
        "principle": item.principle,
    }
    if show_ai and item.ai_prob_a is not None:
        p_left = item.ai_prob_a if a_left else 1.0 - item.ai_prob_a
        payload["ai"] = {"p_left": round(p_left, 3)}
    return payload


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message, **extra}, status_code=status)


def create_app(store: LabelStore, *, show_ai: bool = False, open_access: bool = False) -> FastAPI:
    """The app over `store`. `open_access` (loopback only; the CLI enforces it) lists every
    rater's link and the admin link on `/`, so one person on one computer needs no tokens."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.server_ms = deque(maxlen=2000)
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    asset_version = _asset_version()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        response.headers.setdefault(
            "Server-Timing", f"app;dur={(time.perf_counter() - start) * 1000:.2f}"
        )
        return response

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        text = env.get_template(name).render(asset_version=asset_version, **context)
        return HTMLResponse(text, status_code=status)

    def not_found() -> HTMLResponse:
        return page(
            "message.html",
            404,
            title="Link not valid",
            message="This link is not valid. Ask the person running the labelling for your "
            "personal link.",
        )

    def snapshot(rater_id: str, n: int = PREFETCH, queue: list[Pending] | None = None):
        queue = store.queue(rater_id, n) if queue is None else queue
        return {
            "items": [item_payload(p, show_ai) for p in queue],
            "progress": store.progress(rater_id),
            "can_undo": store.can_undo(rater_id),
        }

    def check_post(request: Request, rater_id: str) -> JSONResponse | None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _error(415, "content_type", "Send the answer as JSON.")
        origin = request.headers.get("origin")
        host = (request.headers.get("host") or "").lower()
        if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host):
            return _error(403, "origin", "Cross-site request refused.")
        if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            return _error(403, "origin", "Cross-site request refused.")
        sid = request.cookies.get(COOKIE, "")
        sent = request.headers.get("x-csrf-token", "")
        expected = csrf_token(store.csrf_secret, rater_id, sid) if sid else ""
        if not sid or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            return _error(
                403, "csrf", "This page's session has expired or is not valid; reload the page."
            )
        return None

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        if not open_access:
            return page(
                "message.html",
                title="cai label",
                message="Open the personal link you were given to start labelling.",
            )
        return page(
            "index.html",
            raters=store.raters(),
            admin_token=store.admin_token,
        )

    @app.get("/r/{token}", response_class=HTMLResponse)
    def rater_page(token: str, request: Request) -> HTMLResponse:
        rater = store.rater_by_token(token)
        if rater is None:
            return not_found()
        sid = request.cookies.get(COOKIE, "")
        new_sid = not _SID.match(sid)
        if new_sid:
            sid = secrets.token_urlsafe(24)
        response = page(
            "rater.html",
            rater=rater.rater_id,
            api=f"/r/{token}/api",
            csrf=csrf_token(store.csrf_secret, rater.rater_id, sid),
            show_ai=show_ai,
        )
        if new_sid:
            response.set_cookie(
                COOKIE,
                sid,
                max_age=30 * 24 * 3600,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
                path="/",
            )
        return response

    @app.get("/r/{token}/api/queue")
    def queue(token: str) -> Response:
        rater = store.rater_by_token(token)
        if rater is None:
            return _error(404, "not_found", "This link is not valid.")
        return JSONResponse(snapshot(rater.rater_id))

    async def _json_body(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @app.post("/r/{token}/api/answer")
    async def answer(token: str, request: Request) -> Response:
        start = time.perf_counter()
        rater = await run_in_threadpool(store.rater_by_token, token)
        if rater is None:
            return _error(404, "not_found", "This link is not valid.")
        refused = check_post(request, rater.rater_id)
        if refused is not None:
            return refused
        body = await _json_body(request)
        if body is None or not isinstance(body.get("item_id"), str):
            return _error(400, "bad_request", "The answer needs an item_id and a choice.")
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            seconds = None
        reason = body.get("reason")
        reason = reason[:2000] if isinstance(reason, str) else None

        def commit() -> dict[str, Any]:
            saved = store.answer(
                rater.rater_id,
                body["item_id"],
                str(body.get("choice")),
                reason,
                seconds,
                refill=PREFETCH,
            )
            queue = saved.pop("queue")
            return {"saved": saved, **snapshot(rater.rater_id, queue=queue)}

        try:
            result = await run_in_threadpool(commit)
        except AnswerConflict as conflict:
            status = 400 if conflict.kind == "bad_choice" else 409
            current = await run_in_threadpool(snapshot, rater.rater_id)
            return _error(status, conflict.kind, conflict.message, **current)
        elapsed = (time.perf_counter() - start) * 1000
        app.state.server_ms.append(elapsed)
        return JSONResponse(result, headers={"Server-Timing": f"app;dur={elapsed:.2f}"})

    @app.post("/r/{token}/api/undo")
    async def undo(token: str, request: Request) -> Response:
        rater = await run_in_threadpool(store.rater_by_token, token)
        if rater is None:
            return _error(404, "not_found", "This link is not valid.")
        refused = check_post(request, rater.rater_id)
        if refused is not None:
            return refused

        def run() -> dict[str, Any]:
            undone = store.undo(rater.rater_id)
            queue = store.queue(rater.rater_id, PREFETCH)
            if undone is not None:  # the undone pair comes first, whatever its place
                back = [p for p in queue if p.item.item_id == undone["item_id"]]
                back = back or [store.pending(rater.rater_id, undone["item_id"])]
                rest = [p for p in queue if p.item.item_id != undone["item_id"]]
                queue = (back + rest)[:PREFETCH]
            return {"undone": undone, **snapshot(rater.rater_id, queue=queue)}

        return JSONResponse(await run_in_threadpool(run))

    def _admin_ok(token: str) -> bool:
        expected = store.admin_token
        return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())

    @app.get("/admin/{token}", response_class=HTMLResponse)
    def admin(token: str) -> HTMLResponse:
        if not _admin_ok(token):
            return not_found()
        from cai.label.stats import compute_stats

        stats = compute_stats(store, list(app.state.server_ms))
        return page("admin.html", stats=stats, show_ai=show_ai, fmt=_fmt)

    @app.get("/admin/{token}/stats.json")
    def admin_json(token: str) -> Response:
        if not _admin_ok(token):
            return _error(404, "not_found", "This link is not valid.")
        from cai.label.stats import compute_stats

        return JSONResponse(compute_stats(store, list(app.state.server_ms)))

    return app


def _fmt(value: Any, kind: str = "num") -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{value:.0%}"
    if kind == "sec":
        return f"{value:.1f} s"
    if kind == "ms":
        return f"{value:.1f} ms"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted((HERE / "static").iterdir()):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]
