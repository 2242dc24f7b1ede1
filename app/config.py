"""The service's settings: one object, read once from ALEXNET_* environment variables (or given directly).

Every limit a client can run into lives here, with its unit. ``alexnet-serve`` flags override the
environment by passing values to ``Settings(...)``; nothing else in the service reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.logs import LogFormat
from models import DEFAULT_CHECKPOINT
from models.images import DEFAULT_MAX_PIXELS
from models.inference import DEVICE_NAMES, DEVICE_PATTERN, Precision

MiB = 1024 * 1024


def _default_decode_threads() -> int:
    # Decoding a small upload takes well under a millisecond and PIL releases the GIL while it works,
    # so a couple of threads per core keep up with the network without starving the model.
    return min(8, 2 * (os.cpu_count() or 1))


class Settings(BaseSettings):
    """Service configuration; environment variables are the field names upper-cased, prefixed ALEXNET_."""

    # hide_input_in_errors: a rejected setting is named, never echoed, so a mistyped API key stays out of logs.
    model_config = SettingsConfigDict(env_prefix="ALEXNET_", frozen=True, extra="ignore", hide_input_in_errors=True)

    checkpoint: Path = Field(Path(DEFAULT_CHECKPOINT), description="the checkpoint to serve")
    model_control: bool = Field(
        False,
        description="load another checkpoint while serving through OIP's model repository routes (/v2/repository); "
        "off: they answer 403 (SIGHUP and the poll work either way)",
    )
    checkpoint_poll_s: float = Field(
        0.0,
        ge=0,
        description="seconds between looks at the checkpoint file: a new file is loaded, serving on; 0: off",
    )
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_NAMES)
    precision: Precision = Field("auto", description="auto: bf16 (fp16 without bf16 support) on CUDA, fp32 on CPU")
    batching: bool = Field(True, description="gather concurrent requests into one forward pass")
    max_batch_size: int = Field(
        0, ge=0, le=4096, description="images per forward pass; 0: auto (16 on a CPU, 128 on CUDA)"
    )
    max_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="longest a part-full batch waits for more while the service is busy (ms)"
    )
    max_queue: int = Field(256, ge=1, description="images waiting for the model before new requests get 429")
    request_timeout_s: float = Field(
        10.0, gt=0, description="a request not answered this long after its body arrived gets 504 (seconds)"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="a request body not fully received after this long gets 408 (seconds)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="a connection that has not sent a whole request head after this long is closed (s)"
    )
    hold_after_429: bool = Field(
        True,
        description="after a 429 at the door, read nothing more from that connection until its Retry-After has "
        "passed: clients that retry at once wait in TCP instead of taking the cores",
    )
    max_connections: int = Field(
        4096, ge=1, description="open connections plus requests in progress; beyond it new requests get 503"
    )
    max_files: int = Field(16, ge=1, description="files per request")
    max_file_bytes: int = Field(10 * MiB, ge=1, description="bytes per uploaded file")
    max_body_bytes: int = Field(32 * MiB, ge=1, description="bytes per request body")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="pixels (width x height) per image, from its header")
    top_k: int = Field(5, ge=1, description="classes listed per image unless the request asks (?top_k=)")
    ood_threshold: float | None = Field(
        None,
        allow_inf_nan=False,
        description="abstention threshold instead of the checkpoint's (unset: the checkpoint's)",
    )
    decode_threads: int = Field(default_factory=_default_decode_threads, ge=1, description="threads decoding uploads")
    model_workers: int = Field(
        0, ge=0, le=64, description="forward passes run at once; 0: auto (2 on a CPU with 2+ cores, else 1)"
    )
    torch_threads: int = Field(0, ge=0, description="CPU threads per forward pass; 0: auto (cores / model_workers)")
    host: str = Field("127.0.0.1", description="alexnet-serve: address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="alexnet-serve: port to listen on")
    grpc_port: int = Field(
        0, ge=0, le=65535, description="the Open Inference Protocol over gRPC on this port (same host); 0: off"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level")
    log_format: LogFormat = Field(
        "text", description="text: uvicorn's style; json: every log line one JSON object (time, level, request_id, ...)"
    )
    # Access control (app/access.py). A SecretStr prints as '**********': the key never reaches a log or a response.
    api_key: SecretStr | None = Field(
        None,
        description="clients must send it (Authorization: Bearer or X-API-Key) on all but health and docs; unset: open",
    )
    metrics_require_key: bool = Field(False, description="/metrics needs the API key too (default: open to scrapers)")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="browser origins allowed to call the API (JSON list or comma-separated); empty: CORS off"
    )

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Settings:
        # A request is queued whole: one with more images than the queue holds could never be served.
        if self.max_queue < self.max_files:
            raise ValueError(f"max_queue ({self.max_queue}) must be at least max_files ({self.max_files})")
        return self

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value: object) -> object:
        # ALEXNET_API_KEY= (set but empty, as compose passes an empty host variable) means "no key", not an error.
        return None if value == "" else value

    @field_validator("api_key")
    @classmethod
    def _key_is_usable(cls, key: SecretStr | None) -> SecretStr | None:
        # The messages never quote the key: a validation error is printed at start-up.
        if key is not None:
            if len(key.get_secret_value()) < 16:
                raise ValueError(
                    "the API key must be at least 16 characters; make one with "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
            if not re.fullmatch(r"[!-~]+", key.get_secret_value()):
                # Visible ASCII only: a key no client can put in a header would lock everyone out.
                raise ValueError("the API key must be visible ASCII characters, without spaces")
        return key

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",")]
        return [origin for origin in value if origin] if isinstance(value, list) else value

    @field_validator("cors_origins")
    @classmethod
    def _origins_match_the_origin_header(cls, origins: list[str]) -> list[str]:
        # Browsers send Origin as scheme://host[:port], and CORS compares it exactly: "https://a.example/"
        # would never match, so refuse it here rather than have CORS silently never answer.
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"CORS origin {origin!r} is not scheme://host[:port] (no path, no trailing slash)")
        return origins
