"""Which memory layout and precision train AlexNet fastest on this device: measured, side by side, in rounds.

    python -m benchmarks.training_layout                      # CPU: 224 and 64 px, batch 64, 3 rounds
    python -m benchmarks.training_layout --device cuda --batch-size 512

One training step as the trainer runs it (forward, loss, backward, SGD step with momentum) on random
uint8-range input already at the input size, for each of: contiguous (NCHW) or channels_last, float32 or
bf16 autocast. The candidates are interleaved within each round, so a machine that slows down during the
run slows all of them alike; every round's images/s is kept, and the spread reported. The trainer's choice
per device (``training/train.py`` ``training_layout``) is what these numbers support; the results go to
docs/benchmarks/training-layout.json and docs/training.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.machine import describe_machine
from models.alexnet import AlexNet
from models.inference import autocast

OUTPUT = Path("docs/benchmarks/training-layout.json")
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def steps_per_s(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None, steps: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with autocast(x.device, dtype):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, kernel choice
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def measure(device: torch.device, size: int, batch: int, rounds: int, steps: int) -> dict[str, list[float]]:
    """images/s of every (layout, dtype) candidate, one value per round."""
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device) * 4 - 2  # normalised-range input
    y = torch.randint(0, 10, (batch,), device=device)
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for (layout, memory_format), (precision, dtype) in itertools.product(LAYOUTS.items(), DTYPES.items()):
            model = AlexNet(num_classes=10).to(device).to(memory_format=memory_format).train()
            rate = batch * steps_per_s(model, x.contiguous(memory_format=memory_format), y, dtype, steps)
            results.setdefault(f"{layout} {precision}", []).append(rate)
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_layout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 64], help="input sizes (pixels)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per candidate per round")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    by_size = {}
    for size in args.sizes:
        rates = measure(device, size, args.batch_size, args.rounds, args.steps)
        by_size[str(size)] = {
            name: {"images_per_s": [round(r, 1) for r in values], "median": round(statistics.median(values), 1)}
            for name, values in rates.items()
        }
        print(f"{size} px, batch {args.batch_size}:")
        for name, row in by_size[str(size)].items():
            print(f"  {name:22s} median {row['median']:8.1f} images/s  rounds {row['images_per_s']}")
    result = {
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "steps": args.steps,
        "by_input_size": by_size,
        "machine": describe_machine(device.type),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
