"""Targets, the generated Markdown section and the plot, from a small hand-made result."""

from benchmarks import report


def _row(server, kind, images_per_s, p99, concurrency=32, images=1):
    return {
        "server": server, "kind": kind, "images_per_request": images, "concurrency": concurrency,
        "requests": 100, "images_per_s": images_per_s, "requests_per_s": images_per_s / images, "errors": {},
        "error_count": 0, "latency_ms": {"p50": p99 / 2, "p95": p99 * 0.9, "p99": p99, "mean": p99 / 2, "max": p99},
        "server_cpu_cores": 1.8, "client_cpu_cores": 0.1,
    }  # fmt: skip


def _results():
    rows = [
        _row("service", "cifar", 250.0, 200.0),
        _row("plain-fastapi", "cifar", 90.0, 900.0),
        _row("litserve", "cifar", 200.0, 180.0),
        _row("service", "photo", 120.0, 400.0),
        _row("plain-fastapi", "photo", 40.0, 1500.0),
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


def test_targets_say_met_missed_and_by_how_much():
    targets = {t["target"]: t for t in report.check_targets(_results())}
    limit = targets["cifar, 32 clients: >= 90% of the in-process limit at 32 images in flight"]
    assert limit["met"] is True and limit["required"] == 243.0
    plain = targets["cifar, 32 clients: >= 2.5x plain FastAPI"]
    assert plain["met"] is True and plain["margin_pct"] == 11.1  # 250 against 225
    litserve = targets["cifar, 32 clients: >= 1.3x LitServe (its best)"]
    assert litserve["met"] is False and litserve["margin_pct"] == -3.8  # 250 against 260
    p99 = targets["cifar, 32 clients: p99 no worse than LitServe's (ms)"]
    assert p99["met"] is False and p99["margin_pct"] == -11.1  # 200 ms against 180 ms
    assert targets["photo, 32 clients: >= 3x plain FastAPI"]["met"] is True
    assert targets["photo, 32 clients: no slower than LitServe (its best)"]["met"] is None  # nothing measured


def test_the_limit_is_read_at_the_images_32_clients_can_have_in_flight():
    results = _results()
    two_passes = {"layout": "2 passes x 1 thread", "batch_size": 32, "images_per_s": 300.0, "in_flight": 64}
    older = {"layout": "2 passes x 1 thread", "batch_size": 16, "images_per_s": 280.0}  # no in_flight: 2 x 16
    results["limit"]["sweep"] += [two_passes, older]
    results["limit"]["best"] = two_passes
    assert report.images_in_flight(older) == 32
    assert report.limit_at(results["limit"]["sweep"], 32) is older
    assert report.limit_at(results["limit"]["sweep"], 8) is None
    targets = {t["target"]: t for t in report.check_targets(results)}
    limit = targets["cifar, 32 clients: >= 90% of the in-process limit at 32 images in flight"]
    assert limit["required"] == 252.0  # 90% of 280, not of the 300 that needs 64 images at once
    results["results"][1] = _row("plain-fastapi", "cifar", 120.0, 900.0)  # 2.5x is 300: above the 280
    targets = {t["target"]: t for t in report.check_targets(results)}
    assert targets["cifar, 32 clients: >= 2.5x plain FastAPI"]["above_limit"] == 280.0
    assert "above_limit" not in targets["cifar, 32 clients: >= 1.3x LitServe (its best)"]  # 260 is below it
    results["targets"] = list(targets.values())
    text = report.serving_markdown(results)
    assert "required is above the in-process limit: no server could meet it here" in text
    assert "With at most 32 images in flight" in text and "**280.0 images/s** at batch 16" in text


def test_gpu_targets_use_the_best_level():
    results = _results()
    results["settings"]["device"] = "cuda"
    results["results"] = [_row("service", "cifar", 2500.0, 20.0, 64), _row("service", "cifar", 9000.0, 400.0, 4, 64)]
    single, multi = report.check_targets(results)
    assert single["met"] is True and single["measured"] == 2500.0
    assert multi["met"] is False and multi["margin_pct"] == -10.0


def test_markdown_has_every_table_and_names_a_failed_server(tmp_path):
    results = _results()
    results["targets"] = report.check_targets(results)
    text = report.serving_markdown(results, plot_path=tmp_path / "images" / "plot.png", relative_to=tmp_path)
    assert "| this service | 32 | 250.0 |" in text
    assert "**LitServe was not measured**: did not start." in text
    assert "**missed** (-3.8%)" in text
    assert "![latency against throughput](images/plot.png)" in text


def test_replace_section_is_idempotent_and_keeps_the_prose(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nprose before\n")
    report.replace_section(doc, "serving", "first")
    report.replace_section(doc, "serving", "second")
    text = doc.read_text()
    assert text.count("<!-- serving:begin -->") == 1
    assert "second" in text and "first" not in text and "prose before" in text


def test_plot_is_written(tmp_path):
    path = tmp_path / "plot.png"
    report.plot_latency_throughput(_results(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_target_holds_only_if_it_holds_in_every_round_and_each_generator_has_its_own():
    results = _results()
    results["settings"].update(rounds=3, generators=["ours", "wrk"])
    results["results"] = [
        {**_row("service", "cifar", rate, 200.0), "round": n, "generator": generator}
        for n, rate in ((1, 300.0), (2, 240.0), (3, 270.0))
        for generator in ("ours", "wrk")
    ] + [
        {**_row("litserve", "cifar", 200.0, 180.0), "round": n, "generator": generator}
        for n in (1, 2, 3)
        for generator in ("ours", "wrk")
    ]  # fmt: skip
    targets = {t["target"]: t for t in report.check_targets(results)}
    litserve = targets["cifar, 32 clients: >= 1.3x LitServe (its best)"]
    assert litserve["measured"] == [300.0, 240.0, 270.0] and litserve["required"] == [260.0] * 3
    assert litserve["met"] is False and litserve["margin_pct"] == -7.7  # round 2: 240 against 260
    assert [r["met"] for r in litserve["rounds"]] == [True, False, True]
    assert targets["cifar, 32 clients: >= 1.3x LitServe (its best) [wrk]"]["met"] is False
    results["targets"] = list(targets.values())
    text = report.serving_markdown(results)
    assert "| 300.0 / 240.0 / 270.0 | 260.0 / 260.0 / 260.0 | **missed** in 1 of 3 (worst -7.7%) |" in text
    assert "| this service | 32 | 2 | wrk | 240.0 |" in text  # every round's row, with its round and generator
    # the spread: median 270, lowest 240, highest 300 = 22% of the median
    assert "| cifar x1 | 32 | ours | this service | 270.0 | 240.0 - 300.0 | 22% |" in text


def test_the_servers_order_rotates_each_round():
    from benchmarks.serving import server_order

    names = ["service", "litserve", "plain-fastapi"]
    assert [server_order(names, n)[0] for n in (1, 2, 3, 4)] == ["service", "litserve", "plain-fastapi", "service"]


def test_the_best_litserve_configuration_of_each_round_is_the_peer():
    results = _results()
    results["results"] = [
        _row("service", "cifar", 250.0, 200.0),
        _row("litserve", "cifar", 150.0, 300.0),
        _row("litserve-nofq", "cifar", 210.0, 150.0),  # the fastest LitServe: its rate and its p99 are the bar
        _row("litserve-b16", "cifar", 180.0, 100.0),
    ]
    targets = {t["target"]: t for t in report.check_targets(results)}
    assert targets["cifar, 32 clients: >= 1.3x LitServe (its best)"]["required"] == 273.0  # 1.3 x 210
    assert targets["cifar, 32 clients: p99 no worse than LitServe's (ms)"]["required"] == 150.0


def test_one_client_and_64_image_targets_and_no_targets_for_a_kind_not_sent():
    results = _results()
    results["results"] = [
        _row("service", "cifar", 40.0, 50.0, concurrency=1),  # p50 25 ms
        _row("plain-fastapi", "cifar", 38.0, 52.0, concurrency=1),  # p50 26 ms
        _row("service", "cifar", 90.0, 900.0, concurrency=1, images=64),
        _row("service-nobatch", "cifar", 95.0, 800.0, concurrency=1, images=64),
        _row("service-nobatch", "cifar", 95.0, 800.0, concurrency=4, images=64),  # no batching-on row at 4
    ]
    targets = {t["target"]: t for t in report.check_targets(results)}
    one = targets["cifar, 1 client: p50 no worse than plain FastAPI's (ms)"]
    assert one["met"] is True and one["measured"] == 25.0 and one["required"] == 26.0
    batching = targets["cifar, 64-image requests, 1 client: batching on >= off (images/s from the mean latency)"]
    assert batching["met"] is False and batching["measured"] == 142.22  # 64 images / 0.45 s, against 64 / 0.4
    assert batching["required"] == 160.0 and batching["margin_pct"] == -11.1
    assert not [name for name in targets if "4 clients" in name or name.startswith("photo")]


def test_a_saved_run_is_reported_again_with_the_current_targets(tmp_path):
    import json

    from benchmarks.serving import main

    saved = _results()
    saved["targets"] = []  # as if written by an older report
    (tmp_path / "serving.json").write_text(json.dumps(saved))
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    out = tmp_path / "out"
    results = main(["--from-results", str(tmp_path / "serving.json"), "--out", str(out), "--update-doc", str(doc)])
    assert any(t["target"].startswith("cifar, 32 clients: >= 2.5x") for t in results["targets"])
    assert json.loads((out / "serving.json").read_text())["targets"] == results["targets"]
    assert "#### Targets" in doc.read_text() and (out / "serving.png").exists()
