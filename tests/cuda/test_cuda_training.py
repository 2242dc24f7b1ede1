"""Training on CUDA: a bf16-autocast, channels_last step learns, and the real trainer runs on the GPU.

All CUDA tests live in tests/cuda/. Marked ``cuda``: skipped without a GPU (run them with ``pytest -m cuda``
or scripts/gpu_check.sh).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import AlexNet, Preprocess, PreprocessSpec, load_checkpoint
from tests.training.helpers import learnable_split, tiny_config, write_image_folder
from training.train import main

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_bf16_channels_last_step_learns_a_fixed_batch():
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = AlexNet(num_classes=10).to(device).to(memory_format=torch.channels_last)
    preprocess = Preprocess(PreprocessSpec()).to(device)
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.arange(32, device=device) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(30):
        x = preprocess(images).contiguous(memory_format=torch.channels_last)  # (32, 3, 224, 224)
        assert x.is_contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)  # (32, 10)
        assert logits.dtype == torch.bfloat16
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0]  # memorises 32 images: the step really trains


def test_trainer_trains_on_cuda(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 6)):
        for name in ("cat", "dog", "ship"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    output = tmp_path / "out" / "model.safetensors"
    command = [sys.executable, "-m", "training", "--data-dir", str(tmp_path / "data"), "--device", "cuda",
               "--epochs", "2", "--batch-size", "16", "--input-size", "64", "--val-size", "0",
               "--output", str(output), "--no-download", "--no-progress"]  # fmt: skip
    subprocess.run(command, check=True, timeout=300)
    metrics = json.loads((output.parent / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda")
    assert load_checkpoint(output).build_model().state_dict().keys() == AlexNet(num_classes=3).state_dict().keys()


@pytest.mark.parametrize("compile_model", [False, True])
def test_cuda_run_writes_a_cpu_loadable_checkpoint(tmp_path: Path, compile_model: bool) -> None:
    """bf16 autocast, channels_last, cudnn autotuning and optionally torch.compile; the file loads on a CPU."""
    write_image_folder(tmp_path / "data", "train", learnable_split(48, seed=1))
    write_image_folder(tmp_path / "data", "test", learnable_split(8, seed=2))
    config = tiny_config(tmp_path / "data", tmp_path / "a.safetensors", device="cuda", compile=compile_model,
                         epochs=3, batch_size=32, lr=0.02)  # fmt: skip
    metrics = main(config)
    assert metrics["device"].startswith("cuda")
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    ckpt = load_checkpoint(config.output)
    assert all(t.device.type == "cpu" for t in ckpt.state_dict.values())
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in ckpt.state_dict)
