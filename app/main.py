"""The FastAPI app: ``create_app(settings)``, and ``factory`` for ``uvicorn --factory app.main:factory``.

The service is started by ``alexnet-serve`` (``app.cli``): the container, compose, ``make serve``, the
load-balancer check and the benchmarks all run that. ``factory`` keeps plain uvicorn usable (settings from
ALEXNET_*); see docs/serving.md for the one difference on shutdown.

Lifespan: the checkpoint is read, checked and placed on the device before the server accepts connections
(a missing or broken file stops start-up with one log line naming it); then the server opens, answering
/health with 503 while warm-up passes run at the batch sizes the batcher will use, and 200 once ready.
On shutdown the server stops accepting, in-flight requests finish, then the batcher drains and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from time import perf_counter
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access import install_access_control
from app.batcher import Batcher
from app.config import Settings
from app.deps import ServiceState
from app.door import ShedAtTheDoor
from app.errors import install_error_handlers
from app.logs import configure_logging, configure_uvicorn_logging
from app.metrics import Metrics, RequestMetrics
from app.model_loader import ModelLoader
from app.model_threads import ModelThreads, plan_threads
from app.openapi import install_openapi
from app.predictor import Predictor, warmup_sizes
from app.request_log import RequestLog
from app.routes import health, metrics, model, oip, page, predict, repository
from models import CheckpointError, DeviceError

if TYPE_CHECKING:
    from app.grpc_server import GrpcService

logger = logging.getLogger(__name__)

DESCRIPTION = """Classifies images into the 10 CIFAR-10 classes with AlexNet.

Send one or more images to **POST /predict** as multipart/form-data in the field `file`
(JPEG, PNG, WebP, BMP, GIF, TIFF; any size and mode), or one image as the whole body with
`Content-Type: image/*` or `application/octet-stream` (PUT /predict is the same, for `curl -T`).
Each is reduced to 32x32 exactly as in training, then the batch is upsampled and normalized once, on the
model's device. Concurrent requests share forward passes. Errors are JSON `{"detail": ...}` naming the
offending file. Every answer carries an `X-Request-ID` header: the client's own when it sent a valid one
(1 to 128 visible ASCII characters), else a new one; the service's log lines about the request carry it too.
"""


class StartupError(Exception):
    """Start-up cannot go on; the message is the one line that says why."""


def factory() -> FastAPI:
    """For ``uvicorn --factory app.main:factory``: settings from ALEXNET_*, log lines as alexnet-serve's."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    configure_uvicorn_logging(settings.log_format)  # uvicorn configured its loggers already: as alexnet-serve's
    return create_app(settings)


def create_app(settings: Settings) -> FastAPI:
    """The service, configured by ``settings``; the model is loaded by its lifespan, not here."""
    app = FastAPIOffline(
        title="alexnet-service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        static_url="/docs/static",  # swagger-ui's JS and CSS, served from the installed fastapi-offline package
        swagger_ui_parameters={"tryItOutEnabled": True, "defaultModelsExpandDepth": 0},
    )
    state = app.state.service = ServiceState(settings=settings, metrics=Metrics())
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(model.router)
    app.include_router(oip.router)  # Open Inference Protocol v2 (docs/oip.md)
    app.include_router(repository.router)  # its model repository extension: a new checkpoint while serving
    app.include_router(page.router)
    # The innermost two: /predict answered below the router by its one endpoint; before it (after the key check),
    # the door refuses what cannot be answered in time (app/door.py)
    app.add_middleware(predict.PredictLane, state=state)
    app.add_middleware(ShedAtTheDoor, state=state)
    install_error_handlers(app)
    keyed = install_access_control(app, settings)  # inside RequestMetrics, so 401s are counted too
    install_openapi(app, state, keyed)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    app.add_middleware(QuietStartupFailure)
    app.add_middleware(RequestLog)  # the outermost: every answer, the door's 429 and the 401 too, gets its ID and line
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    settings = state.settings
    state.predictor = predictor = _load(settings, state.metrics)
    # Before the pools and the batcher: a port it cannot have stops start-up with nothing else to undo. Until the
    # model is warmed up, its inference calls answer UNAVAILABLE, as REST's 503.
    grpc_server = await _start_grpc(app, settings) if settings.grpc_port else None
    plan = plan_threads(settings, predictor.device)
    model_pool = ModelThreads(plan)
    state.decode_pool = ThreadPoolExecutor(settings.decode_threads, "alexnet-decode")
    largest = plan.pass_size if settings.batching else settings.max_files
    state.batcher = Batcher(
        predictor.outputs,
        model_pool,
        max_batch_size=largest,
        max_wait_s=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
        batching=settings.batching,
        workers=plan.workers,
        metrics=state.metrics,
    )
    state.batcher.start()
    state.set_status("warming_up", "warming up")
    logger.info(
        "%d model thread(s), %s torch thread(s) each (%s alone)",
        plan.workers,
        plan.threads or "default",
        plan.lone_threads or "default",
    )
    warm_up = asyncio.create_task(_warm_up(state, model_pool, warmup_sizes(largest)))
    app.state.loader = loader = ModelLoader(state, model_pool, warmup_sizes(largest))
    state.metrics.model_version.set(1)
    stop_watching = watch_for_new_checkpoints(loader, settings.checkpoint_poll_s)
    try:
        yield
    finally:
        state.set_status("stopping", "shutting down")
        stop_watching()
        if grpc_server is not None:
            await grpc_server.stop(settings.request_timeout_s)  # refuses new calls; those under way finish
        await warm_up
        await state.batcher.stop()  # in-flight requests are done by now; this finishes anything left queued
        model_pool.shutdown()
        state.decode_pool.shutdown()
        logger.info("stopped")


async def _start_grpc(app: FastAPI, settings: Settings) -> GrpcService:
    try:  # imported only when asked for: grpcio, protobuf and the generated code are the gRPC extra's
        from app.grpc_server import start_grpc

        return await start_grpc(app, settings)
    except ImportError as exc:
        reason = f"ALEXNET_GRPC_PORT needs the gRPC extra (pip install 'alexnet-service[grpc]'): {exc}"
    except RuntimeError as exc:  # grpc could not listen there
        reason = str(exc)
    logger.error("cannot start: %s", reason)
    raise StartupError(reason)


def watch_for_new_checkpoints(loader: ModelLoader, poll_s: float) -> Callable[[], None]:
    """SIGHUP (in the main thread, where signals arrive) and, with ``poll_s``, the poll: each loads the
    configured checkpoint again while serving. Returns what stops both."""
    loop = asyncio.get_running_loop()
    on_hup = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP")
    if on_hup:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(loader.reload("SIGHUP")))
    polling = loop.create_task(loader.poll(poll_s)) if poll_s > 0 else None

    def stop() -> None:
        if on_hup:
            loop.remove_signal_handler(signal.SIGHUP)
        if polling is not None:
            polling.cancel()

    return stop


def _load(settings: Settings, metrics: Metrics) -> Predictor:
    start = perf_counter()
    try:
        predictor = Predictor.load(settings.checkpoint, settings.device, settings.precision, settings.ood_threshold)
    except (CheckpointError, DeviceError, RuntimeError) as exc:  # RuntimeError: CUDA failing to start
        logger.error("cannot start: %s", exc)
        raise StartupError(str(exc)) from None
    seconds = perf_counter() - start
    metrics.model_load_seconds.set(seconds)
    logger.info(
        "loaded %s (weights sha256 %s, temperature %.3f) on %s in %.2f s",
        settings.checkpoint,
        predictor.info.weights_sha256[:12],
        predictor.info.temperature,
        predictor.device,
        seconds,
    )
    return predictor


async def _warm_up(state: ServiceState, pool: ModelThreads, sizes: list[int]) -> None:
    """Warm-up passes in every model thread, then report ready (or failed, with the reason)."""
    predictor = state.predictor
    assert predictor is not None
    try:
        seconds = await pool.on_every_thread(predictor.warm_up, sizes)
    except Exception as exc:
        logger.exception("warm-up failed; the service stays not ready")
        state.set_status("failed", f"warm-up failed: {exc}")
        return
    state.metrics.warmup_seconds.set(max(seconds))
    if state.status == "warming_up":
        state.set_status("ready")
        batching = "on" if state.settings.batching else "off"
        logger.info("ready: warmed up at batch sizes %s in %.2f s; batching %s", sizes, max(seconds), batching)


class QuietStartupFailure:
    """Lifespan only: report a StartupError to the server as its one line, not a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_short(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}  # the reason was logged once, by _load
            await send(message)

        with contextlib.suppress(StartupError):  # already reported to the server as lifespan.startup.failed
            await self.app(scope, receive, send_short)
