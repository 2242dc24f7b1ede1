"""report.html: one self-contained page about a trained model (pictures embedded, no network), from its metrics.

Written beside the checkpoint by ``alexnet-train`` and ``alexnet-evaluate``; the service serves it at
``GET /model`` when it belongs to the weights it has loaded (the page carries their sha256).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.checkpoint import REPORT_FILE, REPORT_SHA_META, STAND_IN_RECIPES
from models.files import atomic_write

__all__ = ["REPORT_FILE", "hardest_images", "render", "write_html_report"]
THUMBNAIL_SCALE = 3  # 32x32 images shown at 96x96, pixels kept sharp

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1d2733; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d5dbe3; }
.sub { color: #5b6777; } .notice { background: #fff4d6; border: 1px solid #e7c55b; padding: .6rem .9rem; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; } .card { border: 1px solid #d5dbe3; border-radius: 8px;
padding: .7rem 1rem; min-width: 10rem; } .card b { display: block; font-size: 1.5rem; }
table { border-collapse: collapse; margin: .6rem 0; } td, th { border: 1px solid #d5dbe3; padding: .25rem .6rem;
text-align: right; } th:first-child, td:first-child { text-align: left; } .kept { background: #e8f3ea; }
img.plot { max-width: 100%; } .thumbs { display: flex; flex-wrap: wrap; gap: .7rem; }
.thumb { width: 8.5rem; font-size: .8rem; } .thumb img { image-rendering: pixelated; width: 96px; height: 96px; }
.bad { color: #b3261e; } code { background: #f0f3f7; padding: 0 .25rem; }
"""


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _thumbnail(image: np.ndarray) -> str:
    """uint8 (3, S, S) -> a PNG data URI, enlarged without smoothing."""
    picture = Image.fromarray(image.transpose(1, 2, 0))
    picture = picture.resize((picture.width * THUMBNAIL_SCALE, picture.height * THUMBNAIL_SCALE), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], kept: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        f"<tr{' class=kept' if i == kept else ''}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _precision_recall(metrics: dict[str, Any], classes: Sequence[str]) -> str:
    counts = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    recall = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    precision = np.diag(counts) / np.maximum(counts.sum(axis=0), 1)
    columns = zip(classes, precision, recall, counts.sum(axis=1), strict=True)
    rows = [(name, _pct(p), _pct(r), int(n)) for name, p, r, n in columns]
    return _table(("class", "precision", "recall", "test images"), rows)


def _ood(abstention: dict[str, Any]) -> str:
    if "refused" in abstention:
        return f"<p>No abstention rule: {html.escape(abstention['refused'])}. Predictions carry no verdict.</p>"
    scores = abstention["scores"]
    names = list(scores)
    summary = [
        (
            name,
            f"{s['val_mean_auroc']:.3f}",
            f"{s['test_mean_auroc']:.3f}",
            f"{s['threshold']:.4g}",
            _pct(s["test_correct_flagged"]),
            _pct(s["test_wrong_flagged"]),
        )
        for name, s in scores.items()
    ]
    kept = names.index(abstention["score"])
    sets = list(scores[abstention["score"]]["sets"])
    per_set = [
        (
            set_name,
            *(
                f"{scores[n]['sets'][set_name]['auroc']:.3f} / {_pct(scores[n]['sets'][set_name]['fpr95'])} / "
                f"{_pct(scores[n]['sets'][set_name]['flagged'])}"
                for n in names
            ),
        )
        for set_name in sets
    ]
    header = (
        "score",
        "mean AUROC, validation",
        "mean AUROC, test",
        "threshold",
        "correct test answers flagged",
        "wrong test answers flagged",
    )
    return (
        f"<p>Kept: <b>{html.escape(abstention['score'])}</b>, threshold {abstention['threshold']:.4g} "
        f"({html.escape(abstention['target'])}); chosen by {html.escape(abstention['chosen_by'])}.</p>"
        + _table(header, summary, kept)
        + "<p>Per set, test split against the set: AUROC / false-positive rate at 95% true-positive rate / share of "
        "the set flagged at the score's threshold.</p>" + _table(("set", *names), per_set)
    )


def _hardest(hardest: Sequence[dict[str, Any]]) -> str:
    cells = []
    for item in hardest:
        verdict = "" if item.get("confident") is None else (" (uncertain)" if not item["confident"] else "")
        cells.append(
            f"<div class=thumb><img src='{_thumbnail(item['image'])}' alt=''><br>true: {html.escape(item['true'])}<br>"
            f"<span class=bad>said: {html.escape(item['predicted'])} {item['probability']:.2f}</span>{verdict}</div>"
        )
    return "<div class=thumbs>" + "".join(cells) + "</div>"


def render(
    metrics: dict[str, Any], classes: Sequence[str], pictures: dict[str, Path], hardest: Sequence[dict[str, Any]] = ()
) -> str:
    """The page as a string. ``pictures``: title -> PNG file to embed; ``hardest``: thumbnails to show."""
    config, calibration = metrics.get("config", {}), metrics.get("calibration", {})
    sha = metrics.get("weights_sha256", "")
    cards = [
        ("test accuracy" + (" (flip TTA)" if metrics.get("tta") else ""), _pct(metrics["test_accuracy"])),
        ("single view, as served", _pct(metrics.get("test_accuracy_single_view"))),
        ("temperature", f"{calibration['temperature']:.3f}" if "temperature" in calibration else "1 (none)"),
        (
            "ECE before / after",
            f"{_pct(calibration.get('test_ece_before'))} / {_pct(calibration.get('test_ece_after'))}",
        ),
    ]
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name='{REPORT_SHA_META}' content='{sha}'>",
        f"<title>AlexNet model report</title><style>{STYLE}</style></head><body>",
        f"<h1>AlexNet on {len(classes)} classes</h1><p class=sub>weights sha256 <code>{sha}</code></p>",
    ]
    if config.get("recipe") in STAND_IN_RECIPES:
        parts.append(
            f"<p class=notice>A CPU stand-in (<code>--recipe {html.escape(config['recipe'])}</code>): a "
            "short run to have something to serve, not the real model. The default recipe on a GPU aims at "
            "90%.</p>"
        )
    elif str(metrics.get("device", "")).startswith("cpu"):
        parts.append(
            "<p class=notice>Trained on a CPU: check the recipe and the numbers below before relying on "
            "it; the default recipe on a GPU aims at 90%.</p>"
        )
    parts.append("<div class=cards>" + "".join(f"<div class=card>{t}<b>{v}</b></div>" for t, v in cards) + "</div>")
    parts += ["<h2>Per class</h2>", _precision_recall(metrics, classes)]
    for title, path in pictures.items():
        name = html.escape(title)
        parts.append(f"<h2>{name}</h2><img class=plot src='{_png_data(path)}' alt='{name}'>")
    if metrics.get("abstention"):
        parts += ["<h2>None of these: out-of-distribution scores</h2>", _ood(metrics["abstention"])]
    if hardest:
        parts += [
            "<h2>The hardest test images</h2><p>Lowest calibrated probability on the true class.</p>",
            _hardest(hardest),
        ]
    parts += ["<h2>Where and how long</h2>", _table(("", "value"), _run_rows(metrics))]
    parts += ["<h2>Training config</h2>", _table(("field", "value"), sorted(config.items()))]
    parts.append("</body></html>")
    return "".join(parts)


def _run_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    get = metrics.get
    images = f"{get('train_images', '-')} / {get('val_images', '-')} / {get('test_images', '-')}"
    return [
        ("data", str(get("data", "-"))),
        ("device", f"{get('device', '-')} x{get('world_size', 1)}"),
        ("training time", f"{get('train_seconds', 0):.0f} s"),
        ("wall time, start to checkpoint", f"{get('wall_seconds', 0):.0f} s"),
        ("images/s", f"{get('images_per_second', 0):.0f}"),
        ("train / validation / test images", images),
    ]


def write_html_report(
    path: Path,
    metrics: dict[str, Any],
    classes: Sequence[str],
    pictures: dict[str, Path],
    hardest: Sequence[dict[str, Any]] = (),
) -> Path:
    text = render(metrics, classes, pictures, hardest)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


def hardest_images(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    confident: np.ndarray | None = None,
    count: int = 16,
) -> list[dict[str, Any]]:
    """The ``count`` test images with the lowest probability on their true class, for the report."""
    true_probability = probabilities[np.arange(len(labels)), labels]
    order = np.argsort(true_probability, kind="stable")[:count]
    predicted = probabilities.argmax(axis=1)
    return [
        {
            "image": images[i],
            "true": classes[labels[i]],
            "predicted": classes[predicted[i]],
            "probability": float(probabilities[i, predicted[i]]),
            "confident": None if confident is None else bool(confident[i]),
        }
        for i in order
    ]
