"""/openapi.json: FastAPI's schema of its own routes, and what FastAPI cannot see there.

/predict is an ASGI endpoint (app/routes/predict.py), which FastAPI does not document: its operations and the
schemas they refer to are added here, recomputed on every call so that they state the loaded model's limits.
With an API key, the keyed operations are marked (app/access.py). One override of ``app.openapi``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from app.access import declare_security
from app.deps import ServiceState
from app.routes import predict


def install_openapi(app: FastAPI, state: ServiceState, keyed: Callable[[str], bool] | None) -> None:
    """``keyed``: which paths are open when an API key is set (``install_access_control``), else None."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI's cached dict, changed in place, to the same values for the same state
        schema["paths"] = {predict.PREDICT_PATH: predict.path_item(state), **schema["paths"]}
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in predict.components().items():
            schemas.setdefault(name, definition)
        if keyed is not None:
            declare_security(schema, keyed)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
