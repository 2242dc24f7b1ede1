"""Prometheus metrics, one registry per app instance (two apps in one process, as in tests, never collide)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from app.asgi import ResponseWatch

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)  # seconds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # images per forward pass


class Metrics:
    """Every metric the service exports; ``registry`` is what /metrics renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "alexnet_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "alexnet_request_latency_seconds",
            "time to answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "alexnet_queue_wait_seconds", "time a request waited for the model", buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "alexnet_batch_size_images", "images per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.forward_seconds = Histogram(
            "alexnet_forward_seconds", "time of one forward pass", buckets=LATENCY_BUCKETS, registry=r
        )
        self.forward_passes = Counter("alexnet_forward_passes", "forward passes run (warm-up excluded)", registry=r)
        self.images = Counter("alexnet_images_classified", "images classified", registry=r)
        self.queue_depth = Gauge("alexnet_queue_depth_images", "images waiting for the model", registry=r)
        self.shed = Counter("alexnet_shed_requests", "requests refused with 429 because of load", registry=r)
        self.expected_wait = Gauge(
            "alexnet_expected_wait_seconds", "the last admission estimate of a request's wait for the model", registry=r
        )
        self.model_load_seconds = Gauge(
            "alexnet_model_load_seconds", "time to read the checkpoint and place it on the device", registry=r
        )
        self.warmup_seconds = Gauge("alexnet_warmup_seconds", "time of the warm-up passes", registry=r)
        self.ready = Gauge("alexnet_ready", "1 when the model is loaded and warmed up", registry=r)
        self.model_loads = Counter(
            "alexnet_model_loads",
            "checkpoints loaded while serving: loaded or refused",
            ["result"],
            registry=r,
        )
        self.model_version = Gauge("alexnet_model_version", "the version of the model serving (1 at start)", registry=r)
        self.grpc_requests = Counter(
            "alexnet_grpc_requests", "gRPC calls answered, by method and status code", ["method", "code"], registry=r
        )
        self.grpc_latency = Histogram(
            "alexnet_grpc_request_latency_seconds",
            "time to answer a gRPC call, by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )


ROUTE_LABEL = "alexnet.route"  # scope key: the route template of a request answered before routing (app/door.py)


class RequestMetrics:
    """ASGI middleware: count each HTTP request by route template and status, and time it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        watch = ResponseWatch.of(send)
        try:
            await self.app(scope, receive, watch)
        finally:
            # The route template, not the raw path: a scan of random URLs must not grow the label set.
            route = scope.get(ROUTE_LABEL) or getattr(scope.get("route"), "path", None) or _mount_label(scope)
            status = watch.status or 500  # what the client gets if the app raised before answering
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


def _mount_label(scope: Scope) -> str:
    """A mount's prefix (e.g. /docs/static, Swagger's JS and CSS) for a path under it, else "unmatched".

    FastAPI's router sets scope["route"] for its own routes only, not for mounted apps, so a request for
    /docs's assets would count as unmatched and hide among real misses; the mount's prefix is as bounded a
    label as a route template.
    """
    path = scope["path"]
    for route in getattr(scope.get("app"), "routes", ()):
        if isinstance(route, Mount) and route.path and (path == route.path or path.startswith(route.path + "/")):
            return route.path
    return "unmatched"
