"""The training benchmark's Markdown section."""

from __future__ import annotations

from benchmarks.report import machine_line, num


def _accuracy(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def training_markdown(results: dict) -> str:
    guide, full_images = results["guide"], results["full_train_images"]
    if results["full"]:
        scope = "the whole JPEG copy of CIFAR-10, full-length recipes"
    else:
        subset = results["subset"]
        scope = (
            f"a class-balanced subset of the JPEG copy ({subset['train_per_class']} train and "
            f"{subset['test_per_class']} test images per class), one epoch each"
        )
    lines = [
        f"Measured on: {machine_line(results['machine'])}",
        "",
        f"Command: `{results['command']}` ({results['elapsed_s']:.0f} s), on {scope}.",
        "",
        "| loop | batch | images/s | time per epoch (this run) | a 50,000-image epoch at this rate | test accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| the guide's loop (ImageFolder + PIL Resize 224 + ToTensor, {guide['workers']} workers, Adam, fp32) | "
        f"{guide['batch_size']} | {num(guide['images_per_second'])} | {num(guide['epoch_seconds_estimate'])} s | "
        f"{num(full_images / guide['images_per_second'])} s | - |",
    ]
    for run in results["trainer"]:
        lines.append(
            f"| {run['name']} (`{run['flags']}`) | {run['batch_size']} | "
            f"{num(run['images_per_second'])} | {num(run['epoch_seconds'])} s | "
            f"{num(full_images / run['images_per_second'])} s | {_accuracy(run['test_accuracy'])} |"
        )
    lines.append("")
    if "speedup_same_batch" in results:
        lines += [
            f"Trainer against the guide's loop at the same batch size and device: "
            f"**{results['speedup_same_batch']:.1f}x** the images/s.",
            "",
        ]
    for failed in results.get("failed", []):
        lines += [f"{failed['name']}: **failed**, `{failed['error'].splitlines()[0]}`", ""]
    if results["full"]:
        lines += [
            "| recipe | epochs | training time | test accuracy | time to 90% test accuracy | first epoch at 90% val |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for run in results["trainer"]:
            reached = f"{run['seconds_to_target']:.1f} s" if run["seconds_to_target"] is not None else "not reached"
            lines.append(
                f"| {run['name']} | {run['epochs']} | {run['train_seconds']:.1f} s | "
                f"{_accuracy(run['test_accuracy'])} | {reached} | {run['first_epoch_val_at_target'] or '-'} |"
            )
        lines.append("")
    return "\n".join(lines)
