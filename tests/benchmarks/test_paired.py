"""The paired benchmark: every level measured on both trees, the first of a pair alternating, and a whole short run
of two real model-free services (this tree twice) written to its JSON and table."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.paired import main, pairs
from tests.helpers import REPO


def test_every_level_once_a_round_and_the_first_of_a_pair_alternates() -> None:
    order = pairs(rounds=3, levels=[32, 64], generators=["ours", "wrk"])
    assert Counter((number, level, generator) for number, level, generator, _ in order) == {
        (number, level, generator): 1 for number in (1, 2, 3) for level in (32, 64) for generator in ("ours", "wrk")
    }
    for number in (1, 2, 3):  # within a round, never the same tree first twice running
        firsts = [second_first for n, *_, second_first in order if n == number]
        assert all(a != b for a, b in itertools.pairwise(firsts))
    first_of = {(n, level, generator): second_first for n, level, generator, second_first in order}
    for level, generator in ((32, "ours"), (64, "wrk")):  # and each level goes the other way in the next round
        assert first_of[1, level, generator] != first_of[2, level, generator] != first_of[3, level, generator]


def test_two_services_measured_in_turn(tmp_path: Path) -> None:
    argv = ["--tree", f"a={REPO}", "--tree", f"b={REPO}", "--rounds", "1", "--clients", "2", "--generators", "ours"]
    result = main([*argv, "--duration", "0.5", "--warmup", "0.2", "--out", str(tmp_path)])
    (pair,) = result["pairs"]
    assert pair["round"] == 1 and pair["clients"] == 2 and pair["generator"] == "ours"
    for tree in ("a", "b"):
        assert pair[tree]["requests"] > 0 and pair[tree]["error_count"] == 0
    assert json.loads((tmp_path / "paired.json").read_text())["pairs"] == result["pairs"]
    table = (tmp_path / "paired.md").read_text()
    assert "| round | clients | generator | a | b | b/a |" in table and "| 1 | 2 | ours |" in table


def test_exactly_two_trees() -> None:
    with pytest.raises(SystemExit, match="exactly two"):
        main(["--tree", f"a={REPO}"])
