""".dockerignore keeps data, checkpoints, virtualenvs, git history and caches out of the build context.

The rules are applied here the way Docker documents them (Go filepath.Match per path segment, `**` for any
number of segments, a pattern also excludes everything under a matching folder, the last matching line
wins, `!` re-includes). verification/container_smoke.sh checks the same with a real podman build.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include, pattern = line.startswith("!"), line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace("\0/", "(?:.*/)?").replace("\0", ".*")
        rules.append((include, re.compile(f"{regex}(?:/.*)?")))
    return rules


def in_context(path: str) -> bool:
    sent = True
    for include, pattern in ignore_rules():
        if pattern.fullmatch(path):
            sent = include
    return sent


@pytest.mark.parametrize(
    "path",
    [
        "data/cifar-10-batches-py/data_batch_1",
        "data/cifar-jpeg/train/cat/0001.jpg",
        "checkpoints/alexnet-cifar10.safetensors",
        "checkpoints/alexnet-cifar10.state.pt",
        "alexnet-cifar10.safetensors",
        ".venv/bin/python",
        "venv/lib/python3.11/site-packages/torch/__init__.py",
        ".git/HEAD",
        ".git",
        "models/__pycache__/alexnet.cpython-311.pyc",
        "app/__pycache__/main.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/0.6/123",
        "runs/2024-01-01/metrics.json",
        "tests/conftest.py",
        "benchmarks/results.json",
        "docs/scaling.md",
        "verification/container_smoke.sh",
        "alexnet_service.egg-info/PKG-INFO",
        "training/checkpoints/oops.safetensors",
        "Dockerfile",
    ],
)
def test_left_out_of_the_build_context(path: str) -> None:
    assert not in_context(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "models/alexnet.py",
        "training/train.py",
        "app/main.py",
        "app/routes/predict.py",
        "scripts/train_if_missing.sh",
    ],
)
def test_sent_to_the_build(path: str) -> None:
    assert in_context(path)
