"""The benchmark's servers: LitServe in each of its strong configurations, the same checkpoint for all."""

from pathlib import Path

from benchmarks.report import SERVER_LABELS
from benchmarks.servers.catalog import LITSERVE_VARIANTS, SERVER_NAMES, server_specs


def test_every_litserve_configuration_differs_from_the_first_in_its_own_setting_only():
    specs = server_specs("python", Path("c.safetensors"), "cpu", 32, 5.0)
    base = specs["litserve"].command
    assert {"--fast-queue", "--no-fast-queue", "--decode"}.isdisjoint(base)  # the defaults: fast_queue on, our decode
    changed = {name: [part for part in specs[name].command if part not in base] for name in LITSERVE_VARIANTS}
    assert changed == {
        "litserve-nofq": ["--no-fast-queue"],
        "litserve-pil": ["--decode", "pil"],
        "litserve-b16": ["16"],
    }
    assert all(name in SERVER_NAMES and name in SERVER_LABELS for name in LITSERVE_VARIANTS)


def test_model_free_reaches_every_litserve_configuration():
    specs = server_specs("python", Path("c.safetensors"), "cpu", 32, 5.0, model_free=True)
    assert all("--model-free" in specs[name].command for name in ("litserve", *LITSERVE_VARIANTS))
