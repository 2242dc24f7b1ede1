"""The contract, fuzzed: schemathesis, the real command line, against the live service's own /openapi.json.

Every check (`--checks all`): no 5xx, every status and body as the schema says, every schema-valid request
accepted and every schema-violating one refused, with the two widenings tests/app/schemathesis.toml states.
A fixed seed keeps CI repeatable; ``st run`` without ``--seed`` explores further (docs/reliability.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.helpers import LiveServer, service_settings, with_rule

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = 50  # per operation; about 100 requests to /predict, a few seconds


@pytest.mark.parametrize("rule", [None, "msp"], ids=["no-abstention", "msp-abstention"])
def test_schemathesis_finds_nothing(tiny_checkpoint: Path, tmp_path: Path, rule: str | None) -> None:
    # Without a rule the schema has no `threshold`; with one it has, and it is fuzzed too.
    checkpoint = (
        tiny_checkpoint if rule is None else with_rule(tiny_checkpoint, tmp_path / "rule.safetensors", rule, 0.2)
    )
    server = LiveServer(service_settings(checkpoint, max_files=4)).start()
    try:
        command = [str(Path(sys.executable).with_name("st")), "--config-file", str(CONFIG), "run",
                   f"{server.url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
                   "--seed", "11", "--generation-database", "none", "--no-color"]  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", run.stdout).groups())  # type: ignore[union-attr]
    assert generated == passed > 2 * EXAMPLES  # /predict alone gets over EXAMPLES; the other operations add theirs
