"""A short real training run on generated, learnable data: loss falls, checkpoint and report are usable."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from models import CIFAR10_MEAN, Classifier, load_checkpoint, save_checkpoint
from tests.helpers import TEST_INPUT_SIZE
from tests.training.helpers import CLASSES, first_steps_on_a_fixed_batch, learnable_split, tiny_config
from training import abstention
from training import evaluate as evaluate_module
from training import train as train_module
from training.config import TrainConfig
from training.data import load_dataset
from training.distributed import World
from training.evaluate import default_output_dir
from training.report import CONFUSION_FILE, CURVES_FILE, METRICS_FILE, PER_CLASS_FILE, RELIABILITY_FILE
from training.state_file import StateError, load_state, state_path
from training.train import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_loss_falls_and_the_model_learns(trained: tuple[TrainConfig, dict[str, Any]]) -> None:
    _, metrics = trained
    first, last = metrics["history"][0], metrics["history"][-1]
    assert last["train_loss"] < 0.85 * first["train_loss"]
    assert metrics["test_accuracy"] > 0.6  # chance is 0.25
    assert metrics["test_accuracy_single_view"] > 0.6  # without flip TTA: what the service delivers
    assert metrics["val_accuracy"] > 0.6
    assert metrics["train_images"] == 4 * 48 - 32 and metrics["val_images"] == 32 and metrics["test_images"] == 32


def test_checkpoint_loads_and_describes_the_run(trained: tuple[TrainConfig, dict[str, Any]]) -> None:
    config, metrics = trained
    ckpt = load_checkpoint(config.output)
    assert ckpt.classes == tuple(sorted(CLASSES))
    assert ckpt.preprocess.input_size == TEST_INPUT_SIZE and ckpt.preprocess.mean == CIFAR10_MEAN
    assert ckpt.config["optimizer"] == "sgd" and ckpt.config["epochs"] == 2
    assert ckpt.metrics["test_accuracy"] == metrics["test_accuracy"]
    assert ckpt.metrics["weights"] == "ema"
    assert not any(key.startswith(("module.", "_orig_mod.")) for key in ckpt.state_dict)  # unwrapped
    model = ckpt.build_model()
    assert model(torch.zeros(1, 3, TEST_INPUT_SIZE, TEST_INPUT_SIZE)).shape == (1, len(CLASSES))


def test_report_and_state_are_written_beside_the_checkpoint(trained: tuple[TrainConfig, dict[str, Any]]) -> None:
    config, metrics = trained
    folder = Path(config.output).parent
    for name in (CONFUSION_FILE, PER_CLASS_FILE, CURVES_FILE, RELIABILITY_FILE):
        assert (folder / name).read_bytes().startswith(PNG_MAGIC)
    saved = json.loads((folder / METRICS_FILE).read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert saved["config"]["recipe"] == "default"
    assert len(saved["confusion_matrix"]) == len(CLASSES) and len(saved["history"]) == 2
    state = load_state(state_path(config.output), config.to_dict())
    assert state["epoch"] == 2 and set(state["rng"]) >= {"torch", "numpy_key", "python"}


def test_state_file_is_read_without_unpickling_objects(tmp_path: Path, trained: tuple[TrainConfig, Any]) -> None:
    config, _ = trained
    evil = tmp_path / "evil.state.pt"
    torch.save({"format": "alexnet-train-state", "payload": logging.getLogger("x")}, evil)  # an arbitrary object
    with pytest.raises(StateError, match="not a readable training state"):
        load_state(evil, config.to_dict())
    with pytest.raises(StateError, match=r"other settings \(epochs: 2 -> 3\)"):
        load_state(state_path(config.output), replace(config, epochs=3).to_dict())


def test_evaluate_cli_recomputes_the_same_metrics(trained: tuple[TrainConfig, dict[str, Any]], tmp_path: Path) -> None:
    config, metrics = trained
    evaluate_module.cli(["--checkpoint", config.output, "--data-dir", config.data_dir, "--device", "cpu",
                         "--output-dir", str(tmp_path)])  # fmt: skip
    recomputed = json.loads((tmp_path / METRICS_FILE).read_text())
    got, want = recomputed["calibration"], metrics["calibration"]
    assert got["temperature"] == want["temperature"]  # the checkpoint's temperature, and the same numbers from it
    for key in ("test_ece_before", "test_ece_after", "test_nll_before", "test_nll_after"):
        assert got[key] == pytest.approx(want[key], abs=1e-5), key  # the batch sizes differ from training's
    assert recomputed["test_accuracy"] == metrics["test_accuracy"]
    assert recomputed["test_accuracy_single_view"] == metrics["test_accuracy_single_view"]
    assert recomputed["confusion_matrix"] == metrics["confusion_matrix"]
    assert recomputed["tta"] is True  # as trained
    assert recomputed["config"] == config.to_dict()
    for name in (CONFUSION_FILE, PER_CLASS_FILE, CURVES_FILE, RELIABILITY_FILE):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)


def test_the_run_is_calibrated_on_its_validation_split(trained: tuple[TrainConfig, dict[str, Any]]) -> None:
    config, metrics = trained
    calibration = load_checkpoint(config.output).calibration
    assert calibration["temperature"] == metrics["calibration"]["temperature"] > 0
    assert calibration["fitted_on"] == "validation split (32 images held out from train)"
    assert calibration["val_nll_after"] <= calibration["val_nll_before"]  # the fit minimises the validation NLL
    assert len(metrics["calibration"]["bins_after"]) == 15 and "bins_after" not in calibration


def test_evaluate_calibrates_a_checkpoint_from_before_calibration(
    trained: tuple[TrainConfig, dict[str, Any]], tmp_path: Path
) -> None:
    """A version-1 checkpoint: --calibrate holds out the same validation split again and fits the same number."""
    config, metrics = trained
    old = tmp_path / "old.safetensors"
    ckpt = load_checkpoint(config.output)
    save_checkpoint(
        old,
        ckpt.build_model(),
        model_args=ckpt.model_args,
        classes=ckpt.classes,
        preprocess=ckpt.preprocess,
        config=ckpt.config,
    )  # no calibration: temperature 1
    assert load_checkpoint(old).temperature == 1.0
    evaluate_module.cli(["--checkpoint", str(old), "--data-dir", config.data_dir, "--device", "cpu", "--calibrate",
                         "--output-dir", str(tmp_path / "report")])  # fmt: skip
    calibrated = load_checkpoint(old)
    assert calibrated.temperature == pytest.approx(metrics["calibration"]["temperature"], rel=1e-6)
    assert calibrated.weights_sha256 == ckpt.weights_sha256  # the weights are untouched


def test_evaluate_cli_reports_a_broken_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as info:
        evaluate_module.cli(["--checkpoint", str(broken), "--data-dir", str(tmp_path)])
    assert info.value.code == 1
    assert "not a readable safetensors file" in caplog.text


def test_train_cli_reports_data_problems_without_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        cli(["--data-dir", str(tmp_path / "absent"), "--no-download", "--output", str(tmp_path / "x.safetensors")])
    assert info.value.code == 1
    assert "does not exist: expected the CIFAR-10 python version" in caplog.text


def test_evaluate_never_overwrites_the_runs_own_report(trained: tuple[TrainConfig, dict[str, Any]]) -> None:
    config, _ = trained
    checkpoint = Path(config.output)
    assert default_output_dir(checkpoint, calibrate=False) == checkpoint.parent / "evaluation"  # a report is there
    assert default_output_dir(checkpoint, calibrate=True) == checkpoint.parent  # the checkpoint itself changed
    assert default_output_dir(checkpoint.parent / "new" / "x.safetensors", calibrate=False).name == "new"


def test_the_fixed_batch_steps_of_the_cuda_test_run_on_the_cpu() -> None:
    """tests/cuda/test_cuda_training.py's steps, three of them at 64 px in float32: the code path, rehearsed."""
    steps = first_steps_on_a_fixed_batch(torch.device("cpu"), input_size=TEST_INPUT_SIZE, steps=3)
    assert len(steps["losses"]) == 3 and all(0 < loss < 2 for loss in steps["losses"])
    assert steps["logits_dtypes"] == {torch.float32}  # bf16 autocast is CUDA's (training.train.training_dtype)
    assert steps["run"].model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_bf16_on_a_cpu_only_when_asked_and_native(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert train_module.training_dtype(cuda) is torch.bfloat16
    assert train_module.training_dtype(cpu) is None and train_module.training_dtype(cpu, cpu_bf16=False) is None
    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(train_module, "native_cpu_bf16", lambda native=native: native)
        assert train_module.training_dtype(cpu, cpu_bf16=True) is expected


def test_the_run_is_never_silent_whatever_stderr_is(
    learnable_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No terminal here (the bar is off): a progress line at least every PROGRESS_EVERY_S (0 here: every step),
    and each end-of-run step named when it starts and timed when it ends."""
    monkeypatch.setattr(train_module, "PROGRESS_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="training")
    config = tiny_config(learnable_folder, tmp_path / "quiet.safetensors", epochs=1)
    train_module.main(config)
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1, step ")]
    assert len(steps) >= 2 and re.search(r"loss [\d.]+, \d+ img/s, training ends in about \d+ s$", steps[0])
    for step in ("calibration on the", "test metrics on the", "the out-of-distribution comparison", "the checkpoint"):
        started = [r.getMessage() for r in caplog.records if r.getMessage().startswith(step)]
        assert len(started) == 2 and started[0].endswith("...") and re.search(r": [\d.]+ s$", started[1]), step


def test_the_mahalanobis_statistics_are_fitted_on_a_bounded_sample(
    trained: tuple[TrainConfig, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = trained
    classifier = Classifier.from_checkpoint(load_checkpoint(config.output), torch.device("cpu"))
    splits = {"train": learnable_split(10), "val": learnable_split(3, seed=1), "test": learnable_split(3, seed=2)}
    fitted_on = []
    real_fit = abstention.FeatureGaussian.fit

    def counted_fit(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Any:
        fitted_on.append(sorted(labels.tolist()))
        return real_fit(features, labels, num_classes)

    monkeypatch.setattr(abstention, "FIT_SAMPLE", 12)
    monkeypatch.setattr(abstention.FeatureGaussian, "fit", counted_fit)
    abstention.fit_abstention(classifier, 1.0, splits, {}, len(CLASSES))
    assert fitted_on == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]]  # 12 of the 40, three of each class


def test_a_time_budget_sizes_the_run_from_its_first_steps(
    learnable_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The speed the probe measures decides the epochs: a budget of 2.4 epochs' worth at that speed gives 2."""
    caplog.set_level(logging.INFO, logger="training")
    config = tiny_config(learnable_folder, tmp_path / "budget.safetensors", epochs=9, val_size=0)
    train_images = 4 * 48  # learnable_folder's training split (conftest), no validation split held out
    monkeypatch.setattr(train_module, "probe_speed", lambda config, world, dataset: 100.0)  # images/s
    metrics = train_module.main(replace(config, time_budget_s=2.4 * train_images / 100.0))
    assert len(metrics["history"]) == 2
    saved = load_checkpoint(config.output).config
    assert saved["epochs"] == 2 and saved["time_budget_s"] == pytest.approx(4.608)
    assert "time budget 5 s at 100 images/s (5 steps measured here): 2 epoch(s) of 192 images" in caplog.text


def test_a_state_file_of_other_settings_does_not_size_a_budgeted_run(
    learnable_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As `make serve` runs it: a first stand-in's state file beside the output is set aside, and the new run is
    sized by its own budget, not by the sizes the first one chose."""
    output = tmp_path / "stand-in.safetensors"
    train_module.main(tiny_config(learnable_folder, output, epochs=1, train_subset=80, val_size=0))
    caplog.set_level(logging.INFO, logger="training")
    monkeypatch.setattr(train_module, "probe_speed", lambda config, world, dataset: 100.0)  # images/s
    config = tiny_config(learnable_folder, output, lr=0.02, val_size=0, resume=True, stale_state="restart")
    metrics = train_module.main(replace(config, time_budget_s=2.4 * 4 * 48 / 100.0))  # 2 epochs of all 192
    assert len(metrics["history"]) == 2 and load_checkpoint(output).config["train_subset"] is None
    assert "2 epoch(s) of 192 images" in caplog.text


def test_the_probe_measures_real_steps(learnable_folder: Path, tmp_path: Path) -> None:
    config = tiny_config(learnable_folder, tmp_path / "probe.safetensors")
    dataset = load_dataset(config)
    rate = train_module.probe_speed(config, World(torch.device("cpu")), dataset)
    assert 1 < rate < 100_000  # images/s of the real step at 64 px on a CPU
