"""verification/gpu_results.py: the GPU check's SUMMARY.md from what its steps left, and the rehearsal's check.

The whole harness runs for real in CI (verification/rehearse_gpu_check.sh); these are the cases a passing
rehearsal does not show: a step out of time, partial rows, a results folder with a file missing or too many.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from verification.gpu_results import OUT_FILES, STEP_FILES, STEPS, check, summary


def _steps(work: Path, rows: list[tuple[str, str, str, str]]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "steps.tsv").write_text("".join("\t".join(row) + "\n" for row in rows))


def test_the_summary_says_what_ran_out_of_time_and_shows_the_rows_measured_before(tmp_path: Path) -> None:
    _steps(tmp_path, [("install", "0", "30", ""), ("train-default", "124", "300", "stopped at its time limit"),
                      ("serving", "stopped", "12", "the check was stopped during this step"),
                      ("cuda-tests", "skipped", "0", "no time left (3 s of the budget)")])  # fmt: skip
    (tmp_path / "train-default.log").write_text("epoch 7/30  loss 1.1  acc 60.00%  val 58.00%  30000 img/s  1.5 s\n")
    row = {"server": "service", "kind": "cifar", "images_per_request": 1, "concurrency": 32, "images_per_s": 4100.0,
           "requests_per_s": 4100.0, "latency_ms": {"p50": 7.5, "p99": 12.25}, "error_count": 0}  # fmt: skip
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "serving.partial.json").write_text(json.dumps({"limit": None, "results": [row]}))
    text = summary(tmp_path, "cuda", 480)
    assert "| train-default | out of time (what it wrote is kept) | 300 |" in text
    assert "| serving | stopped | 12 | the check was stopped during this step |" in text
    assert "| cuda-tests | skipped | 0 | no time left (3 s of the budget) |" in text
    assert "last epoch logged: `epoch 7/30  loss 1.1  acc 60.00%  val 58.00%" in text
    assert "(partial: the rows measured before the step ended)" in text
    assert "service, cifar x1, 32 clients: 4100.0 images/s, 4100.0 requests/s, p50 7.5 ms, p99 12.2 ms" in text
    assert "## cuda-tests" not in text  # a skipped step has no numbers


def _results(out: Path, statuses: dict[str, str], leave_out: str = "") -> None:
    work = out.with_name(out.name + "-work")
    _steps(work, [(name, status, "1", "") for name, status in statuses.items()])
    for path in (p for step in STEPS for p in STEP_FILES.get(step, ()) if p != leave_out):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text("{}")
    out.mkdir()
    for name in OUT_FILES[:-1]:
        (out / name).write_text("x")
    with tarfile.open(out / "results.tar.gz", "w:gz") as archive:
        archive.add(work, arcname=".")


def test_the_rehearsal_check_passes_whole_results_and_names_what_is_wrong(tmp_path: Path) -> None:
    _results(tmp_path / "good", dict.fromkeys(STEPS, "0"))
    assert check(tmp_path / "good") == []
    _results(tmp_path / "bad", {**dict.fromkeys(STEPS, "0"), "serving": "124"}, leave_out="cuda-tests.xml")
    (tmp_path / "bad" / "metrics.json").unlink()
    for extra in range(3):
        (tmp_path / "bad" / f"extra-{extra}.log").write_text("x")
    problems = check(tmp_path / "bad")
    assert "metrics.json is missing from" in " ".join(problems)
    assert "step serving: 124 (exit 0 expected)" in problems
    assert "step cuda-tests left no cuda-tests.xml" in problems
    assert not any("files in" in p for p in problems)  # 5 + 3 extra = 8: still within what comes back
    (tmp_path / "bad" / "extra-3.log").write_text("x")
    assert any(p.startswith("9 files in") for p in check(tmp_path / "bad"))
