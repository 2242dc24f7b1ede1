"""The resumable training state, saved atomically beside the output checkpoint (when: training/state_saver.py).

``<output stem>.state.pt`` holds the model, EMA, optimizer, epoch, history and RNG states. It is our own
file, yet it is read with ``torch.load(weights_only=True)``: tensors and plain containers only, no
arbitrary unpickling. Everything in it is therefore kept to tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.files import atomic_write

STATE_FORMAT = "alexnet-train-state"
STATE_VERSION = 1
# Fields that may differ between a run and its resumption; any other difference is refused.
MAY_CHANGE = frozenset(
    {
        "resume",
        "progress",
        "compile",
        "download",
        "data_dir",
        "decode_workers",
        "cache",
        "device",
        "ood",
        "save_every_s",
        "stale_state",
    }
)


class StateError(Exception):
    """A state file that cannot be resumed from; the message says why."""


def state_path(output: str | Path) -> Path:
    """checkpoints/alexnet-cifar10.safetensors -> checkpoints/alexnet-cifar10.state.pt"""
    return Path(output).with_suffix(".state.pt")


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    version, words, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_gauss": [int(np_state["has_gauss"]), float(np_state["gauss"])],
        "python": [version, list(words), gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    has_gauss, gauss = state["numpy_gauss"]
    key = state["numpy_key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, state["numpy_pos"], has_gauss, gauss))
    version, words, python_gauss = state["python"]
    random.setstate((version, tuple(words), python_gauss))


def snapshot(state: dict[str, Any]) -> dict[str, Any]:
    """The file's content as of now: ``state`` with every tensor copied to host memory, and the RNG states.

    Copied, so that training can go on changing the live tensors while the copy is written.
    """
    copied = _to_host(state)
    return {"format": STATE_FORMAT, "version": STATE_VERSION, **copied, "rng": rng_state()}


def _to_host(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_host(v) for v in value)
    return value


def write_state(path: Path, full: dict[str, Any]) -> None:
    """Write a ``snapshot`` atomically (the previous file stays whole until the new one is complete)."""
    atomic_write(path, lambda f: torch.save(full, f))


def changed_settings(saved: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The settings of ``config`` a state file saved under ``saved`` cannot be resumed with, sorted."""
    return sorted(k for k in config if k not in MAY_CHANGE and saved.get(k) != config[k])


def load_state(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Read a state file and check that it belongs to this run's config."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise StateError(f"{path}: not a readable training state ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise StateError(f"{path}: not an alexnet training state file")
    if state.get("version") != STATE_VERSION:
        raise StateError(f"{path}: state version {state.get('version')} is not {STATE_VERSION}")
    saved = state["config"]
    changed = changed_settings(saved, config)
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {config[k]!r}" for k in changed)
        raise StateError(
            f"{path}: was saved by a run with other settings ({diffs}); rerun without --resume to start over"
        )
    return state
