"""The harness end to end, for real: a server subprocess on loopback, real uploads, real HTTP."""

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import serving
from benchmarks.limit import forward_sweep
from benchmarks.loadgen import LoadSpec, read_response, run_load
from benchmarks.payloads import cifar_arrays, make_uploads, multipart_body
from benchmarks.servers.catalog import server_specs
from benchmarks.servers.launch import LOOPBACK, start_server
from models import load_checkpoint
from tests.helpers import REPO


def test_read_response_handles_chunked_and_sized_bodies():
    async def parse(raw: bytes):
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_response(reader)

    sized = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    chunked = (
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n"
    )
    assert asyncio.run(parse(sized)) == (200, b"{}", True)
    assert asyncio.run(parse(chunked)) == (503, b"{}", False)


def test_uploads_are_deterministic_and_photos_are_photo_sized(tmp_path):
    assert make_uploads("cifar", 3, tmp_path) == make_uploads("cifar", 3, tmp_path)  # no data: generated
    photo = make_uploads("photo", 1, tmp_path)[0]
    assert 150_000 < len(photo.data) < 1_500_000
    with pytest.raises(ValueError):
        make_uploads("gif", 1, tmp_path)


def test_load_against_a_real_server_counts_answers_and_errors(tiny_checkpoint, tmp_path):
    spec = server_specs(sys.executable, tiny_checkpoint, "cpu", 8, 5.0)["plain-fastapi"]
    uploads = make_uploads("cifar", 4, tmp_path)
    body, content_type = multipart_body(uploads[:2])
    with start_server(spec, tmp_path / "plain.log") as server:
        good = run_load(LoadSpec(LOOPBACK, server.port, (body,), content_type, 2, 2, 0.3, 1.0))
        wrong_path = run_load(LoadSpec(LOOPBACK, server.port, (body,), content_type, 2, 1, 0.0, 0.5, path="/nope"))
        assert server.cpu_s() > 0
    assert good.summary.requests > 0 and good.summary.error_count == 0
    assert good.summary.images == 2 * good.summary.requests
    assert 0 < good.summary.latency_ms["p50"] <= good.summary.latency_ms["p99"]
    assert wrong_path.summary.requests == 0 and set(wrong_path.summary.errors) == {"status_404"}


def test_limit_sweep_times_every_batch_size(tiny_checkpoint, tmp_path):
    rows = forward_sweep(load_checkpoint(tiny_checkpoint), cifar_arrays(3, tmp_path), torch.device("cpu"), (1, 4), 0.05)
    assert [(r["layout"], r["batch_size"]) for r in rows] == [
        ("contiguous", 1),
        ("contiguous", 4),
        ("channels_last", 1),
        ("channels_last", 4),
    ]
    assert all(r["images_per_s"] > 0 and r["repeats"] >= 3 for r in rows)


def test_quick_run_writes_json_markdown_and_plot(tiny_checkpoint, tmp_path):
    doc = tmp_path / "docs" / "benchmarks.md"
    serving.main([
        "--quick", "--servers", "plain-fastapi", "--checkpoint", str(tiny_checkpoint), "--scenario", "cifar:1:2",
        "--duration", "1", "--warmup", "0.3", "--out", str(tmp_path / "out"), "--cifar-dir", str(tmp_path / "none"),
        "--update-doc", str(doc), "--no-limit",
    ])  # fmt: skip
    results = json.loads((tmp_path / "out" / "serving.json").read_text())
    (row,) = results["results"]
    assert row["server"] == "plain-fastapi" and row["requests"] > 0 and row["error_count"] == 0
    assert results["limit"] is None
    assert (tmp_path / "out" / "serving.png").stat().st_size > 0
    assert "| plain FastAPI | 2 |" in doc.read_text()


def _processes_naming(text: str) -> list[int]:
    """The processes with ``text`` on their command line or in their environment."""
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and any(text.encode() in (entry / f).read_bytes() for f in ("cmdline", "environ")):
                pids.append(int(entry.name))
    return pids


def test_a_run_stopped_by_sigterm_keeps_its_rows_and_stops_its_server(tiny_checkpoint, tmp_path):
    """What a time limit does (``timeout``, scripts/gpu_check.sh): the rows measured so far stay on disk, and the
    server, in a session of its own, does not outlive the benchmark."""
    checkpoint = tmp_path / "stopped-run.safetensors"  # a name no other process has on its command line
    shutil.copy(tiny_checkpoint, checkpoint)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks.serving", "--servers", "plain-fastapi", "--checkpoint",
               str(checkpoint), "--scenario", "cifar:1:1,2,3", "--duration", "2", "--warmup", "0.2", "--no-limit",
               "--out", str(out), "--cifar-dir", str(tmp_path / "none")]  # fmt: skip
    benchmark = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out / "serving.partial.json"
    deadline = time.monotonic() + 120
    while not partial.exists() and benchmark.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert partial.exists(), "no row was written"
    assert len(_processes_naming(str(checkpoint))) == 2  # the benchmark and its server
    benchmark.send_signal(signal.SIGTERM)
    assert benchmark.wait(timeout=30) == 128 + signal.SIGTERM
    rows = json.loads(partial.read_text())["results"]
    assert rows and rows[0]["server"] == "plain-fastapi" and rows[0]["concurrency"] == 1
    assert _processes_naming(str(checkpoint)) == []
    assert not (out / "serving.json").exists()


def test_the_grpc_generator_measures_the_service_beside_rest_and_checks_answers(tiny_checkpoint, tmp_path):
    """``--generators ours,grpc``: the service is started with its gRPC port and measured by both clients in turn;
    the floor, which speaks no gRPC, by our HTTP client alone. A gRPC answer of the wrong shape is an error."""
    pytest.importorskip("tritonclient.grpc")
    from tritonclient.grpc import service_pb2 as pb

    from benchmarks.grpc_load import check_answer

    serving.main([
        "--model-free", "--servers", "service", "--generators", "ours,grpc", "--checkpoint", str(tiny_checkpoint),
        "--scenario", "cifar:2:2", "--duration", "1", "--warmup", "0.3", "--out", str(tmp_path / "out"),
        "--cifar-dir", str(tmp_path / "none"),
    ])  # fmt: skip
    rows = json.loads((tmp_path / "out" / "serving-model-free.json").read_text())["results"]
    measured = {(row["server"], row["generator"]): row for row in rows}
    assert set(measured) == {("service", "ours"), ("service", "grpc"), ("bare-fastapi", "ours")}
    by_grpc = measured["service", "grpc"]
    assert by_grpc["requests"] > 0 and by_grpc["error_count"] == 0 and by_grpc["images"] == 2 * by_grpc["requests"]
    # the service's own batching, from its metrics (a request's images may be shared among two free workers' passes)
    assert all(1 <= measured["service", g]["images_per_pass"] <= 4 for g in ("ours", "grpc"))
    assert "images_per_pass" not in measured["bare-fastapi", "ours"]
    answer = pb.ModelInferResponse()
    answer.outputs.add(name="probabilities", datatype="FP32", shape=[1, 10])
    answer.raw_output_contents.append(bytes(40))
    assert check_answer(answer.SerializeToString(), 1) is None
    assert check_answer(answer.SerializeToString(), 2) == "wrong_count"
    assert check_answer(pb.ModelInferResponse().SerializeToString(), 1) == "bad_answer"
    assert check_answer(b"\xff\xff not a message", 1) == "bad_answer"
    answer.outputs[0].shape[:] = [10]  # one dimension where two belong
    assert check_answer(answer.SerializeToString(), 1) == "bad_answer"
