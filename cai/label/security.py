"""What keeps the labelling page safe: response headers, session cookies and CSRF checks.

Every POST needs a JSON body, the CSRF token in `X-CSRF-Token` (an HMAC of the rater and the
session cookie under a secret kept in the database, so it survives restarts), and, when the
browser sends them, an `Origin` naming this server and a same-origin `Sec-Fetch-Site`.
Responses carry a strict Content-Security-Policy (scripts and styles from this server only,
no inline script), so even a rendering mistake could not run code from the data.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

COOKIE = "cai_label_sid"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def csrf_token(secret: str, rater_id: str, sid: str) -> str:
    return hmac.new(secret.encode(), f"{rater_id}\x00{sid}".encode(), hashlib.sha256).hexdigest()


def error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    """The JSON error every API route answers with: a machine kind and a sentence for people."""
    return JSONResponse({"error": kind, "message": message, **extra}, status_code=status)


def add_security_headers(app: FastAPI) -> None:
    """Every response: the CSP, no sniffing, no referrer, no framing, no caching of pages."""

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


def session_id(request: Request) -> tuple[str, bool]:
    """The browser's session id, or a new one (and True) when it sent none that is valid."""
    sid = request.cookies.get(COOKIE, "")
    if _SID.match(sid):
        return sid, False
    return secrets.token_urlsafe(24), True


def set_session_cookie(response: Response, request: Request, sid: str) -> None:
    response.set_cookie(
        COOKIE,
        sid,
        max_age=30 * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def refuse_post(request: Request, secret: str, rater_id: str) -> JSONResponse | None:
    """Why a POST is refused (wrong content type, cross-site, bad CSRF token), or None."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return error(415, "content_type", "Send the answer as JSON.")
    origin = request.headers.get("origin")
    host = (request.headers.get("host") or "").lower()
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host):
        return error(403, "origin", "Cross-site request refused.")
    if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        return error(403, "origin", "Cross-site request refused.")
    sid = request.cookies.get(COOKIE, "")
    sent = request.headers.get("x-csrf-token", "")
    expected = csrf_token(secret, rater_id, sid) if sid else ""
    if not sid or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        return error(
            403, "csrf", "This page's session has expired or is not valid; reload the page."
        )
    return None


def same_secret(sent: str, expected: str) -> bool:
    """Constant-time comparison of a token in a URL with the one expected (never empty)."""
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())
