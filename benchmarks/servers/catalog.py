"""The four servers of the serving benchmark, all on the same checkpoint and device, and the model-free floor.

With ``model_free`` every server's network answers a constant (``benchmarks.servers.model_free``), and the
bare FastAPI floor (``benchmarks.servers.bare_fastapi``), which has no model at all, joins them.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from benchmarks.servers.launch import ServerSpec

logger = logging.getLogger(__name__)

# LitServe's other strong configurations beside the first: the targets are read against the best LitServe
LITSERVE_VARIANTS = ("litserve-nofq", "litserve-pil", "litserve-b16")
SERVER_NAMES = ("service", "service-nobatch", "plain-fastapi", "litserve", *LITSERVE_VARIANTS)
FLOOR_NAME = "bare-fastapi"  # measured in model-free runs only: it has no model to replace
MODEL_FREE = ", forward pass replaced by a constant"  # appended to each server's description
FALLBACK_MAX_BATCH_SIZE = 32  # images per forward pass, used only if the service's settings cannot be read
FALLBACK_MAX_WAIT_MS = 5.0
FALLBACK_MAX_FILES = 16
UVICORN_QUIET = ("--no-access-log", "--log-level", "warning")  # no per-request log lines, for every server
SERVED_AT = ("--host", "{host}", "--port", "{port}", *UVICORN_QUIET)


def model_free_tree_spec(
    name: str, python: str, checkpoint: Path, wrapper: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> ServerSpec:
    """This service, model-free on the CPU, as ``--model-free`` runs start it, for a tree other than this one: run with
    that tree as the working directory (``start_server(..., cwd=)``), ``-m`` takes its own app, models and
    benchmarks; ready once /health/ready answers. ``wrapper``: a command to run it under (valgrind)."""
    command = (*wrapper, python, "-m", "benchmarks.servers.model_free", *SERVED_AT)
    settings = {"ALEXNET_CHECKPOINT": str(checkpoint), "ALEXNET_DEVICE": "cpu", **(env or {})}
    return ServerSpec(name, command, settings, health_path="/health/ready")


def service_spec(python: str, env: dict[str, str], name: str = "service") -> ServerSpec:
    """This service as ``alexnet-serve`` starts it (``python -m app``), quiet, with ``env``'s ALEXNET_* settings."""
    return ServerSpec(name, (python, "-m", "app", *SERVED_AT), env)


@dataclass(frozen=True)
class ServiceDefaults:
    """The service's own defaults that the benchmark mirrors (LitServe's batching) or must respect."""

    max_batch_size: int = FALLBACK_MAX_BATCH_SIZE  # images in forward passes at once (passes x images per pass)
    max_wait_ms: float = FALLBACK_MAX_WAIT_MS
    max_files: int = FALLBACK_MAX_FILES  # files per request


def service_defaults(device: str = "cpu") -> ServiceDefaults:
    """Read from the service's Settings, so LitServe batches as many images as the service runs at once.

    The service runs ``workers`` passes of ``pass_size`` images at once (on a CPU, 2 single-threaded passes
    of 16); LitServe runs one inference worker, so it gets batches of workers x pass_size images.
    """
    try:
        import torch

        from app.config import Settings
        from app.model_threads import plan_threads

        settings = Settings()
        plan = plan_threads(settings, torch.device(device))
        in_flight = plan.pass_size * plan.workers
        return ServiceDefaults(in_flight, float(settings.max_wait_ms), int(settings.max_files))
    except Exception as exc:  # the app not importable here, or its settings renamed: say so, use the fallback
        logger.warning("could not read the service's defaults (%s): using %s", exc, ServiceDefaults())
        return ServiceDefaults()


def _litserve(
    name: str,
    python: str,
    checkpoint: Path,
    device: str,
    batch: int,
    max_wait_ms: float,
    model_free: bool,
    flags: tuple[str, ...],
    what: str,
) -> ServerSpec:
    command = (
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
        str(batch),
        "--batch-timeout-ms",
        str(max_wait_ms),
        *flags,
        *(("--model-free",) if model_free else ()),
    )
    decode = "" if "pil" in flags else "models.load_image + "
    suffix = MODEL_FREE if model_free else ""
    return ServerSpec(
        name,
        command,
        description=f"LitServe, {decode}Preprocess, batch {batch}, wait {max_wait_ms:g} ms, {what}{suffix}",
    )


def litserve_installed() -> bool:
    return importlib.util.find_spec("litserve") is not None


def server_specs(
    python: str,
    checkpoint: Path,
    device: str,
    max_batch_size: int,
    max_wait_ms: float,
    max_files: int | None = None,
    *,
    model_free: bool = False,
) -> dict[str, ServerSpec]:
    """``max_files``: raise the service's files-per-request limit (only for requests above its default).

    ``model_free``: every server's forward pass a constant; the floor (``FLOOR_NAME``) is among the specs then.
    """
    uvicorn = (python, "-m", "uvicorn")
    where = SERVED_AT
    # alexnet-serve, as the container and `make serve` start the service; model-free, the same behind the seam
    entry_point = (python, "-m", "benchmarks.servers.model_free" if model_free else "app")
    service_env = {"ALEXNET_CHECKPOINT": str(checkpoint), "ALEXNET_DEVICE": device}
    if max_files is not None:
        service_env["ALEXNET_MAX_FILES"] = str(max_files)
    plain_env = {"BENCH_CHECKPOINT": str(checkpoint), "BENCH_DEVICE": device}
    if model_free:
        plain_env["BENCH_MODEL_FREE"] = "1"
    suffix = MODEL_FREE if model_free else ""
    specs = {
        "service": ServerSpec(
            "service",
            (*entry_point, *where),
            service_env,
            description="this service, default settings (batching across requests on)" + suffix,
            speaks_grpc=True,
        ),
        "service-nobatch": ServerSpec(
            "service-nobatch",
            (*entry_point, *where),
            {**service_env, "ALEXNET_BATCHING": "false"},
            description="this service with ALEXNET_BATCHING=false (one forward pass per request)" + suffix,
            speaks_grpc=True,
        ),
        "plain-fastapi": ServerSpec(
            "plain-fastapi",
            (*uvicorn, "benchmarks.servers.plain_fastapi:app", *where),
            plain_env,
            description="a tutorial-style FastAPI endpoint: full-size PIL decode, Resize/ToTensor, forward per request"
            + suffix,
        ),
        **{
            name: _litserve(name, python, checkpoint, device, batch, max_wait_ms, model_free, flags, what)
            for name, batch, flags, what in (
                ("litserve", max_batch_size, (), "fast_queue on"),
                ("litserve-nofq", max_batch_size, ("--no-fast-queue",), "fast_queue off"),
                ("litserve-pil", max_batch_size, ("--decode", "pil"), "fast_queue on, its own PIL decode"),
                ("litserve-b16", max(1, max_batch_size // 2), (), "fast_queue on"),
            )
        },
    }
    if model_free:
        specs[FLOOR_NAME] = ServerSpec(
            FLOOR_NAME,
            (*uvicorn, "benchmarks.servers.bare_fastapi:app", *where),
            description="the floor: bare FastAPI + uvicorn, Starlette's form parser reads the upload, a fixed "
            "answer (no decode, no model)",
        )
    return specs
