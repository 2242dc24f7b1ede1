"""The serving targets, checked against small hand-made results."""

from benchmarks import report
from benchmarks.targets import check_targets, images_in_flight, limit_at, photo_ceiling
from tests.benchmarks.sample_results import row, sample_results


def test_targets_say_met_missed_and_by_how_much():
    targets = {t["target"]: t for t in check_targets(sample_results())}
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
    results = sample_results()
    two_passes = {"layout": "2 passes x 1 thread", "batch_size": 32, "images_per_s": 300.0, "in_flight": 64}
    older = {"layout": "2 passes x 1 thread", "batch_size": 16, "images_per_s": 280.0}  # no in_flight: 2 x 16
    results["limit"]["sweep"] += [two_passes, older]
    results["limit"]["best"] = two_passes
    assert images_in_flight(older) == 32
    assert limit_at(results["limit"]["sweep"], 32) is older
    assert limit_at(results["limit"]["sweep"], 8) is None
    targets = {t["target"]: t for t in check_targets(results)}
    limit = targets["cifar, 32 clients: >= 90% of the in-process limit at 32 images in flight"]
    assert limit["required"] == 252.0  # 90% of 280, not of the 300 that needs 64 images at once
    results["results"][1] = row("plain-fastapi", "cifar", 120.0, 900.0)  # 2.5x is 300: above the 280
    targets = {t["target"]: t for t in check_targets(results)}
    assert targets["cifar, 32 clients: >= 2.5x plain FastAPI"]["above_limit"] == 280.0
    assert "above_limit" not in targets["cifar, 32 clients: >= 1.3x LitServe (its best)"]  # 260 is below it
    results["targets"] = list(targets.values())
    text = report.serving_markdown(results)
    assert "required is above the model's ceiling here: no server could meet it" in text
    assert "With at most 32 images in flight" in text and "**280.0 images/s** at batch 16" in text


def test_gpu_targets_use_the_best_level():
    results = sample_results()
    results["settings"]["device"] = "cuda"
    results["results"] = [row("service", "cifar", 2500.0, 20.0, 64), row("service", "cifar", 9000.0, 400.0, 4, 64)]
    single, multi = check_targets(results)
    assert single["met"] is True and single["measured"] == 2500.0
    assert multi["met"] is False and multi["margin_pct"] == -10.0


def test_a_target_holds_only_if_it_holds_in_every_round_and_each_generator_has_its_own():
    results = sample_results()
    results["settings"].update(rounds=3, generators=["ours", "wrk"])
    results["results"] = [
        {**row("service", "cifar", rate, 200.0), "round": n, "generator": generator}
        for n, rate in ((1, 300.0), (2, 240.0), (3, 270.0))
        for generator in ("ours", "wrk")
    ] + [
        {**row("litserve", "cifar", 200.0, 180.0), "round": n, "generator": generator}
        for n in (1, 2, 3)
        for generator in ("ours", "wrk")
    ]  # fmt: skip
    targets = {t["target"]: t for t in check_targets(results)}
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


def test_the_best_litserve_configuration_of_each_round_is_the_peer():
    results = sample_results()
    results["results"] = [
        row("service", "cifar", 250.0, 200.0),
        row("litserve", "cifar", 150.0, 300.0),
        row("litserve-nofq", "cifar", 210.0, 150.0),  # the fastest LitServe: its rate and its p99 are the bar
        row("litserve-b16", "cifar", 180.0, 100.0),
    ]
    targets = {t["target"]: t for t in check_targets(results)}
    assert targets["cifar, 32 clients: >= 1.3x LitServe (its best)"]["required"] == 273.0  # 1.3 x 210
    assert targets["cifar, 32 clients: p99 no worse than LitServe's (ms)"]["required"] == 150.0


def test_one_client_and_64_image_targets_and_no_targets_for_a_kind_not_sent():
    results = sample_results()
    results["results"] = [
        row("service", "cifar", 40.0, 50.0, concurrency=1),  # p50 25 ms
        row("plain-fastapi", "cifar", 38.0, 52.0, concurrency=1),  # p50 26 ms
        row("service", "cifar", 90.0, 900.0, concurrency=1, images=64),
        row("service-nobatch", "cifar", 95.0, 800.0, concurrency=1, images=64),
        row("service-nobatch", "cifar", 95.0, 800.0, concurrency=4, images=64),  # no batching-on row at 4
    ]
    targets = {t["target"]: t for t in check_targets(results)}
    one = targets["cifar, 1 client: p50 no worse than plain FastAPI's (ms)"]
    assert one["met"] is True and one["measured"] == 25.0 and one["required"] == 26.0
    batching = targets["cifar, 64-image requests, 1 client: batching on >= off (images/s from the mean latency)"]
    assert batching["met"] is False and batching["measured"] == 142.22  # 64 images / 0.45 s, against 64 / 0.4
    assert batching["required"] == 160.0 and batching["margin_pct"] == -11.1
    # what the run did not send has no targets: no photos, no 32 clients, no batching-on row at 4 clients
    assert not [name for name in targets if "4 clients" in name or "32 clients" in name or name.startswith("photo")]


def test_the_photo_targets_are_read_against_the_photo_ceiling():
    results = sample_results()
    targets = {t["target"]: t for t in check_targets(results)}
    assert "above_limit" not in targets["photo, 32 clients: >= 3x plain FastAPI"]  # no photo decode cost: no ceiling
    results["limit"]["decode"]["photo"] = {"mean_bytes": 450_000, "load_image_ms": 10.0, "tutorial_decode_ms": 40.0}
    # 2 cores: 2 / 270 s of model + 10 ms of decode per photo = 17.4 core-ms: 114.9 photos/s
    assert round(photo_ceiling(results), 1) == 114.9
    targets = {t["target"]: t for t in check_targets(results)}
    assert targets["photo, 32 clients: >= 3x plain FastAPI"]["above_limit"] == 114.89  # 3 x 40 = 120 is above it
    results["targets"] = list(targets.values())
    assert "Photo ceiling: **114.9 photos/s** (computed, not measured)" in report.serving_markdown(results)
