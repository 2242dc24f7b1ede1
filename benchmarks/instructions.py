"""Instructions per model-free /predict request, counted by callgrind in the server, for several trees side by side.

    python -m benchmarks.instructions --tree before=b749122 --tree after=HEAD --out docs/benchmarks/one-path

This machine's speed moves by up to 2x from day to day and by 20-30% between rounds of one run, so a wall-clock
comparison cannot settle a difference of 10%. Instructions can: callgrind counts the same total for the same
code, inputs and environment whatever else the machine does. Each tree (``NAME=REF``, a commit checked out
into a temporary worktree, or ``NAME=DIR``, a tree already on disk, edits included) serves as the serving
benchmark's ``--model-free`` runs start it (``python -m benchmarks.servers.model_free``: ``alexnet-serve`` with
the forward pass a constant, on a random checkpoint at the 32x32 input), but under
``valgrind --tool=callgrind``. Once it is ready and warm, counting is switched on, ``--requests`` uploads of one
CIFAR-10 PNG are sent over HTTP by ``--concurrency`` clients at once (keep-alive; the clients run outside
valgrind, uncounted), and counting is switched off: everything the server process did for them is counted, every
thread (HTTP parsing, the event loop, the model threads). The trees alternate within each of ``--rounds``
rounds. Instructions are not time: a syscall or a cache miss costs more than its count says, and C code
(Pillow's decoder, zlib) fewer cycles per instruction than the interpreter; a server under valgrind runs its
threads one at a time, so its passes may batch differently than at full speed. For the same reason its OpenMP
(torch) threads wait passively (``OMP_WAIT_POLICY=passive``, in every tree): a worker left spinning after a
two-thread pass spins until valgrind switches threads, which counted from under 100 to about 190,000
instructions a request (docs/benchmarks.md, "One path again"): the scheduler's doing, not the code's.
Results: ``instructions.json`` and ``instructions.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from benchmarks.machine import describe_machine
from benchmarks.payloads import default_cifar_dir, make_uploads, multipart_body
from benchmarks.servers.catalog import model_free_tree_spec
from benchmarks.servers.launch import LOOPBACK, images_per_pass, pass_totals, start_server
from models import save_random_checkpoint
from models.transforms import SOURCE_SIZE

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 900.0  # importing torch under valgrind takes minutes on 2 cores


def instrumentation(pid: int, on: bool) -> None:
    """Callgrind's counting on or off in process ``pid`` (one that valgrind runs)."""
    switch = ["callgrind_control", "-i", "on" if on else "off", str(pid)]
    done = subprocess.run(switch, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(switch)} failed: {done.stdout}{done.stderr}")


def callgrind_totals(path: Path) -> int:
    """The instructions a callgrind output file counts: its ``totals:`` line (its ``summary:`` may read 0 when the
    counting was switched on and off by callgrind_control)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals line (did callgrind finish?)")


async def send(url: str, body: bytes, content_type: str, requests: int, concurrency: int) -> dict[int, int]:
    """``requests`` POSTs of ``body`` to ``url`` from ``concurrency`` keep-alive clients: {status: count}."""
    statuses: dict[int, int] = {}
    headers = {"content-type": content_type}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:

        async def one_client(n: int) -> None:
            for _ in range(n):
                answer = await client.post(url, content=body, headers=headers)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        share, left = divmod(requests, concurrency)
        await asyncio.gather(*(one_client(share + (i < left)) for i in range(concurrency)))
    return statuses


def count(tree: Path, checkpoint: Path, body: tuple[bytes, str], requests: int, concurrency: int, log: Path) -> dict:
    """The model-free service of ``tree`` under callgrind: the instructions it spent on ``requests`` uploads."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        valgrind = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}")
        passive = {"OMP_WAIT_POLICY": "passive"}  # see the module's docstring
        spec = model_free_tree_spec(tree.name, sys.executable, checkpoint, valgrind, passive)
        started = time.perf_counter()
        try:
            # callgrind writes its file as the process exits: a long grace before SIGKILL
            with start_server(spec, log, READY_TIMEOUT_S, cwd=tree, grace_s=120) as server:
                url = f"http://{LOOPBACK}:{server.port}/predict"
                warm = asyncio.run(send(url, *body, 2 * concurrency, concurrency))  # every path taken once
                passes_before = pass_totals(server.port)  # read while not counting
                instrumentation(server.process.pid, True)
                statuses = asyncio.run(send(url, *body, requests, concurrency))
                instrumentation(server.process.pid, False)
                passes = images_per_pass(passes_before, pass_totals(server.port)).get("images_per_pass")
        except Exception as exc:
            raise RuntimeError(f"{tree}: {exc}; the server's last words:\n{log.read_text()[-3000:]}") from exc
        if warm != {200: 2 * concurrency} or statuses != {200: requests}:
            raise RuntimeError(f"{tree}: not every request was answered 200: {warm}, then {statuses}")
        instructions = callgrind_totals(out)
    return {
        "instructions": instructions,
        "per_request": round(instructions / requests),
        "images_per_pass": passes,
        "seconds": round(time.perf_counter() - started, 1),
    }


@contextmanager
def checked_out(spec: str) -> Iterator[tuple[str, Path, str]]:
    """``NAME=REF`` or ``NAME=DIR`` -> (name, a tree on disk, what it is); a commit's worktree is removed after."""
    name, _, where = spec.partition("=")
    if not name or not where:
        raise SystemExit(f"--tree {spec!r}: give NAME=REF or NAME=DIR")
    if Path(where).is_dir():
        yield name, Path(where).resolve(), "a tree on disk"
        return
    commit = subprocess.run(["git", "rev-parse", "--short", where], cwd=REPO, capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"--tree {spec!r}: {where!r} is neither a folder nor a commit")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / name
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(folder), where], cwd=REPO, check=True)
        try:
            yield name, folder, f"commit {commit.stdout.strip()}"
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, check=False)


def _cell(run: dict, base: int | None) -> str:
    against = "" if base is None else f" ({run['per_request'] / base - 1:+.1%})"
    passes = "" if run.get("images_per_pass") is None else f"; {run['images_per_pass']:g} images a pass"
    return f"{run['per_request']:,}{against}{passes}"


def markdown(result: dict) -> str:
    names = [tree["name"] for tree in result["trees"]]
    first = names[0]
    lines = [
        "# Instructions per model-free /predict request (callgrind, in the server)",
        "",
        f"{result['requests']} requests of one image ({result['image']['name']}, {result['image']['bytes']:,} bytes), "
        f"{result['concurrency']} clients at once, per tree and round; {result['machine']['cpu']}; "
        f"{result['valgrind']}. Trees: " + "; ".join(f"{t['name']} ({t['what']})" for t in result["trees"]),
        "",
        "| round | " + " | ".join(names) + " |",
        "| ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    for number, row in enumerate(result["rounds"], 1):
        base = row[first]["per_request"]
        cells = [_cell(row[n], None if n == first else base) for n in names]
        lines.append(f"| {number} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=REF or NAME=DIR (two or more)")
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=default_cifar_dir(), help="CIFAR-10 test images (JPEGs)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind): callgrind counts the instructions")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its server, removes its trees
    upload = make_uploads("cifar", 1, args.data_dir)[0]  # the serving benchmark's image: one CIFAR-10 PNG
    body = multipart_body([upload])
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        checkpoint = save_random_checkpoint(scratch / "random.safetensors", input_size=SOURCE_SIZE)  # as model-free
        trees = [stack.enter_context(checked_out(spec)) for spec in args.tree]
        rounds = []
        for number in range(args.rounds):
            order = trees if number % 2 == 0 else trees[::-1]  # alternate who goes first
            row = {}
            for name, folder, _ in order:
                log = scratch / f"{name}-{number + 1}.log"
                row[name] = count(folder, checkpoint, body, args.requests, args.concurrency, log)
                print(f"round {number + 1}: {name} {row[name]['per_request']:,} instructions/request", flush=True)
            rounds.append(row)
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    result = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "image": {"name": upload.filename, "bytes": len(upload.data)},
        "valgrind": version,
        "machine": describe_machine("cpu"),
        "trees": [{"name": n, "what": w} for n, _, w in trees],
        "rounds": rounds,
    }
    (args.out / "instructions.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "instructions.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
