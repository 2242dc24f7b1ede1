"""The door: a POST (or PUT) /predict or an OIP inference the model cannot answer in time is refused before
anything else runs.

Under overload most requests are refused, so a refusal must cost far less than a request: this ASGI
middleware answers the 429 (``Batcher.admit_arrival``, app/admission.py) before routing, dependencies and
the body, from a few dictionary lookups, leaving the event loop free to accept connections, answer
/health/live and feed the model. A request it lets in goes on to its route and is checked again, exactly,
when its images join the queue. Each request it refuses is labelled with its route, as the router would, for
app/metrics.py, and answered in its protocol's error body. With ``ALEXNET_HOLD_AFTER_429`` (on by default)
the connection is then left unread until the ``Retry-After`` has passed (app/early_answers.py): a client that
retries at once cannot make the service spend its cores refusing. Not a proxy's connection (a request with
``X-Forwarded-For`` or ``Forwarded``): other clients' requests come next on it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.deps import ServiceState
from app.early_answers import HOLD_READING_S
from app.errors import ServiceError, send_error
from app.metrics import ROUTE_LABEL
from app.routes.oip import infer_path, is_infer_path
from app.routes.predict import PREDICT_METHODS, PREDICT_PATH


class ShedAtTheDoor:
    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batcher = self.state.batcher
        if batcher is not None and scope["type"] == "http":  # before the model is ready the routes answer (503)
            predict = scope["path"] == PREDICT_PATH and scope["method"] in PREDICT_METHODS
            if predict or (scope["method"] == "POST" and is_infer_path(scope["path"])):
                try:
                    batcher.admit_arrival(self.state.settings.request_timeout_s)
                except ServiceError as exc:
                    versioned = "/versions/" in scope["path"]
                    scope[ROUTE_LABEL] = PREDICT_PATH if predict else infer_path(versioned)
                    if self.state.settings.hold_after_429 and not _through_a_proxy(scope):
                        scope[HOLD_READING_S] = int((exc.headers or {}).get("Retry-After", 1))
                    await send_error(send, exc, "detail" if predict else "error")  # OIP's own error body
                    return
        await self.app(scope, receive, send)


def _through_a_proxy(scope: Scope) -> bool:
    """A proxy's connection carries other clients' requests next: it is not held (the proxy limits its clients)."""
    return any(name in (b"x-forwarded-for", b"forwarded") for name, _ in scope["headers"])
