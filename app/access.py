"""Who may call the service: an optional API key (ALEXNET_API_KEY) and browser origins (ALEXNET_CORS_ORIGINS).

With no key set, everything is open, as it always was. With a key, every path needs it except the health
probes (orchestrators and load balancers carry no secrets), the upload page at / (it asks for the key and
sends it), /docs and /openapi.json (so people can read
the API and paste the key into "Authorize"; the routes are no secret, the README lists them), and
/metrics unless ALEXNET_METRICS_REQUIRE_KEY. Anything not on that list, unknown paths included, needs the
key: a new route is closed until someone opens it here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.errors import Unauthorized, send_error
from app.routes import health, metrics, oip, page

logger = logging.getLogger(__name__)

REALM = 'Bearer realm="alexnet-service"'
MISSING = "this service needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
INVALID = "the API key is not valid"
DOCS_PREFIX = "/docs"  # the Swagger page, its OAuth redirect page and its static files (app/main.py)

# For /docs: its "Authorize" button offers both ways of sending the key; either one is enough.
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <ALEXNET_API_KEY>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "X-API-Key: <ALEXNET_API_KEY>"},
}
UNAUTHORIZED_RESPONSE = {
    "description": "no API key, or not the service's key",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}, "example": {"detail": MISSING}}
    },
}


def install_access_control(app: FastAPI, settings: Settings) -> Callable[[str], bool] | None:
    """The key check when a key is set, CORS when origins are; call after the error handlers, before metrics.
    Returns which paths are open when a key is set (for the OpenAPI schema, ``declare_security``), else None."""
    keyed: Callable[[str], bool] | None = None
    if settings.api_key is not None:
        open_paths = {route.path for route in health.router.routes}  # type: ignore[attr-defined]
        open_paths.add(page.PAGE_PATH)  # the page is public; it asks for the key and sends it to /predict
        open_paths |= {r.path for r in oip.router.routes if "/health/" in r.path}  # type: ignore[attr-defined]  # OIP probes
        if not settings.metrics_require_key:
            open_paths |= {route.path for route in metrics.router.routes}  # type: ignore[attr-defined]
        if app.openapi_url:
            open_paths.add(app.openapi_url)

        def is_open(path: str) -> bool:
            return path in open_paths or path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/")

        app.add_middleware(RequireApiKey, key=settings.api_key, is_open=is_open)
        keyed = is_open
        logger.info("API key required on every path but %s and %s/*", ", ".join(sorted(open_paths)), DOCS_PREFIX)
    if settings.cors_origins:
        # Added last, so it runs first: a browser's preflight carries no key and is answered here, and the
        # 401s the key check sends get CORS headers too, so the page's script can read them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Content-Disposition", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID"],  # Retry-After with 429, so a page can back off
            max_age=600,
        )
        logger.info("CORS allowed for %s", ", ".join(settings.cors_origins))
    return keyed


class RequireApiKey:
    """ASGI middleware: an HTTP request to a path that is not open gets 401 unless it carries the key."""

    def __init__(self, app: ASGIApp, key: SecretStr, is_open: Callable[[str], bool]) -> None:
        self.app = app
        # Only the key's hash is kept and compared: comparing fixed-size digests in constant time
        # (hmac.compare_digest) tells a guesser neither how much of the key matched nor its length.
        # (A SecretStr, not the str: Starlette keeps middleware arguments, and their repr, on the app.)
        self.digest = key_digest(key)
        self.is_open = is_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # scope["path"], not request.url: the URL is rebuilt from the Host header, which the client controls.
        if scope["type"] != "http" or self.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = presented_keys(scope["headers"])
        if valid_key(presented, self.digest):
            await self.app(scope, receive, send)
            return
        # The body is never read: a client without the key cannot make the service parse an upload.
        challenge = f'{REALM}, error="invalid_token"' if presented else REALM
        await send_error(send, Unauthorized(INVALID if presented else MISSING, challenge))


def key_digest(key: SecretStr) -> bytes:
    return hashlib.sha256(key.get_secret_value().encode()).digest()


def valid_key(presented: Iterable[bytes], digest: bytes) -> bool:
    """One of the presented keys is the key, compared by digest in constant time."""
    return any(hmac.compare_digest(hashlib.sha256(key).digest(), digest) for key in presented)


def presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """Every key the request offers: Authorization: Bearer <key> (scheme in any case) and X-API-Key: <key>."""
    keys = []
    for name, value in headers:  # ASGI header names are lower-case bytes
        if name == b"x-api-key":
            keys.append(value.strip())
        elif name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                keys.append(token.strip())
    return keys


def declare_security(schema: dict[str, Any], is_open: Callable[[str], bool]) -> None:
    """Mark the keyed operations in the OpenAPI schema, so /docs shows "Authorize" and sends the key."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in schema["paths"].items():
        if is_open(path):
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            operation["responses"].setdefault("401", UNAUTHORIZED_RESPONSE)
