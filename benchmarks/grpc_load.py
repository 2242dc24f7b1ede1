"""The gRPC load generator: Open Inference Protocol ModelInfer calls, closed loop, beside the HTTP generators.

What a ``tritonclient.grpc`` user sends: the images as one BYTES tensor in ``raw_input_contents`` (serialized by
tritonclient's own ``serialize_byte_tensor``, as its ``InferInput`` does), every output asked for. Every request
is serialized once, up front, and sent as bytes (no per-call message building); each client process opens one
channel, and its ``concurrency`` calls are concurrent HTTP/2 streams on it, as a tritonclient.grpc user's calls
would be. Each
answer is parsed and checked (a row of probabilities per image), so a wrong answer counts as an error, as it
does for our HTTP client. The records, summary and client CPU time are the HTTP generator's
(``benchmarks.loadgen.run_load``); the event loop is asyncio's own, the one grpc.aio supports.

Needs the ``grpc`` extra (grpcio and tritonclient's generated messages); the server needs ``ALEXNET_GRPC_PORT``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Sequence

from benchmarks.loadgen import RECONNECT_PAUSE_S, LoadResult, LoadSpec, run_load
from benchmarks.stats import RequestRecord

METHOD = "/inference.GRPCInferenceService/ModelInfer"
MODEL = "alexnet"


def grpc_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("grpc", "tritonclient.grpc"))


def infer_messages(groups: Sequence[Sequence[bytes]]) -> tuple[bytes, ...]:
    """One serialized ModelInferRequest per group of image files."""
    import numpy as np
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.utils import serialize_byte_tensor

    messages = []
    for images in groups:
        request = pb.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="images", datatype="BYTES", shape=[len(images)])
        request.raw_input_contents.append(serialize_byte_tensor(np.array(images, dtype=object)).item())
        messages.append(request.SerializeToString())
    return tuple(messages)


def check_answer(answer: bytes, images: int) -> str | None:
    """None for a correct answer (``images`` rows of float32 probabilities), else the kind of error to count."""
    from google.protobuf.message import DecodeError
    from tritonclient.grpc import service_pb2 as pb

    try:
        response = pb.ModelInferResponse.FromString(answer)
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=False):
            if output.name == "probabilities":
                rows, classes = output.shape
                return None if rows == images and len(raw) == rows * classes * 4 else "wrong_count"
    except (ValueError, DecodeError):  # not a message, or a probabilities shape that is not (rows, classes)
        pass
    return "bad_answer"


def drive_grpc(spec: LoadSpec, workers: int, first_worker: int, begin_at: float) -> list[RequestRecord]:
    """``workers`` concurrent calls of one process, on one channel."""
    return asyncio.run(_run_workers(spec, workers, first_worker, begin_at))


def run_grpc(spec: LoadSpec, processes: int = 1) -> LoadResult:
    """One load level over gRPC (``spec.grpc_port``, ``spec.grpc_messages``), summarized as the HTTP ones are."""
    if spec.grpc_port is None or not spec.grpc_messages:
        raise ValueError("the gRPC generator needs the server's gRPC port and the serialized requests")
    return run_load(spec, processes, drive_grpc)


async def _run_workers(spec: LoadSpec, workers: int, first_worker: int, begin_at: float) -> list[RequestRecord]:
    import grpc

    limit = max(len(message) for message in spec.grpc_messages) + (1 << 20)
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", 1 << 26)]
    records: list[RequestRecord] = []
    async with grpc.aio.insecure_channel(f"{spec.host}:{spec.grpc_port}", options=options) as channel:
        call = channel.unary_unary(METHOD)  # no serializers: the request goes as the bytes it is, the answer comes so
        await asyncio.wait_for(channel.channel_ready(), timeout=30)  # connected before the clock starts
        await asyncio.sleep(max(0.0, begin_at - time.monotonic()))
        stop_at = begin_at + spec.warmup_s + spec.duration_s
        stride = max(1, len(spec.grpc_messages) // max(1, spec.concurrency))  # concurrent calls, different images
        await asyncio.gather(
            *(_worker(call, spec, (first_worker + i) * stride, stop_at, records) for i in range(workers))
        )
    return records


async def _worker(call, spec: LoadSpec, offset: int, stop_at: float, out: list[RequestRecord]) -> None:
    import grpc

    index = offset
    while time.monotonic() < stop_at:
        message = spec.grpc_messages[index % len(spec.grpc_messages)]
        index += 1
        start = time.monotonic()
        try:
            error = check_answer(await call(message, timeout=spec.timeout_s), spec.images_per_request)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            error = {grpc.StatusCode.DEADLINE_EXCEEDED: "timeout", grpc.StatusCode.UNAVAILABLE: "connection"}.get(
                code, f"grpc_{code.name.lower()}"
            )
        out.append(RequestRecord(start, time.monotonic(), spec.images_per_request, error))
        if error == "connection":
            await asyncio.sleep(RECONNECT_PAUSE_S)
