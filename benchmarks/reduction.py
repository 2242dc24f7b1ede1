"""How should an upload become the 32x32 source image? Centre-crop, letterbox or squash; reduced or full decode.

    python -m benchmarks.reduction --checkpoint checkpoints/alexnet-cifar10.safetensors \
        --cifar-dir data/cifar-jpeg/test --out docs/benchmarks

Photo-like uploads are built from CIFAR-10 test images (``--per-class`` of each class), four kinds:
``wide`` (stretched to 4:3, 640x480: squashing undoes it exactly), ``extended`` (widened to 4:3 by mirroring
its left and right edges, then enlarged to 640x480: the object undistorted in more context, which a centre
crop undoes exactly), ``pasted`` (enlarged 3x and pasted at a random place into a 400x300 scene of blurred
noise) and ``large`` (enlarged to a 2000x2000 square), each re-encoded as a JPEG at quality 85. Every
upload is reduced by each candidate, then classified by the checkpoint through the one inference pass; per
candidate and kind: accuracy, ECE (15 bins, at the checkpoint's temperature), and the
share of correct answers the checkpoint's abstention rule flags. ``centre-crop / reduced`` is what
``models.load_image`` does today. The results go to ``reduction.json`` and ``reduction.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from benchmarks.machine import describe_machine
from models import Classifier, load_checkpoint
from models.images import open_image, to_rgb
from models.inference import to_probabilities
from training.logs import configure_logging
from training.metrics import expected_calibration_error

log = logging.getLogger(__name__)

KINDS = ("wide", "extended", "pasted", "large")
JPEG_QUALITY = 85


def _jpeg(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def photo_like(image: np.ndarray, kind: str, rng: np.random.Generator) -> bytes:
    """A 32x32x3 CIFAR image as a larger JPEG upload of one of the ``KINDS``."""
    small = Image.fromarray(image)
    if kind == "wide":
        return _jpeg(small.resize((640, 480), Image.Resampling.BICUBIC))
    if kind == "extended":
        side = round(image.shape[0] * 4 / 3) - image.shape[1]  # columns to add for 4:3
        widened = np.pad(image, ((0, 0), (side // 2, side - side // 2), (0, 0)), mode="reflect")
        return _jpeg(Image.fromarray(widened).resize((640, 480), Image.Resampling.BICUBIC))
    if kind == "large":
        return _jpeg(small.resize((2000, 2000), Image.Resampling.BICUBIC))
    noise = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    scene = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(8))
    scene.paste(
        small.resize((96, 96), Image.Resampling.BICUBIC), (int(rng.integers(0, 305)), int(rng.integers(0, 205)))
    )
    return _jpeg(scene)


def _square(picture: Image.Image, how: str, size: int) -> Image.Image:
    if how == "centre-crop":
        return ImageOps.fit(picture, (size, size), method=Image.Resampling.BILINEAR)
    if how == "squash":
        return picture.resize((size, size), Image.Resampling.BILINEAR)
    side = max(picture.size)  # letterbox: pad to a square with the picture's mean colour, then resize
    mean = tuple(int(v) for v in np.asarray(picture).reshape(-1, 3).mean(axis=0))
    canvas = Image.new("RGB", (side, side), mean)
    canvas.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
    return canvas.resize((size, size), Image.Resampling.BILINEAR)


def reducer(how: str, reduced_decode: bool, size: int = 32) -> Callable[[bytes], np.ndarray]:
    """An upload -> (3, size, size) uint8, as ``models.load_image`` would with this square and this decode."""

    def reduce(data: bytes) -> np.ndarray:
        picture = open_image(io.BytesIO(data))
        if reduced_decode and picture.format == "JPEG":
            picture.draft(picture.mode, (2 * size, 2 * size))  # as models.images.reduce_image does
        picture = to_rgb(ImageOps.exif_transpose(picture))
        return np.asarray(_square(picture, how, size), dtype=np.uint8).transpose(2, 0, 1)

    return reduce


CANDIDATES = {
    f"{how} / {'reduced' if reduced else 'full'} decode": (how, reduced)
    for how in ("centre-crop", "letterbox", "squash")
    for reduced in (True, False)
}


def load_cifar(folder: Path, per_class: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.jpg"))[:per_class]:
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels), classes


def measure(args: argparse.Namespace) -> dict:
    checkpoint = load_checkpoint(args.checkpoint)
    classifier = Classifier.from_checkpoint(checkpoint, torch.device("cpu"))
    rule = checkpoint.abstention_rule()
    images, labels, classes = load_cifar(args.cifar_dir, args.per_class)
    if tuple(classes) != checkpoint.classes:
        raise SystemExit(f"{args.cifar_dir}: classes {classes} are not the checkpoint's")
    rng = np.random.default_rng(0)
    uploads = {kind: [photo_like(image, kind, rng) for image in images] for kind in KINDS}
    truth = torch.from_numpy(labels)
    rows = []
    for name, (how, reduced) in CANDIDATES.items():
        reduce = reducer(how, reduced, checkpoint.preprocess.source_size)
        for kind in KINDS:
            started = time.perf_counter()
            batch = torch.from_numpy(np.stack([reduce(data) for data in uploads[kind]]))
            decode_ms = 1000 * (time.perf_counter() - started) / len(batch)
            logits, features = classifier.logits_and_features(batch, batch_size=256)
            probabilities = to_probabilities([logits], classifier.temperature)
            correct = probabilities.argmax(dim=1) == truth
            flagged = None
            if rule is not None:
                scores = rule.scores(logits, features, classifier.temperature)
                flagged = float((scores[correct] < rule.threshold).double().mean())
            rows.append(
                {
                    "candidate": name,
                    "kind": kind,
                    "accuracy": float(correct.double().mean()),
                    "ece": expected_calibration_error(probabilities, truth),
                    "correct_flagged": flagged,
                    "decode_ms": decode_ms,
                }
            )
            log.info(
                "%-30s %-7s accuracy %.3f  ECE %.3f  flagged %s  %.2f ms/image",
                name,
                kind,
                rows[-1]["accuracy"],
                rows[-1]["ece"],
                flagged,
                decode_ms,
            )
    return {
        "checkpoint": str(args.checkpoint.name),
        "weights_sha256": checkpoint.weights_sha256,
        "images": len(images),
        "machine": describe_machine("cpu"),
        "rows": rows,
    }


def markdown(results: dict) -> str:
    lines = [
        f"{results['images']} CIFAR-10 test images per kind, checkpoint `{results['checkpoint']}` "
        f"(sha256 {results['weights_sha256'][:12]}); {results['machine']['cpu']}.",
        "",
        "| candidate | " + " | ".join(f"{k}: accuracy / ECE / correct flagged" for k in KINDS) + " | decode ms |",
        "| --- |" + " ---: |" * (len(KINDS) + 1),
    ]
    by = {(r["candidate"], r["kind"]): r for r in results["rows"]}
    for name in CANDIDATES:
        cells = []
        for kind in KINDS:
            r = by[(name, kind)]
            flagged = "-" if r["correct_flagged"] is None else f"{100 * r['correct_flagged']:.1f}%"
            cells.append(f"{100 * r['accuracy']:.1f}% / {100 * r['ece']:.2f}% / {flagged}")
        decode = np.mean([by[(name, kind)]["decode_ms"] for kind in KINDS])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {decode:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--cifar-dir", type=Path, required=True, help="test/<class>/*.jpg of the JPEG copy")
    parser.add_argument("--per-class", type=int, default=100, help="test images per class")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    results = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reduction.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "reduction.md").write_text(markdown(results))
    log.info("wrote %s and %s", args.out / "reduction.json", args.out / "reduction.md")


if __name__ == "__main__":
    main()
