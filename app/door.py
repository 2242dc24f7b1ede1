"""Shedding at the door: a POST (or PUT) /predict the model cannot answer in time is refused before anything else runs.

Under overload most requests are refused, so a refusal must cost far less than a request: this ASGI
middleware answers the 429 (``Batcher.admit_arrival``, app/admission.py) before routing, dependencies and
the body, from a few dictionary lookups, leaving the event loop free to accept connections, answer
/health/live and feed the model. A request it lets in is checked again, exactly, when its images join
the queue.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.deps import ServiceState
from app.errors import ServiceError, send_error
from app.routes.oip import is_infer_path, send_oip_error
from app.routes.predict import PREDICT_METHODS, PREDICT_PATH


class ShedAtTheDoor:
    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batcher = self.state.batcher
        if batcher is not None and scope["type"] == "http":
            predict = scope["path"] == PREDICT_PATH and scope["method"] in PREDICT_METHODS
            oip = scope["method"] == "POST" and is_infer_path(scope["path"])  # OIP's infer: its own error body
            if predict or oip:
                try:
                    batcher.admit_arrival(self.state.settings.request_timeout_s)
                except ServiceError as exc:
                    await (send_oip_error if oip else send_error)(send, exc)
                    return
        await self.app(scope, receive, send)
