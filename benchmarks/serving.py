"""Serving benchmark: this service against a plain FastAPI server, LitServe and the in-process limit.

    python -m benchmarks.serving --out docs/benchmarks --plot docs/images/serving-latency-throughput.png \
        --update-doc docs/benchmarks.md          # the full run: about 8 minutes on 2 CPU cores
    python -m benchmarks.serving --quick --out /tmp/bench   # a smoke test: about 2 minutes
    python -m benchmarks.serving --model-free --out docs/benchmarks --update-doc docs/benchmarks.md

Every server is started in turn as a subprocess on a free loopback port with the same random-weight
checkpoint (the real network at 224x224: timings do not depend on the weights) and the same device, is
driven by the same load generator through the same scenarios, and is stopped before the next starts.
A scenario is ``KIND:IMAGES:LEVELS``: ``cifar:1:1,8,32`` sends one 32x32 PNG per request at 1, 8 and 32
concurrent clients; ``photo`` sends 6-megapixel JPEGs. Traffic stays on 127.0.0.1, and the run is
bounded: warm-up + duration per level, a request timeout, and a fixed list of levels.

``--model-free`` measures what each server costs per request outside the model (on a GPU the model is
nearly free, so that cost is what bounds requests/s there): in every server the network's forward pass is
replaced by a constant, fixed logits of the right shape returned at once (``benchmarks.servers.model_free``),
while HTTP, multipart parsing, image decoding, thread hops, batching, response building and middleware stay
real. The random checkpoint is made at 32x32 input then (``--input-size`` says otherwise), so the device's
part of preprocessing, upsampling to 224, goes with the network: on a GPU host it runs on the GPU, and a CPU
doing it here would be measuring work a GPU host's CPU never does. The bare FastAPI floor
(``benchmarks.servers.bare_fastapi``: Starlette's form parser reads the upload, a fixed answer, no decode, no
model) is always added, as the framework's own cost. The in-process limit and the targets, which are about
the model, are skipped. The results go to
``serving-model-free.json`` / ``.md`` (and ``-model-free`` is added to a ``--plot`` name), the server logs
to ``logs-model-free/``, and ``--update-doc`` replaces the ``serving-model-free`` section, so a model-free
run never overwrites the real-model results. Their tables give requests/s and server CPU ms per request.

``--rounds N`` repeats everything N times, the servers' order rotated each round, and the report gives each
comparison in every round: a claim holds only if it holds in all of them. ``--generators ours,wrk`` drives
every level with our client and then with wrk (``benchmarks.wrk``), so no result rests on one generator;
``grpc`` adds a gRPC client (``benchmarks.grpc_load``: OIP's ModelInfer with the same images) for the servers that
speak it, this service started with ``ALEXNET_GRPC_PORT``, so REST and gRPC are measured on one server, in turn.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from benchmarks import report, targets
from benchmarks.grpc_load import grpc_installed, infer_messages, run_grpc
from benchmarks.limit import BATCH_SIZES, decode_costs, forward_sweep, parallel_sweep
from benchmarks.loadgen import LoadSpec, run_load
from benchmarks.machine import describe_machine, load_average
from benchmarks.payloads import IMAGE_KINDS, cifar_arrays, default_cifar_dir, make_uploads, multipart_body
from benchmarks.servers.catalog import (
    FLOOR_NAME,
    SERVER_NAMES,
    litserve_installed,
    server_specs,
    service_defaults,
)
from benchmarks.servers.launch import (
    LOOPBACK,
    ServerSpec,
    exit_on_sigterm,
    free_port,
    images_per_pass,
    start_server,
)
from benchmarks.wrk import run_wrk, wrk_installed
from models import load_checkpoint, save_random_checkpoint
from models.files import atomic_write
from models.transforms import INPUT_SIZE, SOURCE_SIZE
from training.logs import configure_logging

logger = logging.getLogger(__name__)

DEFAULT_SCENARIOS = ("cifar:1:1,8,32", "photo:1:1,8,32", "cifar:64:1,4")
QUICK_SCENARIOS = ("cifar:1:1,8", "photo:1:4", "cifar:16:2")
DISTINCT_IMAGES = {"cifar": 64, "photo": 16}  # distinct pictures per kind: requests rotate through them
# Our own HTTP client, wrk (benchmarks/wrk.py) and a gRPC client (benchmarks/grpc_load.py: OIP's ModelInfer, only
# for the servers that speak it); each takes (load, client processes or wrk threads)
GENERATORS = {"ours": run_load, "wrk": run_wrk, "grpc": run_grpc}


@dataclass(frozen=True)
class Scenario:
    kind: str
    images_per_request: int
    levels: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Scenario:
        try:
            kind, images, levels = text.split(":")
            scenario = cls(kind, int(images), tuple(int(x) for x in levels.split(",")))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: expected KIND:IMAGES:LEVELS, e.g. cifar:1:1,8,32") from exc
        if kind not in IMAGE_KINDS or scenario.images_per_request < 1 or min(scenario.levels) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: kind one of {IMAGE_KINDS}, positive numbers")
        return scenario

    def label(self) -> str:
        return f"{self.kind} x{self.images_per_request}"


def request_groups(uploads: list, per_request: int) -> list[list]:
    """Distinct groups of ``per_request`` uploads each, cycling through the uploads: one request each."""
    count = max(1, len(uploads) // per_request) if per_request <= len(uploads) else 1
    return [[uploads[(i * per_request + j) % len(uploads)] for j in range(per_request)] for i in range(count)]


def request_bodies(uploads: list, per_request: int) -> tuple[bytes, ...]:
    """The groups as multipart bodies."""
    return tuple(multipart_body(group)[0] for group in request_groups(uploads, per_request))


def grpc_messages(uploads: list, per_request: int) -> tuple[bytes, ...]:
    """The same groups as serialized ModelInferRequests (benchmarks/grpc_load.py)."""
    return infer_messages([[upload.data for upload in group] for group in request_groups(uploads, per_request)])


def bench_server(
    spec: ServerSpec, scenarios, uploads, args, log_dir: Path, round_number: int = 1, on_row=None
) -> list[dict]:
    """Every scenario and level against one server, with each load generator in turn; a server that fails to
    start is recorded, not fatal. ``on_row`` is called with each row as soon as it is measured."""
    rows = []
    grpc_port = free_port() if spec.speaks_grpc and "grpc" in args.generators else None
    if grpc_port is not None:
        spec = replace(spec, env={**spec.env, "ALEXNET_GRPC_PORT": str(grpc_port)})
    generators = [g for g in args.generators if g != "grpc" or grpc_port is not None]
    try:
        with start_server(spec, log_dir / f"{spec.name}.log") as server:
            for scenario in scenarios:
                bodies = request_bodies(uploads[scenario.kind], scenario.images_per_request)
                content_type = multipart_body(uploads[scenario.kind][:1])[1]
                messages = grpc_messages(uploads[scenario.kind], scenario.images_per_request) if grpc_port else ()
                for level in scenario.levels:
                    load = LoadSpec(
                        LOOPBACK,
                        server.port,
                        bodies,
                        content_type,
                        scenario.images_per_request,
                        level,
                        args.warmup,
                        args.duration,
                        timeout_s=args.request_timeout,
                        grpc_port=grpc_port,
                        grpc_messages=messages,
                    )
                    for generator in generators:
                        passes_before = server.pass_totals()  # before the CPU reading: the scrape is not the level's
                        cpu_before = server.cpu_s()
                        result = GENERATORS[generator](load, args.client_processes)
                        server_cpu = server.cpu_s() - cpu_before
                        row = {
                            "server": spec.name,
                            "kind": scenario.kind,
                            "images_per_request": scenario.images_per_request,
                            "concurrency": level,
                            "generator": generator,
                            "round": round_number,
                            **result.summary.to_dict(),
                            "server_cpu_cores": round(server_cpu / result.wall_s, 2),
                            "client_cpu_cores": round(result.client_cpu_s / result.wall_s, 2),
                            **images_per_pass(passes_before, server.pass_totals()),  # the warm-up's too
                        }
                        _log_row(row, scenario)
                        rows.append(row)
                        if on_row:
                            on_row(row)
    except (RuntimeError, TimeoutError, OSError) as exc:
        logger.error("%s could not be benchmarked: %s (see %s)", spec.name, exc, log_dir / f"{spec.name}.log")
        rows.append({"server": spec.name, "round": round_number, "failed": str(exc)})
    return rows


def _log_row(row: dict, scenario: Scenario) -> None:
    logger.info(
        "r%d %-4s %-16s %-9s c=%-3d %8.1f img/s %8.1f req/s  p50 %7.1f ms  p99 %7.1f ms  errors %d",
        row["round"],
        row["generator"],
        row["server"],
        scenario.label(),
        row["concurrency"],
        row["images_per_s"],
        row["requests_per_s"],
        row["latency_ms"]["p50"],
        row["latency_ms"]["p99"],
        row["error_count"],
    )


def server_order(names: list[str], round_number: int) -> list[str]:
    """Round r starts with the r-th server: every server is measured early and late, none always first."""
    shift = (round_number - 1) % len(names)
    return names[shift:] + names[:shift]


def run_limit(checkpoint_path: Path, device: torch.device, uploads, cifar_dir: Path, seconds: float) -> dict:
    checkpoint = load_checkpoint(checkpoint_path)
    sizes = (1, 8, 32) if seconds < 1 else BATCH_SIZES
    sweep = forward_sweep(checkpoint, cifar_arrays(DISTINCT_IMAGES["cifar"], cifar_dir), device, sizes, seconds)
    if device.type == "cpu" and (os.cpu_count() or 1) >= 2:  # how the service runs on a CPU: one pass per core
        sweep += parallel_sweep(checkpoint, cifar_arrays(DISTINCT_IMAGES["cifar"], cifar_dir), sizes, seconds)
    best = max(sweep, key=lambda row: row["images_per_s"])
    costs = decode_costs({k: v[:16] for k, v in uploads.items()}, checkpoint.preprocess.input_size, min(seconds, 1.5))
    for row in sweep:
        logger.info("limit %-13s batch %-3d %8.1f img/s", row["layout"], row["batch_size"], row["images_per_s"])
    return {"sweep": sweep, "best": best, "decode": costs}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serving benchmark (see docs/benchmarks.md).")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="folder for serving.json/.md")
    parser.add_argument("--plot", type=Path, help="PNG of latency against throughput (default: OUT/serving.png)")
    parser.add_argument(
        "--update-doc",
        type=Path,
        help="replace the generated section (serving, or serving-model-free) of this Markdown file",
    )
    parser.add_argument(
        "--from-results",
        type=Path,
        help="run nothing: check the targets again and rewrite the outputs from this saved serving.json",
    )
    parser.add_argument("--servers", default=",".join(SERVER_NAMES), help=f"comma list from {SERVER_NAMES}")
    parser.add_argument("--scenario", action="append", type=Scenario.parse, help="KIND:IMAGES:LEVELS (repeat)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per level (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each level (default 2)")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds before a request is an error")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="for every server and the limit")
    parser.add_argument("--checkpoint", type=Path, help="serve this checkpoint (default: random weights, 224 input)")
    parser.add_argument(
        "--input-size",
        type=int,
        help="input size of the random checkpoint (default 224; 32 with --model-free: no upsampling either)",
    )
    parser.add_argument("--max-batch-size", type=int, help="LitServe's batch (default: the service's own default)")
    parser.add_argument("--max-wait-ms", type=float, help="LitServe's wait (default: the service's own default)")
    parser.add_argument("--client-processes", type=int, default=1, help="client processes (more on big hosts)")
    parser.add_argument(
        "--generators",
        default="ours",
        help=f"comma list from {sorted(GENERATORS)}: every level is driven by each in turn (default: ours)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat everything this many times, the servers' order rotated each round (default 1)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the servers")
    parser.add_argument(
        "--cifar-dir",
        type=Path,
        default=default_cifar_dir(),
        help="CIFAR test images (default: $ALEXNET_DATA_DIR/test or data/test; generated when absent)",
    )
    parser.add_argument("--no-limit", action="store_true", help="skip the in-process limit")
    parser.add_argument("--limit-seconds", type=float, default=2.0, help="timing per batch size of the limit")
    parser.add_argument("--quick", action="store_true", help="smoke test: short levels, few scenarios")
    parser.add_argument(
        "--model-free",
        action="store_true",
        help="every server's forward pass a constant, plus the bare FastAPI floor: the per-request overhead "
        "(writes serving-model-free.*; no limit, no targets)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = min(args.duration, 2.0), min(args.warmup, 1.0)
        args.limit_seconds = min(args.limit_seconds, 0.5)
    args.scenarios = args.scenario or [
        Scenario.parse(s) for s in (QUICK_SCENARIOS if args.quick else DEFAULT_SCENARIOS)
    ]
    args.server_names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.server_names) - {*SERVER_NAMES, FLOOR_NAME}
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {SERVER_NAMES}")
    args.generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    if not args.generators or set(args.generators) - set(GENERATORS):
        parser.error(f"--generators: choose from {sorted(GENERATORS)}")
    if "wrk" in args.generators and not wrk_installed():
        parser.error("--generators wrk: wrk is not installed (Debian: apt-get install wrk)")
    if "grpc" in args.generators and not grpc_installed():
        parser.error("--generators grpc: needs the grpc extra (pip install -e '.[grpc]')")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.input_size is None:
        # Model-free: the device's share of preprocessing (the upsampling to 224, on the GPU where it matters)
        # goes with the network, so the CPU does only what it does on a GPU host.
        args.input_size = SOURCE_SIZE if args.model_free else INPUT_SIZE
    if args.model_free:
        args.no_limit = True  # the limit times the network, which a model-free run does not have
        if FLOOR_NAME not in args.server_names:
            args.server_names.append(FLOOR_NAME)  # the reference the other servers are read against
    elif FLOOR_NAME in args.server_names:
        parser.error(f"{FLOOR_NAME} has no model: it is measured with --model-free only")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def main(argv: list[str] | None = None) -> dict:
    configure_logging()
    args = parse_args(argv)
    if args.from_results:
        return rewrite_outputs(args)
    exit_on_sigterm()  # a time limit stops the servers on its way out, and the partial results stay
    started = time.monotonic()
    machine = describe_machine(args.device)
    defaults = service_defaults(args.device)
    max_batch = args.max_batch_size or defaults.max_batch_size
    max_wait = defaults.max_wait_ms if args.max_wait_ms is None else args.max_wait_ms
    most_files = max(s.images_per_request for s in args.scenarios)
    max_files = most_files if most_files > defaults.max_files else None  # else the service's default stays
    levels = sum(len(s.levels) for s in args.scenarios) * len(args.server_names) * len(args.generators) * args.rounds
    logger.info(
        "%d servers, %d levels in all, about %.0f s of load",
        len(args.server_names),
        levels,
        levels * (args.duration + args.warmup),
    )
    kinds = sorted({s.kind for s in args.scenarios})  # photos take seconds to make: only what is sent
    uploads = {kind: make_uploads(kind, DISTINCT_IMAGES[kind], args.cifar_dir) for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="alexnet-bench-") as scratch:
        # With an abstention rule, so that its cost is counted as a trained model's is; model-free leaves it out
        # with the network: the score is computed on the model's device, with the pass.
        checkpoint = args.checkpoint or save_random_checkpoint(
            Path(scratch) / "random.safetensors",
            input_size=args.input_size,
            note="random weights for benchmarks",
            with_rule=not args.model_free,
        )
        limit = (
            None
            if args.no_limit
            else run_limit(checkpoint, torch.device(args.device), uploads, args.cifar_dir, args.limit_seconds)
        )
        specs = server_specs(
            args.python, checkpoint, args.device, max_batch, max_wait, max_files, model_free=args.model_free
        )
        log_dir = args.out / ("logs-model-free" if args.model_free else "logs")  # the real run's logs are kept
        rows: list[dict] = []
        partial = args.out / f"{output_name(args)}.partial.json"

        def keep(row: dict) -> None:  # each row on disk as soon as it is measured: a killed run keeps them
            rows.append(row)
            args.out.mkdir(parents=True, exist_ok=True)
            atomic_write(partial, lambda f: f.write(json.dumps({"limit": limit, "results": rows}).encode()))

        for round_number in range(1, args.rounds + 1):
            for name in server_order(args.server_names, round_number):
                if name.startswith("litserve") and not litserve_installed():
                    logger.warning("litserve is not installed (pip install -e '.[bench]'): skipped")
                    keep({"server": name, "round": round_number, "failed": "litserve not installed"})
                    continue
                bench_server(specs[name], args.scenarios, uploads, args, log_dir, round_number, on_row=keep)
    results = {
        "command": "python -m benchmarks.serving " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "device": args.device,
            "max_batch_size": max_batch,
            "max_wait_ms": max_wait,
            "service_max_files": max_files,
            "client_processes": args.client_processes,
            "generators": args.generators,
            "rounds": args.rounds,
            "scenarios": [s.__dict__ for s in args.scenarios],
            "input_size": args.input_size,
            "model_free": args.model_free,
            "upload_bytes": {k: round(sum(len(u.data) for u in v) / len(v)) for k, v in uploads.items()},
        },
        "servers": {name: specs[name].description for name in args.server_names},
        "limit": limit,
        "results": rows,
        "elapsed_s": round(time.monotonic() - started, 1),
        "load_average_at_end": load_average(),
    }
    written = check_and_write(results, args)
    partial.unlink(missing_ok=True)
    return written


def rewrite_outputs(args: argparse.Namespace) -> dict:
    """The outputs of a saved run, rebuilt with this report code (its targets checked again)."""
    path = args.from_results
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--from-results {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(results, dict) or not {"command", "machine", "settings", "results"} <= results.keys():
        raise SystemExit(f"--from-results {path}: not the serving.json of a benchmarks.serving run")
    args.model_free = results["settings"].get("model_free", False)
    return check_and_write(results, args)


def check_and_write(results: dict, args: argparse.Namespace) -> dict:
    # The targets are about the model's throughput: a run without the model has none to check.
    results["targets"] = [] if args.model_free else targets.check_targets(results)
    write_outputs(results, args)
    return results


def output_name(args: argparse.Namespace) -> str:
    """The stem of the outputs and the name of the doc's section: a model-free run has its own."""
    return "serving-model-free" if args.model_free else "serving"


def model_free_path(path: Path) -> Path:
    """``path`` with ``-model-free`` added to its name, unless it says so already."""
    return path if "model-free" in path.stem else path.with_name(f"{path.stem}-model-free{path.suffix}")


def write_outputs(results: dict, args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    name = output_name(args)
    json_path, markdown_path = args.out / f"{name}.json", args.out / f"{name}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    plot = args.plot or args.out / f"{name}.png"
    if args.model_free:
        plot = model_free_path(plot)  # a --plot meant for the real-model figure must not be overwritten
    report.plot_latency_throughput(results, plot)
    markdown = report.serving_markdown(results, plot_path=plot, relative_to=(args.update_doc or args.out / "x").parent)
    markdown_path.write_text(markdown)
    if args.update_doc:
        report.replace_section(args.update_doc, name, markdown)
    logger.info("wrote %s, %s and %s in %.0f s", json_path, markdown_path, plot, results["elapsed_s"])


if __name__ == "__main__":
    main()
