"""The results of scripts/gpu_check.sh: SUMMARY.md from what its steps wrote, and the check of a rehearsal.

    python verification/gpu_results.py --work WORK --out OUT     # gpu_check.sh, after every step and on exit
    python verification/gpu_results.py --check OUT               # the CI rehearsal: every step passed, every file

The standard library only, run as a script: it must work on a host where the install step failed.
Each step's headline numbers are read from the files it writes (docs/gpu.md says where each goes in docs/).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

STEPS = (
    "install",
    "unpack-data",
    "train-default",
    "serving",
    "serving-model-free",
    "guide-and-seed",
    "cuda-tests",
    "serving-peers",
)
OUT_FILES = ("SUMMARY.md", "gpu_check.log", "metrics.json", "train.log", "report.html", "results.tar.gz")
MAX_OUT_FILES = 8  # what the device tool brings back from $OUT
# What each step leaves in the archive when it passed (the rehearsal checks them).
STEP_FILES = {
    "train-default": ("default/metrics.json", "default/report.html", "train-default.log"),
    "serving": ("serving/serving.json",),
    "serving-model-free": ("serving-model-free/serving-model-free.json",),
    "guide-and-seed": ("training/training.json", "training/runs/seed/train.log"),
    "cuda-tests": ("cuda-tests.xml",),
    "serving-peers": ("serving-peers/serving.json",),
}


def read_steps(work: Path) -> list[dict[str, str]]:
    """gpu_check.sh's steps.tsv: name, status (an exit code, skipped, stopped or not run), seconds, note."""
    path = work / "steps.tsv"
    if not path.exists():
        return []
    rows = csv.reader(io.StringIO(path.read_text()), delimiter="\t")
    return [dict(zip(("name", "status", "seconds", "note"), row, strict=False)) for row in rows if row]


def _json(path: Path) -> dict | None:
    for candidate in (path, path.with_name(path.stem + ".partial.json")):
        try:
            return json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
    return None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def train_default(work: Path) -> list[str]:
    metrics = _json(work / "default" / "metrics.json")
    if metrics is None:  # stopped or failed: the last epoch its log shows
        log = work / "train-default.log"
        epochs = re.findall(r"epoch \d+/\d+ .*", log.read_text()) if log.exists() else []
        return [f"no metrics.json; last epoch logged: `{epochs[-1]}`" if epochs else "no metrics.json, no epoch logged"]
    calibration, rule = metrics.get("calibration", {}), metrics.get("abstention") or {}
    kept = rule.get("score") or (f"none ({rule['refused']})" if "refused" in rule else "none")
    return [
        f"test accuracy **{_pct(metrics['test_accuracy'])}** (flip TTA), "
        f"{_pct(metrics.get('test_accuracy_single_view'))} single view, as served; "
        f"validation {_pct(metrics.get('val_accuracy'))}",
        f"{len(metrics['history'])} epochs, training {metrics['train_seconds']:.1f} s at "
        f"{metrics['images_per_second']:.0f} images/s, {metrics['wall_seconds']:.1f} s from start to checkpoint, "
        f"on {metrics.get('device')}",
        f"temperature {calibration.get('temperature', 1):.3f}, test ECE {_pct(calibration.get('test_ece_before'))} -> "
        f"{_pct(calibration.get('test_ece_after'))}; abstention score kept: {kept}",
    ]


def _serving_rows(results: dict, servers: set[str] | None = None) -> list[str]:
    lines = []
    for row in results.get("results", []):
        if servers and row["server"] not in servers:
            continue
        if "failed" in row:
            lines.append(f"{row['server']}: failed ({row['failed']})")
            continue
        latency = row["latency_ms"]
        lines.append(
            f"{row['server']}, {row['kind']} x{row['images_per_request']}, {row['concurrency']} clients: "
            f"{row['images_per_s']:.1f} images/s, {row['requests_per_s']:.1f} requests/s, p50 {latency['p50']:.1f} ms, "
            f"p99 {latency['p99']:.1f} ms, {row['error_count']} errors"
        )
    return lines


def serving(work: Path, folder: str, name: str) -> list[str]:
    results = _json(work / folder / f"{name}.json")
    if results is None:
        return ["no results"]
    lines = [] if "command" in results else ["(partial: the rows measured before the step ended)"]
    best = (results.get("limit") or {}).get("best")
    if best:
        lines.append(
            f"in-process limit: {best['images_per_s']:.1f} images/s ({best['layout']}, batch {best['batch_size']})"
        )
    return lines + _serving_rows(results)


def guide_and_seed(work: Path) -> list[str]:
    results = _json(work / "training" / "training.json")
    if results is None:
        return ["no results"]
    lines = []
    if results.get("guide"):
        lines.append(f"the guide's loop: {results['guide']['images_per_second']:.1f} images/s")
    for run in results.get("trainer", []):
        lines.append(
            f"{run['name']}: test accuracy {_pct(run['test_accuracy'])}, {run['images_per_second']:.0f} "
            f"images/s, training {run['train_seconds']:.1f} s, {run['epochs']} epochs"
        )
    lines += [f"{failed['name']}: failed, {failed['error'].splitlines()[0]}" for failed in results.get("failed", [])]
    if "speedup_same_batch" in results:
        lines.append(f"trainer (seed recipe) against the guide's loop: {results['speedup_same_batch']:.1f}x images/s")
    return lines


def cuda_tests(work: Path) -> list[str]:
    try:
        root = ElementTree.parse(work / "cuda-tests.xml").getroot()
    except (OSError, ElementTree.ParseError):
        return ["no cuda-tests.xml"]
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    lines = [f"{passed} passed, {counts['failures']} failed, {counts['errors']} errors, {counts['skipped']} skipped"]
    for case in suite.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            lines.append(f"failed: {case.get('name')}")
    return lines


HEADLINES = {
    "train-default": train_default,
    "serving": lambda work: serving(work, "serving", "serving"),
    "serving-model-free": lambda work: serving(work, "serving-model-free", "serving-model-free"),
    "guide-and-seed": guide_and_seed,
    "cuda-tests": cuda_tests,
    "serving-peers": lambda work: serving(work, "serving-peers", "serving"),
}


def summary(work: Path, device: str, budget_s: int) -> str:
    environment = (work / "environment.txt").read_text() if (work / "environment.txt").exists() else ""
    found = re.search(r"^python .*$", environment, re.MULTILINE)
    lines = [
        f"# GPU check on {device}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, budget {budget_s} s",
        "",
        f"`{found.group(0) if found else 'environment unknown'}`",
        "",
        "| step | result | seconds | note |",
        "| --- | --- | ---: | --- |",
    ]
    steps = read_steps(work)
    for step in steps:
        status = step["status"]
        result = {"0": "passed", "124": "out of time (what it wrote is kept)"}.get(status, status)
        result = f"failed (exit {status})" if result == status and status.isdigit() else result
        lines.append(f"| {step['name']} | {result} | {step['seconds']} | {step.get('note', '')} |")
    for step in steps:
        if step["name"] in HEADLINES and step["status"] not in ("not run", "skipped"):
            try:
                details = HEADLINES[step["name"]](work)
            except (KeyError, TypeError, ValueError) as exc:  # a file of an unexpected shape: say so, go on
                details = [f"could not read its results ({type(exc).__name__}: {exc})"]
            lines += ["", f"## {step['name']}", ""] + [f"- {line}" for line in details]
    lines += [
        "",
        "Everything else (logs, JSON, the test report): results.tar.gz. What this machine was:",
        "",
        "```",
        environment.strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_summary(work: Path, out: Path, device: str, budget_s: int) -> None:
    part = out / ".SUMMARY.md.part"
    part.write_text(summary(work, device, budget_s))
    part.replace(out / "SUMMARY.md")


def check(out: Path) -> list[str]:
    """What is wrong with a rehearsal's results, in sentences (none: all is well)."""
    problems = []
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if len(files) > MAX_OUT_FILES:
        problems.append(f"{len(files)} files in {out}, more than the {MAX_OUT_FILES} that come back: {files}")
    problems += [f"{name} is missing from {out}" for name in OUT_FILES if name not in files]
    if "results.tar.gz" not in files:
        return problems
    with tarfile.open(out / "results.tar.gz") as archive:
        names = {name.removeprefix("./") for name in archive.getnames()}
        steps_file = archive.extractfile("./steps.tsv") if "steps.tsv" in names else None
        steps_text = steps_file.read().decode() if steps_file else ""
    statuses = {row[0]: row[1] for row in csv.reader(io.StringIO(steps_text), delimiter="\t") if row}
    for step in STEPS:
        if statuses.get(step) != "0":
            problems.append(f"step {step}: {statuses.get(step, 'did not run')} (exit 0 expected)")
        problems += [f"step {step} left no {path}" for path in STEP_FILES.get(step, ()) if path not in names]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="gpu_check.sh's work folder")
    parser.add_argument("--out", type=Path, help="the folder SUMMARY.md goes to")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=int, default=0)
    parser.add_argument("--check", type=Path, metavar="OUT", help="check a rehearsal's results folder instead")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.check)
        for problem in problems:
            print(f"gpu check rehearsal: {problem}", file=sys.stderr)
        if not problems:
            print(f"gpu check rehearsal: every step passed, every file is in {args.check}")
        return 1 if problems else 0
    if not (args.work and args.out):
        parser.error("--work and --out are needed (or --check OUT)")
    write_summary(args.work, args.out, args.device, args.budget_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
