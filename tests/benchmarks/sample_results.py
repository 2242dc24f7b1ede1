"""A small hand-made serving result: what the report and the targets tests read."""


def row(server, kind, images_per_s, p99, concurrency=32, images=1):
    return {
        "server": server, "kind": kind, "images_per_request": images, "concurrency": concurrency,
        "requests": 100, "images_per_s": images_per_s, "requests_per_s": images_per_s / images, "errors": {},
        "error_count": 0, "latency_ms": {"p50": p99 / 2, "p95": p99 * 0.9, "p99": p99, "mean": p99 / 2, "max": p99},
        "server_cpu_cores": 1.8, "client_cpu_cores": 0.1,
    }  # fmt: skip


def sample_results():
    rows = [
        row("service", "cifar", 250.0, 200.0),
        row("plain-fastapi", "cifar", 90.0, 900.0),
        row("litserve", "cifar", 200.0, 180.0),
        row("service", "photo", 120.0, 400.0),
        row("plain-fastapi", "photo", 40.0, 1500.0),
        {"server": "litserve", "failed": "did not start"},
    ]
    return {
        "command": "python -m benchmarks.serving",
        "machine": {"cpu": "test", "cpu_cores": 2, "memory_gib": 1, "gpu": None, "device": "cpu", "torch_threads": 2,
                    "python": "3.11", "packages": {"torch": "2"}, "load_average_at_start": [0.1, 0.1, 0.1]},
        "settings": {"device": "cpu", "duration_s": 8, "warmup_s": 2, "max_batch_size": 32, "max_wait_ms": 5,
                     "upload_bytes": {"cifar": 2048, "photo": 450_000}},
        "limit": {"sweep": [{"batch_size": 32, "images_per_s": 270.0, "ms_per_batch": 118.5}],
                  "best": {"batch_size": 32, "images_per_s": 270.0},
                  "decode": {"cifar": {"mean_bytes": 2048, "load_image_ms": 0.1, "tutorial_decode_ms": 0.6}}},
        "results": rows,
        "elapsed_s": 100.0,
    }  # fmt: skip
