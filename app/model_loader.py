"""A new checkpoint while serving, without a gap: read, checked, placed on the device and warmed up beside the model
that serves, then swapped in between passes. A file that cannot be loaded leaves the old model serving.

Three ways in: OIP's model repository routes (app/routes/repository.py, with ALEXNET_MODEL_CONTROL), SIGHUP (the
configured file read again) and the poll of the configured file (ALEXNET_CHECKPOINT_POLL_S). Each request keeps
the model it started with: its images are queued with that model's forward, and a pass never mixes two
(app/batcher.py); the old weights are freed once no request holds them. Every answer names its weights and
their version, which is 1 at start and one more with each load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from app.deps import ServiceState
from app.errors import BadRequest, NotFound, ServiceError
from app.model_threads import ModelThreads
from app.predictor import Predictor
from models import CheckpointError

logger = logging.getLogger(__name__)


class LoadRefused(ServiceError):
    """409: the file is not a checkpoint this service can serve in place of the one it serves (unreadable,
    truncated, foreign, other classes or source size); the old model goes on serving."""

    status_code = 409


@dataclass(frozen=True)
class FileStamp:
    """What the poll compares: a file replaced (renamed over, as checkpoints are written) changes these."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return cls(stat.st_ino, stat.st_size, stat.st_mtime_ns)


class ModelLoader:
    """Loads checkpoints from the configured checkpoint's folder into ``state``, one at a time."""

    def __init__(self, state: ServiceState, pool: ModelThreads, warmup_sizes: list[int]) -> None:
        self.state = state
        self.pool = pool
        self.warmup_sizes = warmup_sizes
        self.folder = state.settings.checkpoint.resolve().parent
        self._lock = asyncio.Lock()
        self.stamp = FileStamp.of(state.settings.checkpoint)  # of the file last loaded from the configured path

    def resolve(self, name: str | None) -> Path:
        """The file to load: ``name`` inside the checkpoint's folder (None: the configured checkpoint). A path
        that leaves the folder (absolute, ``..``, a link pointing out) is a 400; a missing file a 404."""
        if name is None:
            return self.state.settings.checkpoint
        if not name or "\x00" in name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise BadRequest(f"checkpoint {name!r}: give a file name inside the checkpoint's folder, not a path")
        path = self.folder / name
        if not path.resolve().is_relative_to(self.folder):
            raise BadRequest(f"checkpoint {name!r}: it leads outside the checkpoint's folder (a link?)")
        if not path.is_file():
            raise NotFound(f"checkpoint {name!r}: no such file in the checkpoint's folder")
        return path

    async def load(self, name: str | None, why: str) -> Predictor:
        """Load ``name`` (see ``resolve``) and serve it; the new predictor, or a ServiceError saying why not (the
        old model serving on). ``why``: who asked, for the log."""
        async with self._lock:  # one load at a time: the versions follow each other
            try:
                path = self.resolve(name)
                stamp = FileStamp.of(path)
                predictor = await self._prepare(path)
            except ServiceError as exc:
                self.state.metrics.model_loads.labels("refused").inc()
                logger.warning("%s: checkpoint not loaded, the model serving stays: %s", why, exc.detail)
                raise
            if name is None:
                self.stamp = stamp
            self.state.predictor = predictor  # the swap: requests from here on run through this one
            self.state.metrics.model_loads.labels("loaded").inc()
            self.state.metrics.model_version.set(predictor.info.version)
            logger.info(
                "%s: serving %s, version %d (weights sha256 %s)",
                why,
                path.name,
                predictor.info.version,
                predictor.info.weights_sha256[:12],
            )
            return predictor

    async def _prepare(self, path: Path) -> Predictor:
        """Read and check the file, place it on the device and warm it up in the model threads, beside the model
        that serves (a thread of its own reads the file: the event loop and the model threads go on)."""
        settings, serving = self.state.settings, self.state.predictor
        assert serving is not None
        version = serving.info.version + 1
        try:
            predictor = await asyncio.to_thread(
                Predictor.load, path, settings.device, settings.precision, settings.ood_threshold, version
            )
        except (CheckpointError, OSError) as exc:
            raise LoadRefused(f"{path.name} cannot be served: {exc}") from None
        if predictor.classes != serving.classes:
            raise LoadRefused(
                f"{path.name} has the classes {list(predictor.classes)}, not the served model's "
                f"{list(serving.classes)}: clients would misread its answers"
            )
        if predictor.source_size != serving.source_size:
            raise LoadRefused(
                f"{path.name} reads {predictor.source_size}-pixel images, not "
                f"{serving.source_size} as the served model does"
            )
        try:
            await self.pool.on_every_thread(predictor.warm_up, self.warmup_sizes)
        except Exception:  # a network that reads and checks but cannot run here (e.g. too small an input)
            # The reason, torch's words, goes to the log with its traceback, not to the client.
            logger.exception("%s failed its warm-up pass", path.name)
            raise LoadRefused(f"{path.name} failed its warm-up pass (the reason is in the service's log)") from None
        return predictor

    async def reload(self, why: str) -> None:
        """The configured file again (SIGHUP, the poll): the outcome is logged, there is no client to tell."""
        with contextlib.suppress(ServiceError):  # logged by load
            await self.load(None, why)

    async def poll(self, every_s: float) -> None:
        """Every ``every_s`` seconds: when the configured file has been replaced, load it."""
        while True:
            await asyncio.sleep(every_s)
            stamp = FileStamp.of(self.state.settings.checkpoint)
            if stamp is not None and stamp != self.stamp:
                self.stamp = stamp  # tried once per version of the file, loaded or refused
                await self.reload("the checkpoint file changed")
