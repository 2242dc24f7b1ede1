"""The same model served by LitServe, through the project's own decoding and inference pass.

Each upload goes through ``models.load_image`` (reduced JPEG decoding, centre square, 32x32), the batch
through the project's one inference pass (``models.Classifier``), exactly as this service does; LitServe batches
requests with the same maximum size and wait as the service. What differs is the serving machinery:
LitServe's HTTP process hands each parsed request to an inference worker process through a queue,
and the worker decodes, batches and predicts.

With ``--model-free`` (the benchmark's) the network's forward pass is a constant (``benchmarks.servers.model_free``),
installed in the inference worker, where the model is built; decoding, preprocessing and batching stay as they are.

Run: python -m benchmarks.servers.litserve_server --checkpoint ckpt.safetensors --port 8001
"""

from __future__ import annotations

import argparse
import itertools
import logging

import litserve as ls
import numpy as np
import torch
from fastapi import HTTPException
from PIL import Image

from benchmarks.servers import model_free
from models import Classifier, ImageError, load_checkpoint, load_image

logger = logging.getLogger(__name__)


class AlexNetAPI(ls.LitAPI):
    """Uploads in the multipart field ``file`` (one or many) -> {"predictions": [...]}, in order."""

    def __init__(
        self,
        checkpoint_path: str,
        max_batch_size: int,
        batch_timeout: float,
        model_free: bool = False,
        decode: str = "project",
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.checkpoint_path = checkpoint_path
        self.model_free = model_free
        self.decode = decode
        self.max_images = max_batch_size  # images per forward pass, as the service counts them

    def setup(self, device: str) -> None:
        if self.model_free:
            model_free.install()  # here, in the inference worker's own process, before the model is built
        checkpoint = load_checkpoint(self.checkpoint_path)
        self.classes = checkpoint.classes
        # The service's own pass (channels_last; bf16 autocast on CUDA), so that only the serving machinery differs.
        self.classifier = Classifier.from_checkpoint(checkpoint, torch.device(device))
        self.source_size = checkpoint.preprocess.source_size
        for size in (1, self.max_images):  # warm up, as the service does, so the first requests are not slower
            self.predict([np.zeros((size, self.source_size, self.source_size, 3), dtype=np.uint8)])

    def decode_request(self, request) -> np.ndarray:  # request: starlette FormData
        uploads = request.getlist("file")
        if not uploads:
            raise HTTPException(422, "no file uploaded in the field 'file'")
        try:
            return np.stack([self._decode(u.file) for u in uploads])  # (k, s, s, 3)
        except (ImageError, OSError) as exc:
            raise HTTPException(400, str(exc)) from exc

    def _decode(self, file) -> np.ndarray:
        if self.decode == "pil":  # LitServe's own examples' way: open, RGB, resize; no crop, no reduced JPEG decode
            with Image.open(file) as image:
                return np.asarray(image.convert("RGB").resize((self.source_size, self.source_size)))
        return load_image(file.read(), size=self.source_size)

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs  # requests may carry several images each: predict concatenates them

    def predict(self, requests: list[np.ndarray]) -> list[tuple[list[int], list[float]]]:
        counts = [len(images) for images in requests]
        pixels = torch.from_numpy(np.concatenate(requests)).permute(0, 3, 1, 2)  # (N, 3, s, s) uint8
        # Many-image requests: forward passes of at most max_images, as the service bounds its passes.
        best = self.classifier.predict(pixels, batch_size=self.max_images).probabilities.max(dim=1)  # (N,) each
        indices, probabilities = best.indices.tolist(), best.values.tolist()
        bounds = np.cumsum([0, *counts])
        return [(indices[a:b], probabilities[a:b]) for a, b in itertools.pairwise(bounds)]

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: tuple[list[int], list[float]]) -> dict[str, list[dict[str, object]]]:
        indices, probabilities = output
        return {
            "predictions": [
                {"label": self.classes[i], "probability": p} for i, p in zip(indices, probabilities, strict=True)
            ]
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=32, help="requests per batch (default: 32)")
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0, help="longest wait to fill a batch")
    parser.add_argument(
        "--fast-queue",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ZeroMQ between the HTTP and inference processes, LitServe's advice above ~100 requests/s",
    )
    parser.add_argument("--model-free", action="store_true", help="the network's forward pass is a constant")
    parser.add_argument(
        "--decode",
        choices=["project", "pil"],
        default="project",
        help="project: models.load_image, as the service; pil: Image.open, convert, resize, as LitServe's examples",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    api = AlexNetAPI(args.checkpoint, args.max_batch_size, args.batch_timeout_ms / 1000.0, args.model_free, args.decode)
    server = ls.LitServer(api, accelerator=args.device, devices=1, workers_per_device=1, fast_queue=args.fast_queue)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False, access_log=False)


if __name__ == "__main__":
    main()
