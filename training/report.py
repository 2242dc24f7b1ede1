"""Evaluation pictures and metrics.json, written beside the checkpoint.

Matplotlib's object API (``Figure``) renders with Agg without touching pyplot's global state, so it works
headless and in threads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from models.files import atomic_write
from training.report_page import REPORT_FILE, write_html_report

METRICS_FILE = "metrics.json"
CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
PER_CLASS_FILE = "per_class_accuracy.png"
RELIABILITY_FILE = "reliability_diagram.png"


def save_figure(fig: Figure, path: Path) -> None:
    """A PNG, written atomically: a run killed while plotting leaves the previous picture, not half of one."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train and validation."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if any(h.get(key) is not None for h in history):
            loss_ax.plot(epochs, [h.get(key) for h in history], marker="o", label=label)
    for key, label in (("train_accuracy", "train (augmented, dropout on)"), ("val_accuracy", "validation")):
        if any(h.get(key) is not None for h in history):
            acc_ax.plot(
                epochs, [100 * h[key] if h.get(key) is not None else None for h in history], marker="o", label=label
            )
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: Path) -> None:
    """Rows: true class; columns: predicted class; each cell the share of its row."""
    counts = np.asarray(confusion, dtype=np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.6 * len(classes) + 2)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    if len(classes) <= 20:  # numbers stay readable
        for (row, col), rate in np.ndenumerate(rates):
            ax.text(col, row, f"{100 * rate:.0f}", ha="center", va="center", color="white" if rate > 0.5 else "black")
    ax.set_title("confusion matrix (% of each true class)")
    save_figure(fig, path)


def plot_per_class(per_class: dict[str, float], path: Path) -> None:
    names = list(per_class)
    fig = Figure(figsize=(max(6.0, 0.6 * len(names) + 2), 4), layout="constrained")
    ax = fig.subplots()
    values = [100 * per_class[n] for n in names]
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f")
    ax.set(ylabel="test accuracy (%)", ylim=(0, 105), title="test accuracy per class")
    ax.tick_params(axis="x", labelrotation=45)
    save_figure(fig, path)


def plot_reliability(calibration: dict[str, Any], path: Path) -> None:
    """Accuracy against confidence per bin, before and after temperature scaling, with the image counts."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    temperature = calibration.get("temperature", 1.0)
    panels = (
        ("bins_before", "ece_before", "before (temperature 1)"),
        ("bins_after", "ece_after", f"after (temperature {temperature:.2f})"),
    )
    for ax, (bins_key, ece_key, title) in zip(axes, panels, strict=True):
        bins = [b for b in calibration[bins_key] if b["images"]]
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        width = bins[0]["high"] - bins[0]["low"] if bins else 1 / 15
        ax.bar(centres, [b["accuracy"] for b in bins], width=width * 0.95, color="tab:blue", label="accuracy")
        gap_low = [min(b["accuracy"], b["confidence"]) for b in bins]  # the gap runs from one to the other
        gap = [abs(b["confidence"] - b["accuracy"]) for b in bins]
        ax.bar(
            centres,
            gap,
            bottom=gap_low,
            width=width * 0.95,
            color="tab:red",
            alpha=0.45,
            label="gap to the mean confidence",
        )
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence (top-class probability)",
            title=f"{title}: ECE {100 * calibration['test_' + ece_key]:.2f}%",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    axes[0].set_ylabel("accuracy")
    fig.suptitle("reliability on the test split (single view, as served; 15 equal bins)")
    save_figure(fig, path)


def write_report(
    out_dir: Path, metrics: dict[str, Any], classes: Sequence[str], hardest: Sequence[dict[str, Any]] = ()
) -> list[Path]:
    """metrics.json, the pictures and report.html (which embeds them and the hardest images); the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / METRICS_FILE, out_dir / CONFUSION_FILE, out_dir / PER_CLASS_FILE]
    text = json.dumps(metrics, indent=2, default=str) + "\n"
    atomic_write(written[0], lambda f: f.write(text.encode()))
    plot_confusion(np.asarray(metrics["confusion_matrix"]), classes, written[1])
    plot_per_class(metrics["per_class_accuracy"], written[2])
    if metrics.get("history"):
        written.append(out_dir / CURVES_FILE)
        plot_curves(metrics["history"], written[-1])
    if metrics.get("calibration", {}).get("bins_after"):
        written.append(out_dir / RELIABILITY_FILE)
        plot_reliability(metrics["calibration"], written[-1])
    titles = {
        CURVES_FILE: "Training curves",
        CONFUSION_FILE: "Confusion matrix",
        PER_CLASS_FILE: "Accuracy per class",
        RELIABILITY_FILE: "Reliability before and after calibration",
    }
    pictures = {titles[path.name]: path for path in written if path.name in titles}
    written.append(write_html_report(out_dir / REPORT_FILE, metrics, classes, pictures, hardest))
    return written
