"""The layout-and-precision comparison runs every candidate and writes what it measured."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import training_layout


def test_every_candidate_is_measured_in_every_round(tmp_path: Path) -> None:
    output = tmp_path / "layout.json"
    training_layout.main(
        ["--sizes", "64", "--batch-size", "4", "--rounds", "1", "--steps", "1", "--output", str(output)]
    )
    result = json.loads(output.read_text())
    rows = result["by_input_size"]["64"]
    assert set(rows) == {"contiguous fp32", "contiguous bf16", "channels_last fp32", "channels_last bf16"}
    assert all(len(row["images_per_s"]) == 1 and row["median"] > 0 for row in rows.values())
    assert result["machine"]["cpu_cores"] >= 1
