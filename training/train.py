"""Train AlexNet on CIFAR-10 (or your own image folders) and write the checkpoint the service loads.

Run::

    python -m training --data-dir data --output checkpoints/alexnet-cifar10.safetensors   # one GPU or CPU
    torchrun --nproc_per_node=8 -m training --data-dir data                                # DDP, same code
    python -m training --recipe seed                                                       # the guide's recipe

The default recipe (SGD + Nesterov, warm-up then linear decay to zero, label smoothing, weight decay, an
EMA of the weights, crop + flip augmentation on the device, flip TTA) is aimed at >= 90% test accuracy in
about a minute on one H100 (expected, not yet measured; see docs/training.md for what was measured).
The whole dataset lives on the device as uint8; each batch is augmented there, then upsampled and
normalised by ``models.Preprocess``. No per-image Python in the loop.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from models import AlexNet, CheckpointError, Classifier, DeviceError, Preprocess, PreprocessSpec, save_checkpoint
from models.checkpoint import STAND_IN_RECIPES
from models.files import WriteError
from models.inference import autocast
from models.transforms import UNNORMALIZED
from training import distributed
from training.abstention import Judgement, judge
from training.augment import AugmentSpec, augment
from training.config import TrainConfig, parse_args, sized_to_budget
from training.data import load_dataset
from training.distributed import World
from training.ema import EMA
from training.init import init_weights
from training.logs import PROGRESS_EVERY_S, configure_logging, timed_step
from training.report import write_report
from training.split_metrics import SplitMetrics, fit_calibration, score_split, test_metrics
from training.splits import DataError, Dataset
from training.state_file import StateError, changed_settings, load_state, set_rng_state, state_path
from training.state_saver import StateSaver, Stopped, stop_on_signals

log = logging.getLogger(__name__)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up from 1/100, then the decay."""
    if step < warmup_steps:
        return 0.01 + 0.99 * step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # 0 -> 1 after warm-up
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # cosine


@dataclass
class Run:
    """Everything a training step touches."""

    config: TrainConfig
    world: World
    model: nn.Module  # the plain AlexNet: what is saved
    net: nn.Module  # what runs the forward pass: the model, maybe DDP- and/or compile-wrapped
    preprocess: Preprocess
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    augment: AugmentSpec
    loss_fn: nn.Module
    batch_size: int  # global, over all ranks
    steps_per_epoch: int

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema else self.model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also every CUDA device


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The same shuffled order on every rank (each takes its own stride of it), fixed by seed and epoch."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def training_dtype(device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """bf16 autocast on CUDA (float32's range: no loss scaling needed); float32 on a CPU, unless ``cpu_bf16``
    (--cpu-bf16) and the CPU computes bf16 natively.

    On a CPU without native bf16 (AVX512-BF16 or AMX) bf16 autocast trains 2.5-3.6x slower than float32,
    measured by ``python -m benchmarks.training_layout`` (docs/training.md); on the 2-core AMD EPYC with
    AVX512-BF16, one 64 px step of 128 images ran 35% faster in bf16 (357-367 images/s against 265-268).
    """
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_bf16 and native_cpu_bf16() else None


@functools.cache  # asked at every step; the hardware does not change
def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); torch's own probes, private ones."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def training_layout(device: torch.device) -> torch.memory_format:
    """channels_last on every device: the fastest layout measured for AlexNet training on CUDA and on a CPU.

    CPU (2-core Xeon, batch 64, 3 rounds): at 224 px 49.5-54.6 images/s against 37.3-39.5 contiguous, faster
    in every round; at 64 px 200 against 186 (median), faster in 2 rounds of 3: a tie within the noise.
    """
    return torch.channels_last


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment, preprocess, forward, backward, step, EMA for one uint8 batch; returns (logits, loss)."""
    x = run.preprocess(augment(images, run.augment))  # (B, 3, input_size, input_size) float
    x = x.contiguous(memory_format=training_layout(run.world.device))
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with autocast(run.world.device, training_dtype(run.world.device, run.config.cpu_bf16)):
        logits = run.net(x)  # (B, C)
    loss = run.loss_fn(logits.float(), labels)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    if run.ema:
        run.ema.update(run.model)
    return logits, loss


def train_one_epoch(run: Run, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> dict[str, float]:
    """One pass over this rank's shard; returns loss and accuracy over all ranks, images/s and seconds."""
    config, world, device = run.config, run.world, run.world.device
    # A stream of randomness per (epoch, rank): a resumed or distributed run draws the same numbers.
    torch.manual_seed(config.seed * 1_000_003 + epoch * 1_009 + world.rank)
    per_rank = run.batch_size // world.size
    order = epoch_order(len(labels), config.seed, epoch)[world.rank :: world.size]
    order = order[: run.steps_per_epoch * per_rank].to(device)  # drop the tail: equal steps on every rank
    run.net.train()
    totals = torch.zeros(3, device=device, dtype=torch.float64)  # loss sum, correct, count
    total_steps = config.epochs * run.steps_per_epoch
    warmup_steps = round(config.warmup_fraction * total_steps)
    bar = tqdm(
        total=run.steps_per_epoch,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        leave=False,
        disable=not (config.progress and world.is_main and sys.stderr.isatty()),
    )
    started = last_line = time.perf_counter()
    for step in range(run.steps_per_epoch):
        index = order[step * per_rank : (step + 1) * per_rank]
        y = labels[index]  # (B,)
        lr = config.lr * lr_factor(epoch * run.steps_per_epoch + step, total_steps, warmup_steps, config.schedule)
        logits, loss = train_step(run, images[index], y, lr)  # images[index]: uint8 (B, 3, S, S)
        with torch.no_grad():  # summed on the device: no host sync per step
            totals[0] += loss.detach() * len(y)
            totals[1] += (logits.argmax(1) == y).sum()
            totals[2] += len(y)
        bar.update()
        if not bar.disable and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4g}")
        if world.is_main and time.perf_counter() - last_line >= PROGRESS_EVERY_S:
            last_line = time.perf_counter()
            _log_progress(run, epoch, step + 1, loss.item(), last_line - started)
    bar.close()
    distributed.all_sum(totals, world)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    loss_sum, correct, count = totals.tolist()
    return {
        "train_loss": loss_sum / count,
        "train_accuracy": correct / count,
        "lr": lr,
        "images_per_second": count / seconds,
        "seconds": seconds,
    }


def _log_progress(run: Run, epoch: int, steps: int, loss: float, seconds: float) -> None:
    """A progress line (the bar shows only on a terminal): where the run is, how fast, and when it should end."""
    config = run.config
    rate = steps * run.batch_size / seconds  # images/s this epoch, all ranks
    steps_left = (config.epochs - epoch) * run.steps_per_epoch - steps
    log.info(
        "epoch %d/%d, step %d/%d: loss %.4f, %.0f img/s, training ends in about %.0f s",
        epoch + 1,
        config.epochs,
        steps,
        run.steps_per_epoch,
        loss,
        rate,
        steps_left * run.batch_size / rate,
    )


def validate(run: Run, val: tuple[torch.Tensor, torch.Tensor], num_classes: int) -> SplitMetrics:
    """The evaluated weights (EMA when used) on the validation split, over all ranks; flip TTA per the config."""
    classifier = Classifier(run.eval_model, run.preprocess, run.world.device)  # the pass the service runs
    (metrics,) = score_split(
        classifier, *val, num_classes, run.world, tta=run.config.tta, batch_size=run.config.batch_size
    )
    return metrics


def build_run(config: TrainConfig, world: World, dataset: Dataset) -> Run:
    seed_everything(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = AlexNet(num_classes=len(dataset.classes), dropout=config.dropout)
    if config.init == "he":
        init_weights(model)
    model = model.to(world.device)
    spec = PreprocessSpec() if config.normalize else UNNORMALIZED
    preprocess = Preprocess(replace(spec, source_size=config.source_size, input_size=config.input_size))
    if world.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    model = model.to(memory_format=training_layout(world.device))
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    net: nn.Module = DistributedDataParallel(model) if world.distributed else model
    if config.compile:
        net = torch.compile(net)
    batch_size = min(config.batch_size, len(dataset.train) // world.size * world.size)
    if batch_size == 0:
        raise DataError(f"{len(dataset.train)} training images cannot feed {world.size} ranks")
    if batch_size < config.batch_size:
        log.warning("batch size reduced to %d: the training split has only %d images", batch_size, len(dataset.train))
    if batch_size % world.size:
        raise DataError(f"--batch-size {batch_size} does not split evenly over {world.size} ranks")
    return Run(
        config=config,
        world=world,
        model=model,
        net=net,
        preprocess=preprocess.to(world.device),
        optimizer=optimizer,
        ema=EMA(model, config.ema_decay) if config.ema_decay else None,
        augment=AugmentSpec.from_config(config),
        loss_fn=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        batch_size=batch_size,
        steps_per_epoch=len(dataset.train) // batch_size,
    )


def restore(run: Run, path: Path) -> tuple[int, list[dict[str, Any]], float]:
    """Load the state file into the run; returns (completed epochs, history, training seconds so far)."""
    state = load_state(path, run.config.to_dict())
    if state["world_size"] != run.world.size:
        raise StateError(f"{path}: was saved by {state['world_size']} rank(s), this run has {run.world.size}")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.ema:
        run.ema.load_state_dict(state["ema"])
    set_rng_state(state["rng"])
    log.info("resuming from %s after epoch %d", path, state["epoch"])
    return state["epoch"], list(state["history"]), float(state["train_seconds"])


def restore_or_restart(run: Run, path: Path) -> tuple[int, list[dict[str, Any]], float]:
    """``restore``; with ``--stale-state restart``, a state file it refuses is kept aside and the run starts afresh
    (``make serve`` after a change of recipe, say, must not stop on a state file of the old one)."""
    try:
        return restore(run, path)
    except StateError as exc:
        if run.config.stale_state != "restart":
            raise
        stale = path.with_name(path.name + ".stale")
        if run.world.is_main:  # the other ranks refuse it too, from the file or, once moved, its absence
            os.replace(path, stale)
        log.warning("%s; --stale-state restart: starting afresh, the old file kept as %s", exc, stale)
        return 0, [], 0.0


def training_state(run: Run, epoch: int, history: list[dict[str, Any]], train_seconds: float) -> dict[str, Any]:
    """What the state file holds after ``epoch`` (live tensors: the saver copies them before training goes on)."""
    return {
        "config": run.config.to_dict(),
        "world_size": run.world.size,
        "epoch": epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "ema": run.ema.state_dict() if run.ema else None,
        "history": list(history),
        "train_seconds": train_seconds,
    }


def log_epoch(entry: dict[str, Any], epochs: int) -> None:
    val = f"  val {100 * entry['val_accuracy']:.2f}%" if entry.get("val_accuracy") is not None else ""
    log.info(
        "epoch %d/%d  loss %.4f  acc %.2f%%%s  %.0f img/s  %.1f s",
        entry["epoch"],
        epochs,
        entry["train_loss"],
        100 * entry["train_accuracy"],
        val,
        entry["images_per_second"],
        entry["seconds"],
    )


def fit(
    run: Run, dataset: Dataset, on_epoch_end: Callable[[int], None] | None
) -> tuple[list[dict[str, Any]], float, float]:
    """The epoch loop, from the last saved epoch when resuming; returns history, training and state-write seconds.

    The state file is written on ``training/state_saver.py``'s schedule; a SIGTERM or SIGINT stops the run after
    the epoch in progress, with that epoch's state written (``Stopped``).
    """
    config, world = run.config, run.world
    path = state_path(config.output)
    start, history, train_seconds = 0, [], 0.0
    if config.resume and path.is_file():
        start, history, train_seconds = restore_or_restart(run, path)
    elif config.resume:
        log.info("no state file %s: starting from scratch", path)
    images = torch.from_numpy(dataset.train.images).to(world.device)  # uint8 (N, 3, S, S), resident
    labels = torch.from_numpy(dataset.train.labels).to(world.device)  # (N,)
    val = (torch.from_numpy(dataset.val.images).to(world.device), torch.from_numpy(dataset.val.labels).to(world.device))
    saver = StateSaver(path, config.save_every_s)
    with stop_on_signals() as stop:
        for epoch in range(start, config.epochs):
            entry = {"epoch": epoch + 1, **train_one_epoch(run, images, labels, epoch)}
            train_seconds += entry["seconds"]
            if len(dataset.val):
                result = validate(run, val, len(dataset.classes))
                entry.update(val_loss=result.loss, val_accuracy=result.accuracy)
            history.append(entry)
            stopping = stop.agreed(world.device, world.distributed)
            if world.is_main:
                log_epoch(entry, config.epochs)
                if saver.due(last_epoch=epoch + 1 == config.epochs, stopping=stopping is not None):
                    saver.save(training_state(run, epoch + 1, history, train_seconds), wait=stopping is not None)
            distributed.barrier(world)
            if stopping is not None:
                raise Stopped(stopping, epoch + 1)
            if on_epoch_end:
                on_epoch_end(epoch + 1)
        saver.wait()
    return history, train_seconds, saver.seconds


PROBE_STEPS = 5  # timed training steps that measure this machine's speed for a time budget (after one untimed)


def size_to_budget(config: TrainConfig, world: World, dataset: Dataset) -> tuple[TrainConfig, Dataset]:
    """The epochs (or training subset) the time budget buys here: measured from a few steps of a throwaway run,
    or, when resuming, the ones the interrupted run chose (so that its state file still fits)."""
    saved = _saved_config(config)
    if saved is not None:
        sized = replace(config, epochs=saved["epochs"], train_subset=saved["train_subset"])
    else:
        rate = probe_speed(config, world, dataset)
        sized = sized_to_budget(config, rate, len(dataset.train))
        everything = f"{len(dataset.train):,}"
        images = f"{sized.train_subset:,} of the {everything}" if sized.train_subset else everything
        share = f"{sized.epochs} epoch(s) of {images} images"
        log.info(
            "time budget %.0f s at %.0f images/s (%d steps measured here): %s",
            config.time_budget_s,
            rate,
            PROBE_STEPS,
            share,
        )
    if sized.train_subset != config.train_subset:
        dataset = load_data(sized, world)
    return sized, dataset


def probe_speed(config: TrainConfig, world: World, dataset: Dataset) -> float:
    """Training images/s on this machine (all ranks): PROBE_STEPS timed steps of a throwaway run, after one untimed
    (its first-call costs). The run that trains is built afresh, from the same seed, after this."""
    run = build_run(config, world, dataset)
    per_rank = run.batch_size // world.size
    pick = np.arange(per_rank) % len(dataset.train)
    images = torch.from_numpy(dataset.train.images[pick]).to(world.device)  # uint8 (B, 3, S, S)
    labels = torch.from_numpy(dataset.train.labels[pick]).to(world.device)
    train_step(run, images, labels, config.lr * 0.01)
    _synchronize(world.device)
    started = time.perf_counter()
    for _ in range(PROBE_STEPS):
        train_step(run, images, labels, config.lr * 0.01)
    _synchronize(world.device)
    rate = torch.tensor([PROBE_STEPS * run.batch_size / (time.perf_counter() - started)], device=world.device)
    distributed.all_sum(rate, world)
    return float(rate) / world.size  # the ranks' mean: every rank sizes the run alike


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _saved_config(config: TrainConfig) -> dict[str, Any] | None:
    """The config of the interrupted run this one resumes, if any: the state file's, when only the sizes a budget
    chose differ (None if unreadable, or left by a run of other settings, which will not be resumed)."""
    path = state_path(config.output)
    if not (config.resume and path.is_file()):
        return None
    try:
        # mmap: only the small config is read, not the ~0.7 GB of tensors that resuming reads anyway
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["config"]
    except Exception:
        return None
    budget_chose = {"epochs", "train_subset"}
    return None if set(changed_settings(saved, config.to_dict())) - budget_chose else saved


def load_data(config: TrainConfig, world: World) -> Dataset:
    """Rank 0 reads first (and fills the decoded-image cache); the other ranks then read the cache."""
    if not world.is_main:
        distributed.barrier(world)
    dataset = load_dataset(config)
    if world.is_main:
        distributed.barrier(world)
    return dataset


def main(config: TrainConfig, on_epoch_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train, test, write the checkpoint and the report; returns the metrics (on every rank)."""
    world = distributed.start(config.device)
    if not world.is_main:
        logging.getLogger("training").setLevel(logging.WARNING)  # rank 0 speaks for the run
    try:
        started = time.perf_counter()
        dataset = load_data(config, world)
        if config.time_budget_s is not None:
            config, dataset = size_to_budget(config, world, dataset)
        run = build_run(config, world, dataset)
        if world.is_main:
            log.info(
                "%s on %s x%d: %d steps/epoch of %d images in %s, recipe %s",
                dataset.source,
                world.device,
                world.size,
                run.steps_per_epoch,
                run.batch_size,
                "bf16 autocast" if training_dtype(world.device, config.cpu_bf16) else "float32",
                config.recipe,
            )
            if config.recipe in STAND_IN_RECIPES:
                log.warning(
                    "recipe %s: a CPU stand-in, to have something to serve, not the real model (low test "
                    "accuracy: docs/training.md); the default recipe on a GPU is the real one",
                    config.recipe,
                )
            if world.distributed:
                log.info("DDP over %d ranks (%s backend)", world.size, torch.distributed.get_backend())
            if world.device.type == "cpu" and config.epochs * len(dataset.train) > 200_000:
                log.warning(
                    "training on the CPU: AlexNet at %d px trains at tens of images/s here; %d images x "
                    "%d epochs will take hours (see --train-subset, --epochs)",
                    config.input_size,
                    len(dataset.train),
                    config.epochs,
                )
        history, train_seconds, state_seconds = fit(run, dataset, on_epoch_end)
        classifier = Classifier(run.eval_model, run.preprocess, world.device)  # the pass the service runs
        with timed_step(log, f"calibration on the {len(dataset.val):,} validation images"):
            calibration = fit_calibration(classifier, dataset.val, config.batch_size)
        with timed_step(log, f"test metrics on the {len(dataset.test):,} test images"):
            tested = test_metrics(
                classifier, dataset.test, dataset.classes, world, calibration, config.tta, config.batch_size
            )
        metrics = {
            **tested,
            "val_accuracy": history[-1].get("val_accuracy") if history else None,
            "train_seconds": train_seconds,
            "state_write_seconds": state_seconds,
            "wall_seconds": time.perf_counter() - started,
            "images_per_second": sum(h["images_per_second"] * h["seconds"] for h in history) / max(train_seconds, 1e-9),
            "train_images": len(dataset.train),
            "val_images": len(dataset.val),
            "data": dataset.source,
            "device": str(world.device),
            "world_size": world.size,
            "batch_size": run.batch_size,
            "weights": "ema" if run.ema else "final",
            "history": history,
        }
        if world.is_main:  # the OOD comparison and the report's pictures: rank 0 alone, on the whole splits
            splits = {"train": dataset.train, "val": dataset.val, "test": dataset.test}
            with timed_step(log, "the out-of-distribution comparison and the abstention rule"):
                temperature = calibration.get("temperature", 1.0)
                judged = judge(classifier, temperature, splits, dataset.classes, config.ood, config.batch_size)
            with timed_step(log, "the checkpoint and the report"):
                finish(run, dataset, metrics, judged)
            log.info(
                "%.1f s from start to checkpoint: training %.1f s, state writes %.1f s (in the training "
                "thread), the rest data, evaluation, calibration and the report",
                time.perf_counter() - started,
                train_seconds,
                state_seconds,
            )
        distributed.barrier(world)
        return metrics
    finally:
        distributed.stop(world)


def finish(run: Run, dataset: Dataset, metrics: dict[str, Any], judged: Judgement) -> None:
    """Write the checkpoint (EMA weights when used, unwrapped module, with its calibration and abstention rule)
    and the report beside it."""
    output = Path(run.config.output)
    calibration = {k: v for k, v in metrics["calibration"].items() if not k.startswith("bins_")}
    if judged.comparison:
        metrics["abstention"] = judged.comparison
    sha = save_checkpoint(
        output,
        run.eval_model,
        model_args={"num_classes": len(dataset.classes), "dropout": run.config.dropout},
        classes=dataset.classes,
        preprocess=run.preprocess.spec,
        config=run.config.to_dict(),
        metrics=metrics,
        calibration=calibration,
        abstention=judged.rule,
        extras=judged.tensors,
    )
    report = {**metrics, "config": run.config.to_dict(), "weights_sha256": sha}
    write_report(output.parent, report, dataset.classes, judged.hardest)
    log.info(
        "test accuracy %.2f%% (%d images; %.2f%% without flip TTA, as served); checkpoint %s (sha256 %s…)",
        100 * metrics["test_accuracy"],
        metrics["test_images"],
        100 * metrics["test_accuracy_single_view"],
        output,
        sha[:12],
    )
    if "temperature" in calibration:
        log.info(
            "calibration: temperature %.3f; test ECE %.2f%% -> %.2f%%, NLL %.4f -> %.4f (15 bins, single view)",
            calibration["temperature"],
            100 * calibration["test_ece_before"],
            100 * calibration["test_ece_after"],
            calibration["test_nll_before"],
            calibration["test_nll_after"],
        )


def cli(argv: Sequence[str] | None = None) -> None:
    """``alexnet-train`` / ``python -m training``: a bad flag exits 2; a data, device or disk problem exits 1."""
    config = parse_args(argv)
    configure_logging()
    try:
        main(config)
    except (DataError, DeviceError, StateError, CheckpointError) as exc:
        log.error("%s", exc)
        sys.exit(1)
    except WriteError as exc:  # every file the trainer writes goes through atomic_write
        log.error("%s. Rerun with --resume once it can be written, to continue from the last saved epoch", exc)
        sys.exit(1)
    except Stopped as stopped:
        log.warning("%s, its state written: rerun with --resume to continue", stopped)
        sys.exit(128 + stopped.signum)
    except KeyboardInterrupt:
        log.error("interrupted: rerun with --resume to continue from the last saved epoch")
        sys.exit(130)
