"""Where a server's time goes under load: py-spy samples it while the load generator drives it.

    python -m verification.profile_service --server service --concurrency 32 --out docs/benchmarks/profile

Starts the server as the serving benchmark does (same checkpoint kind, same settings), sends
``--concurrency`` clients of one upload each, and records the server's Python stacks with py-spy
(``pip install py-spy``; sampling another process needs ptrace rights: root, or CAP_SYS_PTRACE).
Writes the raw stacks (``profile.txt``, one line per distinct stack with its sample count: feed it to a
flame-graph tool) and ``profile.md``: busy samples per thread, and the functions that hold them.
Only running threads are sampled; torch's own OpenMP workers are native threads py-spy cannot name,
so their work appears in the server CPU figure, not in the stacks.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from benchmarks.loadgen import LoadSpec, run_load
from benchmarks.payloads import default_cifar_dir, make_uploads, multipart_body
from benchmarks.servers.catalog import SERVER_NAMES, server_specs, service_defaults
from benchmarks.servers.launch import LOOPBACK, service_metrics, start_server
from benchmarks.serving import request_bodies
from models import save_random_checkpoint
from training.logs import configure_logging

logger = logging.getLogger(__name__)

FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")


def parse_raw(text: str) -> Counter:
    """py-spy's raw format: ``frame;frame;...;frame COUNT`` per line, outermost frame first."""
    stacks: Counter = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def short_frame(frame: str) -> str:
    match = FRAME.match(frame)
    return f"{match['function']} ({match['file']})" if match else frame


def summarize_stacks(stacks: Counter, top: int = 20) -> dict:
    """Busy samples per thread; per function, the samples it is on the stack for (inclusive) and on top."""
    total = sum(stacks.values())
    threads: Counter = Counter()
    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    for stack, count in stacks.items():
        frames = stack[1:] if stack[0].startswith("process ") else stack  # --subprocesses names the process
        thread, frames = (frames[0], frames[1:]) if frames and frames[0].startswith("thread ") else ("-", frames)
        thread = re.sub(r"^thread \(\d+\): (.*?)(_\d+)?$", r"\1", thread)  # one row per pool: decode_0.. -> decode
        threads[thread] += count
        for name in {short_frame(f) for f in frames}:
            inclusive[name] += count
        if frames:
            leaf[short_frame(frames[-1])] += count
    share = lambda counter: [(name, n, 100 * n / total) for name, n in counter.most_common(top)]  # noqa: E731
    return {"samples": total, "threads": share(threads), "inclusive": share(inclusive), "leaf": share(leaf)}


def batching_line(metrics: dict[str, float], wall_s: float) -> str:
    """Mean batch, mean pass time and how busy the model thread was, from the service's own metrics."""
    passes = metrics.get("alexnet_forward_seconds_count")
    if not passes:
        return ""
    batch = metrics["alexnet_batch_size_images_sum"] / metrics["alexnet_batch_size_images_count"]
    forward_ms = 1000 * metrics["alexnet_forward_seconds_sum"] / passes
    queue_ms = 1000 * metrics["alexnet_queue_wait_seconds_sum"] / max(1, metrics["alexnet_queue_wait_seconds_count"])
    running = metrics["alexnet_forward_seconds_sum"] / wall_s  # passes running at once, on average
    return (
        f"The service's own metrics over the load: {passes:.0f} forward passes of {batch:.1f} images on "
        f"average, {forward_ms:.0f} ms each ({1000 * batch / forward_ms:.0f} images/s per pass); "
        f"on average {running:.2f} passes were running at once; mean queue wait {queue_ms:.0f} ms."
    )


def profile_markdown(summary: dict, load: str, header: str, batching: str = "") -> str:
    lines = [header, "", f"{summary['samples']:,} busy samples. Load while sampling: {load}. {batching}", ""]
    for key, title in (
        ("threads", "thread"),
        ("leaf", "function on top of the stack (self time)"),
        ("inclusive", "function anywhere on the stack (inclusive time)"),
    ):
        lines += [f"| {title} | samples | share |", "| --- | ---: | ---: |"]
        lines += [f"| `{name}` | {n:,} | {pct:.1f}% |" for name, n, pct in summary[key]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    parser = argparse.ArgumentParser(description="Profile a server under load with py-spy.")
    parser.add_argument("--server", default="service", choices=SERVER_NAMES)
    parser.add_argument("--kind", default="cifar", choices=["cifar", "photo"])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0, help="sampled seconds (after a 3 s warm-up)")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/profile"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).is_file():
        parser.error("py-spy is not installed (pip install -e '.[bench]')")
    args.out.mkdir(parents=True, exist_ok=True)
    defaults = service_defaults(args.device)
    uploads = make_uploads(args.kind, 64 if args.kind == "cifar" else 16, default_cifar_dir())
    with tempfile.TemporaryDirectory(prefix="alexnet-profile-") as scratch:
        checkpoint = save_random_checkpoint(Path(scratch) / "random.safetensors", with_rule=True)
        spec = server_specs(sys.executable, checkpoint, args.device, defaults.max_batch_size, defaults.max_wait_ms)
        with start_server(spec[args.server], args.out / f"{args.server}.log") as server:
            raw = args.out / "profile.txt"
            raw.unlink(missing_ok=True)  # a failed sampler must not leave an old profile to summarise
            command = [
                py_spy,
                "record",
                "--pid",
                str(server.process.pid),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--threads",
                "--subprocesses",
                "--nonblocking",
                *(["--gil"] if args.gil else []),
            ]
            sampler = threading.Timer(3.0, subprocess.run, (command,), {"check": True, "capture_output": True})
            sampler.start()  # after the warm-up, while the load runs
            body, content_type = request_bodies(uploads, 1), multipart_body(uploads[:1])[1]
            load = run_load(
                LoadSpec(LOOPBACK, server.port, body, content_type, 1, args.concurrency, 3.0, args.seconds + 1.0)
            )
            sampler.join()
            if not raw.is_file():
                raise SystemExit(f"py-spy wrote no samples to {raw}: see its error above")
            batching = batching_line(service_metrics(server.port), load.wall_s)
    summary = summarize_stacks(parse_raw(raw.read_text()))
    figures = load.summary.to_dict()
    load_text = (
        f"{figures['images_per_s']} images/s, p50 {figures['latency_ms']['p50']} ms, "
        f"p99 {figures['latency_ms']['p99']} ms, errors {figures['error_count']}"
    )
    header = f"### py-spy: {args.server}, {args.concurrency} clients, one {args.kind} image per request"
    (args.out / "profile.md").write_text(profile_markdown(summary, load_text, header, batching) + "\n")
    logger.info("%s; %s wrote %s and %s", load_text, batching, raw, args.out / "profile.md")


if __name__ == "__main__":
    main()
