"""The command line: recipes, explicit flags over recipes, the data-dir environment variable, bad flags."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from models import DEFAULT_CHECKPOINT, INPUT_SIZE
from training.config import TrainConfig, parse_args, sized_to_budget
from training.train import lr_factor


def test_defaults_are_the_default_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALEXNET_DATA_DIR", raising=False)
    config = parse_args([])
    assert config == TrainConfig()
    assert (config.optimizer, config.input_size, config.output) == ("sgd", INPUT_SIZE, DEFAULT_CHECKPOINT)
    assert config.data_dir == "./data"


def test_seed_recipe_is_the_guides_recipe_and_flags_override_it() -> None:
    seed = parse_args(["--recipe", "seed"])
    assert (seed.optimizer, seed.lr, seed.batch_size, seed.epochs) == ("adam", 1e-3, 64, 5)
    assert not seed.normalize and not seed.flip and seed.crop_padding == 0
    assert seed.label_smoothing == 0 and seed.ema_decay == 0 and not seed.tta
    assert parse_args(["--recipe", "seed", "--epochs", "2", "--flip"]).epochs == 2
    assert parse_args(["--epochs", "2", "--recipe", "seed", "--flip"]).flip  # order does not matter


def test_the_cpu_recipe_is_the_stand_in_and_flags_override_it() -> None:
    cpu = parse_args(["--recipe", "cpu"])
    # Sized by its time budget on the machine, the automatic validation share.
    assert (cpu.input_size, cpu.train_subset, cpu.val_size, cpu.batch_size, cpu.lr) == (64, None, None, 128, 0.02)
    assert cpu.time_budget_s == 420
    assert cpu.optimizer == "sgd" and cpu.ema_decay > 0  # otherwise the default recipe
    by_hand = parse_args(["--recipe", "cpu", "--epochs", "8"])  # sizes given by hand replace the budget
    assert (by_hand.epochs, by_hand.time_budget_s) == (8, None)
    assert parse_args(["--recipe", "cpu-first", "--train-subset", "900"]).time_budget_s is None
    assert parse_args(["--recipe", "cpu", "--time-budget-s", "60"]).time_budget_s == 60
    first = parse_args(["--recipe", "cpu-first"])
    assert (first.time_budget_s, first.val_size, first.tta) == (40, 2000, False)


def test_the_device_vocabulary_is_the_services() -> None:
    assert [parse_args(["--device", name]).device for name in ("auto", "cpu", "cuda", "cuda:1")] == [
        "auto", "cpu", "cuda", "cuda:1"
    ]  # fmt: skip


def test_help_comes_from_the_fields(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--optimizer {sgd,adam}" in text and "--schedule {linear,cosine,constant}" in text
    assert "pixels: random crop after zero padding (0 = off) (default recipe: 4)" in text
    assert "--recipe {default,seed,cpu,cpu-first}" in text


def test_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXNET_DATA_DIR", "/datasets/cifar")
    assert parse_args([]).data_dir == "/datasets/cifar"
    assert parse_args(["--data-dir", "here"]).data_dir == "here"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs: must be a positive integer"),
        (["--epochs", "ten"], "invalid"),
        (["--device", "tpu"], "--device: must be auto (cuda when available), cpu, cuda or cuda:N, got tpu"),
        (["--init", "xavier"], "invalid choice: 'xavier'"),
        (["--recipe", "fast"], "invalid choice: 'fast'"),
        (["--ema-decay", "1.5"], "must be in [0, 1)"),
        (["--lr", "-1"], "must be 0 or more"),
        (["--source-size", "256", "--input-size", "64"], "larger than --input-size"),
        (["--input-size", "48"], "--input-size 48 is below 63, the smallest"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_flags_exit_2_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_entry_point_bad_flag_exits_2_without_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "training", "--batch-size", "-3"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "alexnet-train: error: argument --batch-size: must be a positive integer, got -3" in result.stderr
    assert "Traceback" not in result.stderr


def test_schedule_warms_up_then_decays() -> None:
    total, warmup = 100, 10
    assert lr_factor(0, total, warmup, "linear") == pytest.approx(0.01)
    assert lr_factor(5, total, warmup, "linear") == pytest.approx(0.505)
    assert lr_factor(10, total, warmup, "linear") == pytest.approx(1.0)
    assert lr_factor(55, total, warmup, "linear") == pytest.approx(0.5)
    assert lr_factor(99, total, warmup, "linear") == pytest.approx(1 / 90)
    assert lr_factor(55, total, warmup, "cosine") == pytest.approx(0.5)
    assert lr_factor(99, total, warmup, "cosine") < 0.001
    assert lr_factor(99, total, 0, "constant") == 1.0


def test_a_time_budget_buys_epochs_or_a_share_of_the_split() -> None:
    config = TrainConfig(time_budget_s=100.0, batch_size=64)
    assert (sized_to_budget(config, 50.0, 1_000).epochs, sized_to_budget(config, 50.0, 1_000).train_subset) == (5, None)
    part = sized_to_budget(config, 50.0, 10_000)  # 5,000 images: half an epoch
    assert (part.epochs, part.train_subset) == (1, 4_992)  # whole batches
    assert sized_to_budget(config, 0.1, 10_000).train_subset == 64  # at least one batch
    nearly_two = sized_to_budget(config, 18.0, 1_000)  # 1,800 images: two epochs over 896 (whole batches)
    assert (nearly_two.epochs, nearly_two.train_subset) == (2, 896)
    a_little_over_one = sized_to_budget(config, 12.0, 1_000)  # 1,200 images: one epoch over all, ending early
    assert (a_little_over_one.epochs, a_little_over_one.train_subset) == (1, None)
    assert sized_to_budget(replace(config, train_subset=300), 50.0, 1_000).train_subset is None
