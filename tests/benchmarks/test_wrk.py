"""The second load generator: wrk for real against the bare floor on a real port, and its result line parsed."""

import sys

import pytest

from benchmarks.loadgen import LoadSpec
from benchmarks.payloads import Upload, multipart_body
from benchmarks.servers.catalog import FLOOR_NAME, server_specs
from benchmarks.servers.launch import LOOPBACK, start_server
from benchmarks.wrk import RESULT, parse_output, run_wrk, wrk_installed
from tests.app.helpers import picture, png


def test_the_result_line_gives_answers_errors_and_latencies_in_ms():
    output = f"Running 2s test\n{RESULT} 1000 2000000 10 0 3 0 2 1500.0 4000.0 9000.5 1800.0 12000.0\n"
    summary = parse_output(output, images_per_request=4)
    assert summary.requests == 990 and summary.images == 3960  # the 10 non-2xx answers are not counted
    assert summary.window_s == 2.0 and summary.requests_per_s == 495.0
    assert summary.errors == {"non_2xx": 10, "read": 3, "timeout": 2}
    assert summary.latency_ms == {"p50": 1.5, "p95": 4.0, "p99": 9.0005, "mean": 1.8, "max": 12.0}


def test_no_result_line_is_an_error_that_shows_the_output():
    with pytest.raises(RuntimeError, match="unable to connect"):
        parse_output("unable to connect to 127.0.0.1:1 Connection refused", 1)


@pytest.mark.skipif(not wrk_installed(), reason="needs wrk (Debian: apt-get install wrk)")
def test_wrk_drives_a_real_server_with_the_rotating_bodies(tiny_checkpoint, tmp_path):
    spec = server_specs(sys.executable, tiny_checkpoint, "cpu", 8, 5.0, model_free=True)[FLOOR_NAME]
    uploads = [Upload(f"{i}.png", "image/png", png(picture(seed=i))) for i in range(3)]
    bodies = tuple(multipart_body([u])[0] for u in uploads)
    content_type = multipart_body(uploads)[1]
    with start_server(spec, tmp_path / "floor.log") as server:
        good = run_wrk(LoadSpec(LOOPBACK, server.port, bodies, content_type, 1, 4, 0.0, 1.0))
        missing = run_wrk(LoadSpec(LOOPBACK, server.port, bodies, content_type, 1, 2, 0.0, 1.0, path="/nowhere"))
    assert good.summary.requests > 10 and good.summary.error_count == 0
    assert good.summary.latency_ms["p50"] > 0 and good.client_cpu_s > 0
    assert missing.summary.requests == 0 and missing.summary.errors["non_2xx"] > 10  # every 404 counted as one
