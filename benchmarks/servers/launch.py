"""Start a server as a subprocess on a free loopback port, wait until it is ready, measure it, stop it."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: a command with ``{port}`` in it, extra environment, a health path."""

    name: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    description: str = ""
    speaks_grpc: bool = False  # OIP over gRPC with ALEXNET_GRPC_PORT set (this service): the grpc generator's server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_ready(port: int, path: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Poll the health endpoint until it answers 200; fail early if the process dies."""
    deadline = time.monotonic() + timeout_s
    url = f"http://{LOOPBACK}:{port}{path}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was ready")
        with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")


def process_tree_cpu_s(root_pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (LitServe runs several)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    process: subprocess.Popen

    def cpu_s(self) -> float:
        return process_tree_cpu_s(self.process.pid)

    def pass_totals(self) -> tuple[float, float] | None:
        return pass_totals(self.port)


def pass_totals(port: int) -> tuple[float, float] | None:
    """(images, forward passes) so far, from this service's /metrics; None for a server without them (peers)."""
    metrics = service_metrics(port)
    if "alexnet_batch_size_images_count" not in metrics:
        return None
    return metrics["alexnet_batch_size_images_sum"], metrics["alexnet_batch_size_images_count"]


def images_per_pass(before: tuple[float, float] | None, after: tuple[float, float] | None) -> dict:
    """This service's mean images per forward pass between two ``pass_totals``, from its own metrics: how well
    requests were batched. Nothing for a server without those metrics."""
    if before is None or after is None or after[1] <= before[1]:
        return {}
    return {"images_per_pass": round((after[0] - before[0]) / (after[1] - before[1]), 2)}


def service_metrics(port: int) -> dict[str, float]:
    """Sums and counts of the service's Prometheus histograms (empty for a server without /metrics)."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    values = {}
    for name in ("alexnet_batch_size_images", "alexnet_forward_seconds", "alexnet_queue_wait_seconds"):
        for part in ("sum", "count"):
            match = re.search(rf"^{name}_{part} ([0-9.e+-]+)$", text, re.MULTILINE)
            if match:
                values[f"{name}_{part}"] = float(match[1])
    return values


@contextlib.contextmanager
def start_server(
    spec: ServerSpec, log_path: Path, ready_timeout_s: float = 180.0, cwd: Path | None = None, grace_s: float = 15.0
) -> Iterator[RunningServer]:
    """Run the server for the duration of the block, in ``cwd``; its output goes to ``log_path``; stopped with
    SIGTERM and ``grace_s`` before SIGKILL."""
    port = free_port()
    command = [part.format(port=port, host=LOOPBACK) for part in spec.command]
    env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        # A new session, so stopping it takes every process it started (LitServe's workers) with it.
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            started = time.monotonic()
            wait_ready(port, spec.health_path, process, ready_timeout_s)
            logger.info("%s ready on port %d after %.1f s", spec.name, port, time.monotonic() - started)
            yield RunningServer(spec, port, process)
        finally:
            stop_process_group(process, grace_s)


def stop_process_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after the grace period."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("server %d ignored SIGTERM for %.0f s: killing it", process.pid, grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
    process.wait()


def exit_on_sigterm() -> None:
    """From now on a SIGTERM (a time limit: ``timeout``, scripts/gpu_check.sh) raises SystemExit in the main thread,
    so every ``start_server`` block stops its server on the way out: a server runs in a session of its own and
    would otherwise outlive the benchmark, holding its port and its GPU memory."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
