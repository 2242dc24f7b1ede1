"""The four servers of the serving benchmark, all on the same checkpoint and device."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from benchmarks.servers.launch import ServerSpec

logger = logging.getLogger(__name__)

SERVER_NAMES = ("service", "service-nobatch", "plain-fastapi", "litserve")
FALLBACK_MAX_BATCH_SIZE = 32  # images per forward pass, used only if the service's settings cannot be read
FALLBACK_MAX_WAIT_MS = 5.0
UVICORN_QUIET = ("--no-access-log", "--log-level", "warning")  # no per-request log lines, for every server


def service_batching_defaults() -> tuple[int, float]:
    """The service's own default max batch size (images) and max wait (ms), so LitServe gets the same."""
    try:
        from app.config import Settings

        settings = Settings()
        return int(settings.max_batch_size), float(settings.max_wait_ms)
    except Exception as exc:  # the app not installed here, or its settings renamed: say so, use the fallback
        logger.warning(
            "could not read the service's batching defaults (%s): using %d images, %.0f ms",
            exc,
            FALLBACK_MAX_BATCH_SIZE,
            FALLBACK_MAX_WAIT_MS,
        )
        return FALLBACK_MAX_BATCH_SIZE, FALLBACK_MAX_WAIT_MS


def litserve_installed() -> bool:
    return importlib.util.find_spec("litserve") is not None


def server_specs(
    python: str, checkpoint: Path, device: str, max_batch_size: int, max_wait_ms: float
) -> dict[str, ServerSpec]:
    uvicorn = (python, "-m", "uvicorn")
    where = ("--host", "{host}", "--port", "{port}", *UVICORN_QUIET)
    service_env = {"ALEXNET_CHECKPOINT": str(checkpoint), "ALEXNET_DEVICE": device}
    return {
        "service": ServerSpec(
            "service",
            (*uvicorn, "app.main:app", *where),
            service_env,
            description="this service, default settings (batching across requests on)",
        ),
        "service-nobatch": ServerSpec(
            "service-nobatch",
            (*uvicorn, "app.main:app", *where),
            {**service_env, "ALEXNET_BATCHING": "false"},
            description="this service with ALEXNET_BATCHING=false (one forward pass per request)",
        ),
        "plain-fastapi": ServerSpec(
            "plain-fastapi",
            (*uvicorn, "benchmarks.servers.plain_fastapi:app", *where),
            {"BENCH_CHECKPOINT": str(checkpoint), "BENCH_DEVICE": device},
            description="a tutorial-style FastAPI endpoint: full-size PIL decode, Resize/ToTensor, forward per request",
        ),
        "litserve": ServerSpec(
            "litserve",
            (
                python,
                "-m",
                "benchmarks.servers.litserve_server",
                "--checkpoint",
                str(checkpoint),
                "--device",
                device,
                "--port",
                "{port}",
                "--max-batch-size",
                str(max_batch_size),
                "--batch-timeout-ms",
                str(max_wait_ms),
            ),
            description=f"LitServe, models.load_image + Preprocess, batch {max_batch_size}, wait {max_wait_ms:g} ms",
        ),
    }
