"""The CIFAR-10 python version (its folder or its archive) as image folders of JPEGs, small enough to travel.

    python -m verification.cifar_jpeg cifar-10-python.tar.gz DEST     # or the extracted cifar-10-batches-py/
    -> DEST/train/<class>/NNNN.jpg, DEST/test/<class>/NNNN.jpg (the NNNN-th image of that class, in file order)

The python version is 163 MB as an archive, too large for the 64 MiB a GPU machine's call may carry
(verification/pack_gpu_check.sh); the JPEGs pack to about a fifth of it. JPEG is lossy: at quality 90 with
full-resolution colour a CIFAR image differs from the original by a few grey levels on average (the shared JPEG
copy, at about quality 75 with subsampled colour, costs a point or two of accuracy; docs/gpu.md). The pickles
are read by ``training.cifar``'s reader, which runs no code.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

from PIL import Image

from training.cifar import FOLDER, read_cifar10
from training.splits import Split

QUALITY = 90
SUBSAMPLING = 0  # 4:4:4, full-resolution colour: at 32x32 pixels, 2x2 colour blocks are a large loss


def batches_folder(source: Path, scratch: Path) -> Path:
    """The folder holding data_batch_1..5: ``source`` itself, its cifar-10-batches-py/, or the archive unpacked."""
    if source.is_file():
        with tarfile.open(source) as archive:
            archive.extractall(scratch, filter="data")  # the "data" filter refuses links and paths out of scratch
        source = scratch
    return source / FOLDER if (source / FOLDER).is_dir() else source


def write_split(split: Split, classes: tuple[str, ...], folder: Path) -> int:
    seen: Counter[int] = Counter()
    for image, label in zip(split.images, split.labels, strict=True):  # (3, 32, 32) uint8 each
        target = folder / classes[label] / f"{seen[label]:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(target, quality=QUALITY, subsampling=SUBSAMPLING)
        seen[label] += 1
    return sum(seen.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m verification.cifar_jpeg", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="cifar-10-python.tar.gz, or the folder it unpacks to")
    parser.add_argument("dest", type=Path, help="where train/ and test/ go")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cifar-jpeg-") as scratch:
        train, test, classes = read_cifar10(batches_folder(args.source, Path(scratch)))
        splits = {"train": train, "test": test}
        counts = {name: write_split(split, classes, args.dest / name) for name, split in splits.items()}
    print(f"wrote {counts['train']} train and {counts['test']} test JPEGs (quality {QUALITY}) to {args.dest}")


if __name__ == "__main__":
    main()
