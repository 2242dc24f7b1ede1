"""The model-free mode for real: the service behind the constant network on a real port, real uploads, the floor."""

import sys

import httpx
import pytest
import torch

from app.schemas import PredictResponse
from benchmarks import report, serving
from benchmarks.servers.catalog import FLOOR_NAME, server_specs
from benchmarks.servers.launch import LOOPBACK, start_server
from benchmarks.servers.model_free import constant_logits, constant_network
from models import Classifier, Preprocess, load_checkpoint
from models.inference import weights_layout
from tests.app.helpers import encode, files, picture, png


def _post(port: int, *named: tuple[str, bytes]) -> httpx.Response:
    return httpx.post(f"http://{LOOPBACK}:{port}/predict", files=files(*named), timeout=30)


def test_model_free_service_answers_the_constant_and_still_checks_uploads(tiny_checkpoint, tmp_path):
    spec = server_specs(sys.executable, tiny_checkpoint, "cpu", 8, 5.0, model_free=True)["service"]
    assert spec.command[1:3] == ("-m", "benchmarks.servers.model_free")
    with start_server(spec, tmp_path / "service.log") as server:
        first = _post(server.port, ("a.png", png(picture(48, 40, seed=0))))
        second = _post(server.port, ("b.jpg", encode(picture(300, 200, seed=7).rotate(90), "JPEG")))
        broken = _post(server.port, ("notes.png", b"this is not an image"))
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    answers = [PredictResponse.model_validate(r.json()) for r in (first, second)]  # every field, as the schema says
    (a,), (b,) = (answer.predictions for answer in answers)
    assert (a.filename, b.filename) == ("a.png", "b.jpg")
    assert a.model_dump(exclude={"filename"}) == b.model_dump(exclude={"filename"})  # two pictures, one answer
    expected = constant_logits(10).softmax(dim=0)  # the tiny checkpoint is uncalibrated: temperature 1
    assert a.label == answers[0].model.classes[0]
    assert a.probability == pytest.approx(float(expected[0]), abs=1e-6)
    assert [c.index for c in a.top_k] == list(range(len(a.top_k)))
    assert broken.status_code == 415 and "notes.png" in broken.json()["detail"]  # decoding stayed real


def test_the_floor_parses_the_form_and_answers_a_fixed_prediction_per_file(tiny_checkpoint, tmp_path):
    spec = server_specs(sys.executable, tiny_checkpoint, "cpu", 8, 5.0, model_free=True)[FLOOR_NAME]
    with start_server(spec, tmp_path / "floor.log") as server:
        two = _post(server.port, ("a.png", png()), ("b.png", b"never decoded"))
        none = httpx.post(f"http://{LOOPBACK}:{server.port}/predict", data={"other": "x"}, timeout=30)
    assert two.status_code == 200 and len(two.json()["predictions"]) == 2
    assert none.status_code == 422


def test_the_constant_network_keeps_the_shapes_and_the_layout_of_the_pass(tiny_checkpoint):
    checkpoint = load_checkpoint(tiny_checkpoint)
    network = constant_network(checkpoint).to(memory_format=torch.channels_last)
    assert weights_layout(network) == weights_layout(checkpoint.build_model().to(memory_format=torch.channels_last))
    classifier = Classifier(network, Preprocess(checkpoint.preprocess), torch.device("cpu"))
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    logits, features = classifier.logits_and_features(images)
    assert logits.shape == (3, 10) and features.shape == (3, 4096)
    assert torch.equal(classifier.logits(images), constant_logits(10).expand(3, -1))


def test_the_flag_adds_the_floor_skips_the_limit_and_keeps_the_real_results(tmp_path):
    args = serving.parse_args(["--model-free", "--servers", "service", "--out", str(tmp_path)])
    assert args.server_names == ["service", FLOOR_NAME] and args.no_limit
    assert serving.output_name(args) == "serving-model-free"
    assert serving.model_free_path(tmp_path / "serving-latency.png").name == "serving-latency-model-free.png"
    with pytest.raises(SystemExit):
        serving.parse_args(["--servers", FLOOR_NAME])  # the floor has no model to measure


def test_the_model_free_section_says_so_and_gives_requests_per_second():
    row = {
        "kind": "cifar", "images_per_request": 1, "concurrency": 8, "requests": 10, "errors": {},
        "latency_ms": {"p50": 2.0, "p95": 3.0, "p99": 4.0}, "server_cpu_cores": 1.0, "client_cpu_cores": 0.2,
    }  # fmt: skip
    results = {
        "command": "python -m benchmarks.serving --model-free",
        "machine": {"cpu": "test", "cpu_cores": 2, "memory_gib": 1, "gpu": None, "device": "cpu", "torch_threads": 2,
                    "python": "3.11", "packages": {}, "load_average_at_start": [0.1, 0.1, 0.1]},
        "settings": {"device": "cpu", "duration_s": 1, "warmup_s": 0.5, "max_batch_size": 32, "max_wait_ms": 5,
                     "upload_bytes": {"cifar": 2048}, "model_free": True},
        "limit": None,
        "results": [{**row, "server": "service", "requests_per_s": 500.0, "images_per_s": 500.0},
                    {**row, "server": FLOOR_NAME, "requests_per_s": 2000.0, "images_per_s": 2000.0}],
        "targets": [],
        "elapsed_s": 10.0,
    }  # fmt: skip
    text = report.serving_markdown(results)
    assert "forward pass replaced by a constant" in text
    assert "| this service | 8 | 500.0 | 25% | 500.0 |" in text  # requests/s, then the share of the floor's
    assert "| 1.00 | 2.00 |" in text  # one core at 500 requests/s: 2 ms of server CPU per request
    assert "#### Targets" not in text
