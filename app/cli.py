"""Command lines: ``alexnet-serve`` (one uvicorn process) and ``alexnet-predict`` (the same pipeline on files).

    alexnet-serve --checkpoint checkpoints/alexnet-cifar10.safetensors --device auto --host 0.0.0.0 --port 8000
    alexnet-predict --checkpoint checkpoints/alexnet-cifar10.safetensors cat.jpg ship.png

Flags override ALEXNET_* environment variables. One process holds one copy of the model: scale out with
replicas, not workers.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import numpy as np
import uvicorn
from pydantic import ValidationError
from uvicorn.logging import DefaultFormatter

from app.config import Settings
from app.errors import ServiceError
from app.predictor import Predictor
from app.schemas import PredictResponse
from app.uploads import Upload, decode_image
from models import CheckpointError

logger = logging.getLogger("app.cli")


def configure_logging(level: str) -> None:
    """Our lines in uvicorn's style ("INFO:     app.main: ready"), once, at the entry point."""
    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def serve(argv: list[str] | None = None) -> None:
    """Entry point of ``alexnet-serve``."""
    parser = argparse.ArgumentParser(prog="alexnet-serve", description="Serve the AlexNet checkpoint over HTTP.")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (ALEXNET_CHECKPOINT)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (ALEXNET_DEVICE)")
    parser.add_argument("--host", help="address to listen on (ALEXNET_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (ALEXNET_PORT, default 8000)")
    parser.add_argument(
        "--batching", action=argparse.BooleanOptionalAction, default=None, help="gather requests (ALEXNET_BATCHING)"
    )
    parser.add_argument("--max-batch-size", type=int, help="images per forward pass (ALEXNET_MAX_BATCH_SIZE)")
    parser.add_argument("--max-wait-ms", type=float, help="longest wait for a batch to fill (ALEXNET_MAX_WAIT_MS)")
    parser.add_argument("--precision", help="auto, fp32, bf16 or fp16 (ALEXNET_PRECISION)")
    parser.add_argument("--log-level", help="critical, error, warning, info or debug (ALEXNET_LOG_LEVEL)")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True, help="log each request")
    args = parser.parse_args(argv)
    access_log = args.access_log
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "access_log"}
    settings = _settings(parser, overrides)
    configure_logging(settings.log_level)

    from app.main import create_app  # after the settings are known good: importing builds nothing

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level=settings.log_level,
        access_log=access_log,
        timeout_graceful_shutdown=settings.request_timeout_s + 5,  # in-flight requests end by their deadline
    )
    _Server(config, app.state.service).run()  # exits 3 when start-up fails


class _Server(uvicorn.Server):
    """uvicorn's server, telling /health it is shutting down the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, state: object) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        logger.info("%s received: finishing in-flight requests, then exiting", signal.Signals(sig).name)
        self.state.set_status("stopping", "shutting down")  # type: ignore[attr-defined]
        super().handle_exit(sig, frame)


def predict(argv: list[str] | None = None) -> None:
    """Entry point of ``alexnet-predict``: prints the JSON /predict would answer for these files."""
    parser = argparse.ArgumentParser(
        prog="alexnet-predict", description="Classify image files; prints the same JSON as POST /predict."
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (ALEXNET_CHECKPOINT)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (ALEXNET_DEVICE)")
    parser.add_argument("--top-k", type=int, help="classes listed per image (ALEXNET_TOP_K)")
    parser.add_argument("--precision", help="auto, fp32, bf16 or fp16 (ALEXNET_PRECISION)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "images"}
    settings = _settings(parser, overrides)
    configure_logging("warning")
    try:
        predictor = Predictor.load(settings.checkpoint, settings.device, settings.precision)
    except (CheckpointError, ValueError) as exc:
        parser.exit(1, f"alexnet-predict: {exc}\n")
    k = min(settings.top_k, len(predictor.classes))
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
    results = predictor.classify(np.stack(images), k)
    response = PredictResponse.build([u.filename for u in uploads], results, predictor.info, k)
    sys.stdout.write(response.model_dump_json(indent=2) + "\n")


def _settings(parser: argparse.ArgumentParser, overrides: dict[str, object]) -> Settings:
    """Settings from the environment with the flags on top; a bad value is one line naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        parser.error(problems)
