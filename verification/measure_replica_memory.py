"""What one serving replica costs in memory on the CPU: the figures behind docs/scaling.md.

Runs in a fresh process and reports resident memory (VmRSS, and the peak VmHWM) after each stage a
replica goes through: import torch, load a checkpoint (random weights, 224x224 input, the real size),
then forward passes at the batch sizes given. Linux only (reads /proc/self/status).

    python -m verification.measure_replica_memory --batch-sizes 1 32 64
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def memory_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def report(stage: str) -> None:
    rss, peak = memory_mib()
    logger.info("%-36s RSS %7.0f MiB   peak %7.0f MiB", stage, rss, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 64], help="images per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--write-checkpoint", type=Path, help=argparse.SUPPRESS)  # internal: the child process
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.write_checkpoint:
        from models import save_random_checkpoint  # here, so the parent process never imports torch

        save_random_checkpoint(args.write_checkpoint, with_rule=True)  # its 64 MiB precision matrix counts
        return

    report("python started")
    import torch

    from models import Classifier, load_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    report(f"import torch {torch.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        # Written by a child process, so building the throwaway model does not count in this one.
        path = Path(tmp) / "random.safetensors"
        subprocess.run(
            [sys.executable, "-m", "verification.measure_replica_memory", "--write-checkpoint", str(path)], check=True
        )
        checkpoint = load_checkpoint(path)
    spec = checkpoint.preprocess
    classifier = Classifier.from_checkpoint(checkpoint, torch.device("cpu"))  # as a replica holds it
    del checkpoint
    params = sum(p.numel() for p in classifier.model.parameters())
    report(f"model loaded ({params * 4 / 2**20:.0f} MiB of fp32 weights)")

    for batch_size in args.batch_sizes:
        images = torch.randint(0, 256, (batch_size, 3, spec.source_size, spec.source_size), dtype=torch.uint8)
        classifier.predict(images)  # the service's own pass: probabilities and the abstention score
        report(f"after a forward pass, batch {batch_size}")


if __name__ == "__main__":
    main()
