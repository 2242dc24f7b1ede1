"""The generated Markdown section, the plot and a saved run's rebuild, from a small hand-made result."""

from benchmarks import report
from benchmarks.targets import check_targets
from tests.benchmarks.sample_results import sample_results


def test_markdown_has_every_table_and_names_a_failed_server(tmp_path):
    results = sample_results()
    results["targets"] = check_targets(results)
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
    report.plot_latency_throughput(sample_results(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_servers_order_rotates_each_round():
    from benchmarks.serving import server_order

    names = ["service", "litserve", "plain-fastapi"]
    assert [server_order(names, n)[0] for n in (1, 2, 3, 4)] == ["service", "litserve", "plain-fastapi", "service"]


def test_a_saved_run_is_reported_again_with_the_current_targets(tmp_path):
    import json

    from benchmarks.serving import main

    saved = sample_results()
    saved["targets"] = []  # as if written by an older report
    (tmp_path / "serving.json").write_text(json.dumps(saved))
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    out = tmp_path / "out"
    results = main(["--from-results", str(tmp_path / "serving.json"), "--out", str(out), "--update-doc", str(doc)])
    assert any(t["target"].startswith("cifar, 32 clients: >= 2.5x") for t in results["targets"])
    assert json.loads((out / "serving.json").read_text())["targets"] == results["targets"]
    assert "#### Targets" in doc.read_text() and (out / "serving.png").exists()


def test_a_saved_run_that_is_not_one_is_refused_with_the_reason(tmp_path):
    import pytest

    from benchmarks.serving import main

    out = ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="cannot read it as JSON"):
        main(["--from-results", str(tmp_path / "missing.json"), *out])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read it as JSON"):
        main(["--from-results", str(tmp_path / "broken.json"), *out])
    (tmp_path / "other.json").write_text('{"results": []}')
    with pytest.raises(SystemExit, match=r"not the serving\.json of a benchmarks\.serving run"):
        main(["--from-results", str(tmp_path / "other.json"), *out])
    assert not (tmp_path / "out").exists()
