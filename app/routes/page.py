"""GET / (and HEAD /): the one-file upload page in app/static/index.html, with a per-response CSP nonce."""

from __future__ import annotations

import secrets
from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

PAGE_PATH = "/"
NONCE_MARK = "__NONCE__"


@cache
def _template() -> str:
    # Read once from the installed package (pyproject.toml's package-data ships it in the wheel and the image)
    return (files("app") / "static" / "index.html").read_text(encoding="utf-8")


def content_security_policy(nonce: str) -> str:
    """Nothing but this page's own nonce-marked script and style, its blob: thumbnails and calls to this origin.

    A nonce, not 'unsafe-inline': an injected <script> (none can be, the page builds its DOM with textContent,
    but defence in depth) would not carry the nonce and would not run. A fresh nonce per response, so it
    cannot be learned from one answer and reused.
    """
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@router.api_route(PAGE_PATH, methods=["GET", "HEAD"], include_in_schema=False, response_class=HTMLResponse)
async def page() -> HTMLResponse:
    """The upload page; uvicorn leaves the body out for HEAD."""
    nonce = secrets.token_urlsafe(16)
    headers = {
        "Content-Security-Policy": content_security_policy(nonce),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",  # the nonce changes per response: a cached copy would carry a stale one
    }
    return HTMLResponse(_template().replace(NONCE_MARK, nonce), headers=headers)
