"""Turn a serving run's results into the targets check, a Markdown section and a latency/throughput plot.

A model-free run (``settings.model_free``: every forward pass a constant) gets its own section: what was
replaced, and per server the requests/s, the server CPU per request and the share of the bare floor's rate.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from benchmarks.targets import TARGET_CLIENTS, find_row, images_in_flight, limit_at, photo_ceiling

SERVER_LABELS = {
    "service": "this service",
    "service-nobatch": "this service, batching off",
    "plain-fastapi": "plain FastAPI",
    "litserve": "LitServe",
    "litserve-nofq": "LitServe, fast_queue off",
    "litserve-pil": "LitServe, its own PIL decode",
    "litserve-b16": "LitServe, batch 16",
    "bare-fastapi": "bare FastAPI (floor)",
}
FLOOR = "bare-fastapi"
MODEL_FREE_NOTE = (
    "**Model-free run: in every server the forward pass replaced by a constant** (fixed logits of the right "
    "shape, returned at once), so these are the servers' own costs per request, not the model's. HTTP, "
    "multipart parsing, image decoding, preprocessing, thread hops, batching, response building and middleware "
    "are real. The bare FastAPI floor lets Starlette's form parser read the upload and answers a fixed "
    "prediction: no decode, no model, the framework's own cost. No in-process limit and no targets here: "
    "they are about the model (see the real-model section)."
)


def num(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def machine_line(machine: dict) -> str:
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU"
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    return (
        f"{machine['cpu']}, {machine['cpu_cores']} cores, {machine['memory_gib']} GiB{gpu}; device "
        f"`{machine['device']}`, torch threads {machine['torch_threads']}; Python {machine['python']}; "
        f"{packages}. Load average (1, 5, 15 min) at start: {machine['load_average_at_start']}."
    )


def _scenario_tables(results: dict) -> list[str]:
    lines = []
    rows = [r for r in results["results"] if "failed" not in r]
    keys = sorted({(r["kind"], r["images_per_request"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for kind, images in keys:
        size = results["settings"]["upload_bytes"][kind] / 1024
        what = "32x32 CIFAR PNGs" if kind == "cifar" else "3000x2000 JPEGs"
        lines += [
            f"#### {what} (about {size:,.0f} KB each), {images} per request",
            "",
            f"| server | clients{_run_columns(results)[0]} | images/s | requests/s | p50 ms | p95 ms | p99 ms "
            "| errors | server CPU (cores) | client CPU (cores) |",
            f"| --- | ---:{_run_columns(results)[1]} | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        cells = [r for r in rows if (r["kind"], r["images_per_request"]) == (kind, images)]
        for r in sorted(cells, key=_cell_order):
            lat = r["latency_ms"]
            errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
            lines.append(
                f"| {SERVER_LABELS[r['server']]} | {r['concurrency']}{_run_cells(results, r)} | "
                f"{num(r['images_per_s'])} | {num(r['requests_per_s'])} | "
                f"{num(lat['p50'])} | {num(lat['p95'])} | {num(lat['p99'])} | "
                f"{errors} | {num(r['server_cpu_cores'], 2)} | {num(r['client_cpu_cores'], 2)} |"
            )
        lines.append("")
    failed = [r for r in results["results"] if "failed" in r]
    for r in failed:
        lines += [f"**{SERVER_LABELS[r['server']]} was not measured**: {r['failed']}.", ""]
    return lines


def _multi(results: dict) -> tuple[bool, bool]:
    """(several rounds, several load generators): the tables get a column for each that varies."""
    settings = results["settings"]
    return settings.get("rounds", 1) > 1, len(settings.get("generators", ["ours"])) > 1


def _run_columns(results: dict) -> tuple[str, str]:
    rounds, generators = _multi(results)
    return (" | round" * rounds + " | generator" * generators, " | ---:" * rounds + " | ---" * generators)


def _run_cells(results: dict, row: dict) -> str:
    rounds, generators = _multi(results)
    return f" | {row.get('round', 1)}" * rounds + f" | {row.get('generator', 'ours')}" * generators


def _cell_order(row: dict) -> tuple:
    server = list(SERVER_LABELS).index(row["server"])
    return row["concurrency"], row.get("generator", "ours"), server, row.get("round", 1)


def _same_run(a: dict, b: dict) -> bool:
    return a.get("round", 1) == b.get("round", 1) and a.get("generator", "ours") == b.get("generator", "ours")


def _floor_share(rows: list[dict], row: dict) -> float | None:
    """A model-free row's requests/s as a share of the floor's, in the same round with the same generator."""
    floor = find_row(rows, FLOOR, row["kind"], row["images_per_request"], row["concurrency"])
    floor = [f for f in floor if _same_run(f, row) and f["requests_per_s"]]
    return row["requests_per_s"] / floor[0]["requests_per_s"] if floor else None


def _spread_tables(results: dict) -> list[str]:
    """Across rounds: each server's requests/s (median, lowest-highest), and for a model-free run its share of
    the floor in the worst and best round. Only for runs of more than one round."""
    if not _multi(results)[0]:
        return []
    rows = [r for r in results["results"] if "failed" not in r]
    model_free = results["settings"].get("model_free", False)
    lines = [
        f"#### Across the {results['settings']['rounds']} rounds",
        "",
        "| scenario | clients | generator | server | requests/s median | lowest - highest | spread |"
        + (" of the floor's, lowest - highest |" if model_free else ""),
        "| --- | ---: | --- | --- | ---: | ---: | ---: |" + (" ---: |" if model_free else ""),
    ]
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["kind"], r["images_per_request"], r["concurrency"], r.get("generator", "ours"), r["server"])
        cells.setdefault(key, []).append(r)
    for (kind, images, clients, generator, server), group in sorted(
        cells.items(), key=lambda item: (item[0][1], item[0][0], item[0][2], item[0][3], _cell_order(item[1][0]))
    ):
        rates = sorted(r["requests_per_s"] for r in group)
        median = rates[len(rates) // 2] if len(rates) % 2 else (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2
        spread = f"{100 * (rates[-1] - rates[0]) / median:.0f}%" if median else "-"
        line = (
            f"| {kind} x{images} | {clients} | {generator} | {SERVER_LABELS[server]} | {num(median)} | "
            f"{num(rates[0])} - {num(rates[-1])} | {spread} |"
        )
        if model_free:
            shares = [s for s in (_floor_share(rows, r) for r in group) if s is not None]
            line += f" {100 * min(shares):.0f}% - {100 * max(shares):.0f}% |" if shares else " - |"
        lines.append(line)
    return [*lines, ""]


def _per_request_cpu_ms(row: dict) -> float | None:
    """Server CPU milliseconds per answered request: the overhead that bounds requests/s once cores are busy."""
    return row["server_cpu_cores"] * 1000 / row["requests_per_s"] if row["requests_per_s"] else None


def _overhead_tables(results: dict) -> list[str]:
    """The model-free tables: requests/s first, per-request server CPU, and the rate as a share of the floor's."""
    lines = []
    rows = [r for r in results["results"] if "failed" not in r]
    keys = sorted({(r["kind"], r["images_per_request"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for kind, images in keys:
        size = results["settings"]["upload_bytes"][kind] / 1024
        what = "32x32 CIFAR PNGs" if kind == "cifar" else "3000x2000 JPEGs"
        lines += [
            f"#### Model-free, {what} (about {size:,.0f} KB each), {images} per request",
            "",
            f"| server | clients{_run_columns(results)[0]} | requests/s | of the floor's | images/s | p50 ms "
            "| p99 ms | errors | server CPU (cores) | server CPU ms per request |",
            f"| --- | ---:{_run_columns(results)[1]} | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        cells = [r for r in rows if (r["kind"], r["images_per_request"]) == (kind, images)]
        for r in sorted(cells, key=_cell_order):
            share = _floor_share(rows, r)
            errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
            lines.append(
                f"| {SERVER_LABELS[r['server']]} | {r['concurrency']}{_run_cells(results, r)} | "
                f"{num(r['requests_per_s'])} | "
                f"{'-' if share is None else f'{100 * share:.0f}%'} | {num(r['images_per_s'])} | "
                f"{num(r['latency_ms']['p50'])} | {num(r['latency_ms']['p99'])} | {errors} | "
                f"{num(r['server_cpu_cores'], 2)} | {num(_per_request_cpu_ms(r), 2)} |"
            )
        lines.append("")
    for r in (r for r in results["results"] if "failed" in r):
        lines += [f"**{SERVER_LABELS[r['server']]} was not measured**: {r['failed']}.", ""]
    return lines


def _limit_tables(limit: dict) -> list[str]:
    sizes = sorted({r["batch_size"] for r in limit["sweep"]})
    lines = [
        "#### The limit: preprocess + forward in-process on pre-decoded 32x32 images, images/s",
        "",
        "| layout \\ batch size | " + " | ".join(map(str, sizes)) + " |",
        "| --- |" + " ---: |" * len(sizes),
    ]
    for layout in dict.fromkeys(r.get("layout", "contiguous") for r in limit["sweep"]):
        by_size = {
            r["batch_size"]: r["images_per_s"] for r in limit["sweep"] if r.get("layout", "contiguous") == layout
        }
        lines.append(f"| {layout} | " + " | ".join(num(by_size.get(s)) for s in sizes) + " |")
    best = limit["best"]
    lines += [
        "",
        f"Best: **{num(best['images_per_s'])} images/s** at batch {best['batch_size']}, {best.get('layout', '')}"
        f" ({images_in_flight(best)} images in flight).",
        "",
    ]
    reachable = limit_at(limit["sweep"], TARGET_CLIENTS)
    if reachable is not None and reachable is not best:
        lines += [
            f"With at most {TARGET_CLIENTS} images in flight, all that {TARGET_CLIENTS} clients sending one image "
            f"each can give a server: **{num(reachable['images_per_s'])} images/s** at batch "
            f"{reachable['batch_size']}, {reachable.get('layout', '')}. The 90% target is read against this.",
            "",
        ]
    lines += [
        "#### Decoding, one thread, ms per image",
        "",
        "| upload | size | `models.load_image` (reduced decode to 32x32) "
        "| tutorial (full decode, Resize 224, ToTensor) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, cost in limit["decode"].items():
        lines.append(
            f"| {kind} | {cost['mean_bytes'] / 1024:,.0f} KB | {num(cost['load_image_ms'], 2)} | "
            f"{num(cost['tutorial_decode_ms'], 2)} |"
        )
    return [*lines, ""]


def _photo_ceiling_lines(results: dict) -> list[str]:
    ceiling = photo_ceiling(results)
    if ceiling is None:
        return []
    return [
        f"Photo ceiling: **{num(ceiling)} photos/s** (computed, not measured): {results['machine']['cpu_cores']} "
        "cores doing nothing but the reduced decode of each photo and its share of the limit's passes at "
        f"{TARGET_CLIENTS} images in flight; HTTP and the upload left out. The photo targets are read against it.",
        "",
    ]


def _targets_table(targets: list[dict]) -> list[str]:
    """One line per target; measured in several rounds, each round's figure and the worst margin."""
    lines = ["#### Targets", "", "| target | measured | required | result |", "| --- | ---: | ---: | --- |"]
    for t in targets:
        rounds = t.get("rounds", [t])
        if t["met"] is None:
            verdict = "not measured" + (" in every round" if len(rounds) > 1 else "")
        elif len(rounds) == 1:
            verdict = ("met" if t["met"] else "**missed**") + f" ({t['margin_pct']:+.1f}%)"
        else:
            missed = sum(1 for r in rounds if r["met"] is False)
            verdict = f"met in all {len(rounds)} rounds" if t["met"] else f"**missed** in {missed} of {len(rounds)}"
            verdict += f" (worst {t['margin_pct']:+.1f}%)"
        above = [r for r in rounds if "above_limit" in r]
        if above:
            where = "" if len(rounds) == 1 else f" in {len(above)} of {len(rounds)} rounds"
            verdict += f"; required is above the model's ceiling here{where}: no server could meet it"
        measured = " / ".join(num(r["measured"]) for r in rounds)
        required = " / ".join(num(r["required"]) for r in rounds)
        lines.append(f"| {t['target']} | {measured} | {required} | {verdict} |")
    return [*lines, ""]


def serving_markdown(results: dict, plot_path: Path | None = None, relative_to: Path | None = None) -> str:
    settings = results["settings"]
    model_free = settings.get("model_free", False)
    lines = [
        *([MODEL_FREE_NOTE, ""] if model_free else []),
        f"Measured on: {machine_line(results['machine'])}",
        "",
        f"Command: `{results['command']}` ({results['elapsed_s']:.0f} s). Each level: {settings['warmup_s']:g} s "
        f"warm-up, then {settings['duration_s']:g} s measured; closed loop (each client sends its next request "
        f"when the last is answered). Batching: up to {settings['max_batch_size']} images in forward passes at "
        f"once (the service by its own defaults, in its model workers' passes; LitServe in one batch), "
        f"{settings['max_wait_ms']:g} ms wait.",
        "",
    ]
    if results.get("limit"):
        lines += _limit_tables(results["limit"]) + _photo_ceiling_lines(results)
    lines += _overhead_tables(results) if model_free else _scenario_tables(results)
    lines += _spread_tables(results)
    if results["targets"]:
        lines += _targets_table(results["targets"])
    if plot_path is not None:
        link = os.path.relpath(plot_path, relative_to) if relative_to else str(plot_path)
        lines += [f"![latency against throughput]({link})", ""]
    return "\n".join(lines)


def replace_section(path: Path, name: str, content: str) -> None:
    """Put ``content`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` (appended if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{content.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def plot_latency_throughput(results: dict, path: Path) -> None:
    """p50 (solid) and p99 (dashed) latency against images/s, one line per server, one panel per upload kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["results"] if "failed" not in r and r["images_per_request"] == 1 and r["requests"]]
    kinds = sorted({r["kind"] for r in rows}) or ["cifar"]
    figure, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.8), squeeze=False)
    for axis, kind in zip(axes[0], kinds, strict=True):
        for index, server in enumerate(SERVER_LABELS):
            points = sorted(find_row(rows, server, kind, 1), key=lambda r: r["concurrency"])
            if not points:
                continue
            color = f"C{index}"
            x = [p["images_per_s"] for p in points]
            axis.plot(
                x, [p["latency_ms"]["p50"] for p in points], "o-", color=color, label=f"{SERVER_LABELS[server]} p50"
            )
            axis.plot(x, [p["latency_ms"]["p99"] for p in points], "x--", color=color, alpha=0.6, label="p99")
            for p in points:
                axis.annotate(
                    str(p["concurrency"]),
                    (p["images_per_s"], p["latency_ms"]["p50"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
        if kind == "cifar" and results.get("limit"):
            axis.axvline(
                results["limit"]["best"]["images_per_s"], color="gray", linestyle=":", label="in-process limit"
            )
        axis.set_yscale("log")
        axis.set_xlabel("throughput (images/s)")
        axis.set_ylabel("latency (ms, log scale)")
        axis.set_title(f"{kind}: one image per request (numbers: concurrent clients)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    machine = results["machine"]
    figure.suptitle(
        f"AlexNet serving, {machine['device']} on {machine['cpu_cores']} cores"
        + (f", {machine['gpu']}" if machine.get("gpu") else "")
        + (": model-free, forward pass replaced by a constant" if results["settings"].get("model_free") else ""),
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
