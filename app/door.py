"""The door: a POST (or PUT) /predict the model cannot answer in time is refused before anything else runs,
and one it admits is answered from here, below the router.

Under overload most requests are refused, so a refusal must cost far less than a request: this ASGI
middleware answers the 429 (``Batcher.admit_arrival``, app/admission.py) before routing, dependencies and
the body, from a few dictionary lookups, leaving the event loop free to accept connections, answer
/health/live and feed the model. A request it lets in is checked again, exactly, when its images join
the queue. Once the model is ready an admitted /predict is answered by ``app.routes.predict.answer_asgi``
without going through the router and the framework's exception layers (the same answers; see there why).
Each request it answers is labelled with its route, as the router would, for app/metrics.py.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.deps import ServiceState
from app.errors import ServiceError, send_error
from app.metrics import ROUTE_LABEL
from app.routes.oip import infer_path, is_infer_path, send_oip_error
from app.routes.predict import PREDICT_METHODS, PREDICT_PATH, answer_asgi


class ShedAtTheDoor:
    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batcher = self.state.batcher
        if batcher is None or scope["type"] != "http":  # before the model is ready the routes answer (503)
            await self.app(scope, receive, send)
            return
        predict = scope["path"] == PREDICT_PATH and scope["method"] in PREDICT_METHODS
        oip = not predict and scope["method"] == "POST" and is_infer_path(scope["path"])  # OIP's own error body
        if not (predict or oip):
            await self.app(scope, receive, send)
            return
        try:
            batcher.admit_arrival(self.state.settings.request_timeout_s)
        except ServiceError as exc:
            scope[ROUTE_LABEL] = PREDICT_PATH if predict else infer_path(versioned="/versions/" in scope["path"])
            await (send_error if predict else send_oip_error)(send, exc)
            return
        if predict:
            scope[ROUTE_LABEL] = PREDICT_PATH
            await answer_asgi(scope, receive, send, self.state)
        else:
            await self.app(scope, receive, send)
