"""The labelling web app (FastAPI): one page per rater, a small JSON API, an admin page.

Routes (TOKEN is a rater's or the admin's random token):

- `GET /r/TOKEN`: the rater's page; sets a session cookie and embeds a CSRF token for it.
- `GET /r/TOKEN/api/queue`: the pair to show and the next one (prefetched), and progress.
- `POST /r/TOKEN/api/answer`: `{"item_id", "choice": left|right|tie|both_bad|skip, "reason",
  "seconds"}`; committed to SQLite before the reply, which carries the next pairs.
- `POST /r/TOKEN/api/undo`: undo the rater's last answer; the pair comes back first.
- `GET /admin/TOKEN` and `/admin/TOKEN/stats.json`: progress, agreement, position bias.
- `GET /static/...`: the page's own CSS and JS (no CDN; the page works offline).

Every POST is checked for JSON, origin and CSRF token, and every response carries a strict
Content-Security-Policy (`cai.label.security`); every text from the data is escaped by
`cai.label.markdown` anyway. The AI's label never leaves the server unless the app was made
with `show_ai=True`.
"""

from __future__ import annotations

import hashlib
import html
import time
from collections import deque
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from cai.backends.base import Message
from cai.label.markdown import render_markdown
from cai.label.security import (
    add_security_headers,
    csrf_token,
    error,
    refuse_post,
    same_secret,
    session_id,
    set_session_cookie,
)
from cai.label.stats import compute_stats
from cai.label.store import AnswerConflict, LabelStore, Pending

HERE = Path(__file__).resolve().parent
PREFETCH = 2
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


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


class _Site:
    """What the routes share: the store, the page templates, and whether the AI's label shows."""

    def __init__(self, store: LabelStore, show_ai: bool) -> None:
        self.store = store
        self.show_ai = show_ai
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.asset_version = _asset_version()

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        text = self.env.get_template(name).render(asset_version=self.asset_version, **context)
        return HTMLResponse(text, status_code=status)

    def not_found(self) -> HTMLResponse:
        return self.page(
            "message.html",
            404,
            title="Link not valid",
            message="This link is not valid. Ask the person running the labelling for your "
            "personal link.",
        )

    def snapshot(
        self, rater_id: str, n: int = PREFETCH, queue: list[Pending] | None = None
    ) -> dict[str, Any]:
        """The pairs to show next, the rater's progress, and whether undo is possible."""
        queue = self.store.queue(rater_id, n) if queue is None else queue
        return {
            "items": [item_payload(p, self.show_ai) for p in queue],
            "progress": self.store.progress(rater_id),
            "can_undo": self.store.can_undo(rater_id),
        }

    async def poster(self, token: str, request: Request) -> tuple[str | None, Response | None]:
        """(rater id, None) for an acceptable POST under `token`; (None, the refusal) if not."""
        rater = await run_in_threadpool(self.store.rater_by_token, token)
        if rater is None:
            return None, error(404, "not_found", "This link is not valid.")
        refused = refuse_post(request, self.store.csrf_secret, rater.rater_id)
        return (None, refused) if refused is not None else (rater.rater_id, None)


def create_app(store: LabelStore, *, show_ai: bool = False, open_access: bool = False) -> FastAPI:
    """The app over `store`. `open_access` (loopback only; the CLI enforces it) lists every
    rater's link and the admin link on `/`, so one person on one computer needs no tokens."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.server_ms = deque(maxlen=2000)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    add_security_headers(app)
    site = _Site(store, show_ai)
    _add_pages(app, site, open_access)
    _add_answer_api(app, site)
    _add_admin(app, site)
    return app


def _add_pages(app: FastAPI, site: _Site, open_access: bool) -> None:
    """The health check, the front page, and each rater's page (which starts a session)."""
    store = site.store

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        if not open_access:
            return site.page(
                "message.html",
                title="cai label",
                message="Open the personal link you were given to start labelling.",
            )
        return site.page("index.html", raters=store.raters(), admin_token=store.admin_token)

    @app.get("/r/{token}", response_class=HTMLResponse)
    def rater_page(token: str, request: Request) -> HTMLResponse:
        rater = store.rater_by_token(token)
        if rater is None:
            return site.not_found()
        sid, new_sid = session_id(request)
        response = site.page(
            "rater.html",
            rater=rater.rater_id,
            api=f"/r/{token}/api",
            csrf=csrf_token(store.csrf_secret, rater.rater_id, sid),
            show_ai=site.show_ai,
        )
        if new_sid:
            set_session_cookie(response, request, sid)
        return response


def _add_answer_api(app: FastAPI, site: _Site) -> None:
    """The rater's JSON API: the queue, an answer, and undoing the last answer."""
    store = site.store

    @app.get("/r/{token}/api/queue")
    def queue(token: str) -> Response:
        rater = store.rater_by_token(token)
        if rater is None:
            return error(404, "not_found", "This link is not valid.")
        return JSONResponse(site.snapshot(rater.rater_id))

    @app.post("/r/{token}/api/answer")
    async def answer(token: str, request: Request) -> Response:
        start = time.perf_counter()
        rater_id, refused = await site.poster(token, request)
        if rater_id is None:
            return refused
        fields = _answer_fields(await _json_body(request))
        if fields is None:
            return error(400, "bad_request", "The answer needs an item_id and a choice.")

        def commit() -> dict[str, Any]:
            saved = store.answer(rater_id, *fields, refill=PREFETCH)
            return {"saved": saved, **site.snapshot(rater_id, queue=saved.pop("queue"))}

        try:
            result = await run_in_threadpool(commit)
        except AnswerConflict as conflict:
            status = 400 if conflict.kind == "bad_choice" else 409
            current = await run_in_threadpool(site.snapshot, rater_id)
            return error(status, conflict.kind, conflict.message, **current)
        elapsed = (time.perf_counter() - start) * 1000
        app.state.server_ms.append(elapsed)
        return JSONResponse(result, headers={"Server-Timing": f"app;dur={elapsed:.2f}"})

    @app.post("/r/{token}/api/undo")
    async def undo(token: str, request: Request) -> Response:
        rater_id, refused = await site.poster(token, request)
        if rater_id is None:
            return refused
        return JSONResponse(await run_in_threadpool(_undo, site, rater_id))


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _answer_fields(body: dict[str, Any] | None) -> tuple[str, str, str | None, Any] | None:
    """(item id, choice, reason, seconds) from an answer's body; None without an item id.

    A reason is cut to 2,000 characters; seconds that are not a number are dropped.
    """
    if body is None or not isinstance(body.get("item_id"), str):
        return None
    seconds = body.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        seconds = None
    reason = body.get("reason")
    reason = reason[:2000] if isinstance(reason, str) else None
    return body["item_id"], str(body.get("choice")), reason, seconds


def _undo(site: _Site, rater_id: str) -> dict[str, Any]:
    """Undo the rater's last answer; the undone pair comes first, whatever its place."""
    store = site.store
    undone = store.undo(rater_id)
    queue = store.queue(rater_id, PREFETCH)
    if undone is not None:
        back = [p for p in queue if p.item.item_id == undone["item_id"]]
        back = back or [store.pending(rater_id, undone["item_id"])]
        rest = [p for p in queue if p.item.item_id != undone["item_id"]]
        queue = (back + rest)[:PREFETCH]
    return {"undone": undone, **site.snapshot(rater_id, queue=queue)}


def _add_admin(app: FastAPI, site: _Site) -> None:
    """The admin page and its statistics as JSON, behind the admin token."""
    store = site.store

    @app.get("/admin/{token}", response_class=HTMLResponse)
    def admin(token: str) -> HTMLResponse:
        if not same_secret(token, store.admin_token):
            return site.not_found()
        stats = compute_stats(store, list(app.state.server_ms))
        return site.page("admin.html", stats=stats, show_ai=site.show_ai, fmt=_fmt)

    @app.get("/admin/{token}/stats.json")
    def admin_json(token: str) -> Response:
        if not same_secret(token, store.admin_token):
            return error(404, "not_found", "This link is not valid.")
        return JSONResponse(compute_stats(store, list(app.state.server_ms)))


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
