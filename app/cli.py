"""Command lines: ``alexnet-serve``, the one way to start the service, and ``alexnet-predict``, the pipeline on files.

    alexnet-serve --checkpoint checkpoints/alexnet-cifar10.safetensors --device auto --host 0.0.0.0 --port 8000
    python -m app --checkpoint ...                 # the same entry point, for an interpreter without the script
    alexnet-predict --checkpoint checkpoints/alexnet-cifar10.safetensors cat.jpg ship.png

The container, compose, ``make serve``, the load-balancer check and the benchmarks all start the service
with ``alexnet-serve``, so it stops the same way everywhere: /health turns 503 the moment SIGTERM or Ctrl-C
arrives, requests in flight finish, the batcher drains, and the process ends without a traceback.
Flags override ALEXNET_* environment variables. One process holds one copy of the model: scale out with
replicas, not workers.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import numpy as np
import uvicorn
from pydantic import ValidationError

from app.config import Settings
from app.connections import server_config
from app.deps import ServiceState
from app.errors import ServiceError
from app.logs import ACCESS_LOGGER, configure_logging
from app.main import create_app
from app.predictor import Predictor
from app.schemas import PredictResponse
from app.uploads import Upload, decode_image
from models import CheckpointError, DeviceError
from models.inference import DEVICE_NAMES, PRECISIONS

logger = logging.getLogger("app.cli")


def serve(argv: list[str] | None = None) -> None:
    """Entry point of ``alexnet-serve``; exits 3 when start-up fails (a missing checkpoint, say)."""
    parser = argparse.ArgumentParser(prog="alexnet-serve", description="Serve the AlexNet checkpoint over HTTP.")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (ALEXNET_CHECKPOINT)")
    parser.add_argument("--device", help=f"{DEVICE_NAMES} (ALEXNET_DEVICE)")
    parser.add_argument("--host", help="address to listen on (ALEXNET_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (ALEXNET_PORT, default 8000)")
    parser.add_argument(
        "--batching", action=argparse.BooleanOptionalAction, default=None, help="gather requests (ALEXNET_BATCHING)"
    )
    parser.add_argument("--max-batch-size", type=int, help="images per forward pass (ALEXNET_MAX_BATCH_SIZE)")
    parser.add_argument("--max-wait-ms", type=float, help="longest wait for a batch to fill (ALEXNET_MAX_WAIT_MS)")
    parser.add_argument("--precision", help=f"{', '.join(PRECISIONS)} (ALEXNET_PRECISION)")
    parser.add_argument("--log-level", help="critical, error, warning, info or debug (ALEXNET_LOG_LEVEL)")
    parser.add_argument("--log-format", help="text or json (ALEXNET_LOG_FORMAT)")
    parser.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=True, help="one log line per request"
    )
    args = parser.parse_args(argv)
    access_log = args.access_log
    settings = _settings(parser, {k: v for k, v in vars(args).items() if v is not None and k != "access_log"})
    configure_logging(settings.log_level, settings.log_format)
    if not access_log:  # the service's access line (app/request_log.py); uvicorn's own is always off
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    app = create_app(settings)
    config = server_config(app, settings, host=settings.host, port=settings.port)
    # uvicorn re-raises Ctrl-C once it has shut down cleanly (as its own command line does, end without a trace).
    with contextlib.suppress(KeyboardInterrupt):
        Server(config, app.state.service).run()


class Server(uvicorn.Server):
    """uvicorn's server, telling /health it is shutting down the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        logger.info(
            "%s received: /health answers 503; finishing in-flight requests, then exiting", signal.Signals(sig).name
        )
        self.state.set_status("stopping", "shutting down")
        super().handle_exit(sig, frame)


def predict(argv: list[str] | None = None) -> None:
    """Entry point of ``alexnet-predict``: prints the JSON /predict would answer for these files."""
    parser = argparse.ArgumentParser(
        prog="alexnet-predict", description="Classify image files; prints the same JSON as POST /predict."
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (ALEXNET_CHECKPOINT)")
    parser.add_argument("--device", help=f"{DEVICE_NAMES} (ALEXNET_DEVICE)")
    parser.add_argument("--top-k", type=int, help="classes listed per image (ALEXNET_TOP_K)")
    parser.add_argument("--ood-threshold", type=float, help="abstention threshold (ALEXNET_OOD_THRESHOLD)")
    parser.add_argument("--precision", help=f"{', '.join(PRECISIONS)} (ALEXNET_PRECISION)")
    args = parser.parse_args(argv)
    settings = _settings(parser, {k: v for k, v in vars(args).items() if v is not None and k != "images"})
    configure_logging("warning")
    try:
        predictor = Predictor.load(settings.checkpoint, settings.device, settings.precision, settings.ood_threshold)
    except (CheckpointError, DeviceError) as exc:
        parser.exit(1, f"alexnet-predict: {exc}\n")
    uploads, images = [], []
    for index, path in enumerate(args.images, start=1):
        upload = Upload(filename=path.name, index=index)
        try:
            upload.data = path.read_bytes()
            images.append(decode_image(upload, predictor.source_size, settings.max_pixels))
        except OSError as exc:
            parser.exit(1, f"alexnet-predict: {path}: {exc.strerror or exc}\n")
        except ServiceError as exc:
            parser.exit(1, f"alexnet-predict: {exc.detail}\n")
        uploads.append(upload)
    rows = predictor.outputs(np.stack(images))  # (n,) probabilities and scores: one pass, as the service runs it
    k = min(settings.top_k, len(predictor.classes))
    response = PredictResponse.build([u.filename for u in uploads], rows, predictor.info, k)
    sys.stdout.write(response.model_dump_json(indent=2) + "\n")


def _settings(parser: argparse.ArgumentParser, overrides: dict[str, object]) -> Settings:
    """Settings from the environment with the flags on top; a bad value is one line naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        parser.error(problems)
