"""Two trees' model-free services in one run, measured in turn level by level: a wall-clock A/B at the finest grain.

    python -m benchmarks.paired --tree before=b749122 --tree after=HEAD --rounds 3 --out docs/benchmarks/one-path

Whole benchmark runs of two trees, interleaved, still differ by this machine's drift between them: the same tree
run twice back to back moved by up to 19% (docs/benchmarks.md, "One path again"). Here both trees' services run
for the whole time (``python -m benchmarks.servers.model_free`` in each tree's folder, as the serving benchmark's
``--model-free`` runs start it), only one of them loaded at a time, and each load level (clients x generator) is
measured on one tree and at once on the other, the first of the pair alternating, so the two halves of a pair are
seconds apart. Each tree is ``NAME=REF`` (a commit, checked out into a temporary worktree) or ``NAME=DIR``.
Results: ``paired.json`` and ``paired.md``, the second tree against the first in each pair.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.instructions import checked_out
from benchmarks.loadgen import LoadSpec
from benchmarks.machine import describe_machine
from benchmarks.payloads import default_cifar_dir, make_uploads, multipart_body
from benchmarks.servers.catalog import model_free_tree_spec
from benchmarks.servers.launch import LOOPBACK, start_server
from benchmarks.serving import DISTINCT_IMAGES, GENERATORS, request_bodies
from models import save_random_checkpoint
from models.transforms import SOURCE_SIZE


def pairs(rounds: int, levels: list[int], generators: list[str]) -> list[tuple[int, int, str, bool]]:
    """(round, clients, generator, whether the second tree goes first) for every pair, in the order measured:
    within a round the first of a pair alternates, and each level's order flips from one round to the next."""
    order = []
    for number in range(1, rounds + 1):
        for index, (level, generator) in enumerate((c, g) for c in levels for g in generators):
            order.append((number, level, generator, (index + number) % 2 == 0))
    return order


def measure(port: int, bodies: tuple[bytes, ...], content_type: str, level: int, generator: str, args) -> dict:
    load = LoadSpec(LOOPBACK, port, bodies, content_type, 1, level, args.warmup, args.duration)
    result = GENERATORS[generator](load, 1)
    return result.summary.to_dict()


def ratio_table(result: dict[str, Any]) -> str:
    first, second = (tree["name"] for tree in result["trees"])
    lines = [
        f"# {second} against {first}, model-free, level by level",
        "",
        f"{result['machine']['cpu']}, {result['machine']['cpu_cores']} cores; `{result['command']}`. Requests/s; "
        "each pair measured back to back, the first of the pair alternating.",
        "",
        f"| round | clients | generator | {first} | {second} | {second}/{first} |",
        "| ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in result["pairs"]:
        a, b = row[first]["requests_per_s"], row[second]["requests_per_s"]
        lines.append(
            f"| {row['round']} | {row['clients']} | {row['generator']} | {a:,.0f} | {b:,.0f} | {b / a - 1:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=REF or NAME=DIR (exactly two)")
    parser.add_argument("--clients", default="32,64", help="load levels, comma-separated")
    parser.add_argument("--generators", default="ours,wrk")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--data-dir", type=Path, default=default_cifar_dir(), help="CIFAR-10 test images (JPEGs)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    if len(args.tree) != 2:
        raise SystemExit("give exactly two --tree NAME=REF|DIR: the second is measured against the first")
    levels = [int(c) for c in args.clients.split(",")]
    generators = [g.strip() for g in args.generators.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its servers
    uploads = make_uploads("cifar", DISTINCT_IMAGES["cifar"], args.data_dir)  # the serving benchmark's images
    bodies, content_type = request_bodies(uploads, 1), multipart_body(uploads[:1])[1]
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        checkpoint = save_random_checkpoint(scratch / "random.safetensors", input_size=SOURCE_SIZE)  # as model-free
        trees = [stack.enter_context(checked_out(spec)) for spec in args.tree]
        specs = {name: model_free_tree_spec(name, sys.executable, checkpoint) for name, _, _ in trees}
        ports = {
            name: stack.enter_context(start_server(specs[name], scratch / f"{name}.log", cwd=folder)).port
            for name, folder, _ in trees
        }
        measured = []
        for number, level, generator, second_first in pairs(args.rounds, levels, generators):
            row: dict[str, Any] = {"round": number, "clients": level, "generator": generator}
            for name, _, _ in trees[::-1] if second_first else trees:
                row[name] = measure(ports[name], bodies, content_type, level, generator, args)
            measured.append(row)
            print(
                f"r{number} c={level} {generator}: "
                + ", ".join(f"{name} {row[name]['requests_per_s']:,.0f} req/s" for name, _, _ in trees),
                flush=True,
            )
    result = {
        "command": "python -m benchmarks.paired " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine("cpu"),
        "trees": [{"name": name, "what": what} for name, _, what in trees],
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "image": "one CIFAR-10 PNG a request"},
        "pairs": measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paired.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "paired.md").write_text(ratio_table(result))
    print(ratio_table(result))
    return result


if __name__ == "__main__":
    main()
