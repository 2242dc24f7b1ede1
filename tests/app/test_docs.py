"""/docs works offline: every asset it loads is served by the service itself, and the API is documented."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.app.helpers import LiveServer


def test_docs_page_loads_nothing_from_elsewhere(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert not [u for u in urls if "//" in u], urls  # no absolute URL: no CDN, no other host
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        assert asset in page.text
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 100_000


def test_every_operation_is_documented(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    operations = {(path, method): op for path, methods in spec["paths"].items() for method, op in methods.items()}
    assert set(operations) == {
        ("/predict", "post"),
        ("/predict", "put"),  # the same operation, for curl -T
        ("/health", "get"),
        ("/health/ready", "get"),
        ("/health/live", "get"),
        ("/metrics", "get"),
        ("/model", "get"),
        ("/model.json", "get"),
    }
    for (path, _), op in operations.items():
        assert op.get("summary") and op.get("description"), path
        for status, response in op["responses"].items():
            content = response.get("content", {})
            has_example = any(
                "example" in media or "examples" in media.get("schema", {}) or _schema_example(spec, media)
                for media in content.values()
            )
            assert has_example, (path, status)
    for method in ("post", "put"):
        predict = operations[("/predict", method)]
        assert set(predict["responses"]) >= {"200", "400", "413", "415", "422", "429", "503", "504"}
        bodies = predict["requestBody"]["content"]
        upload = bodies["multipart/form-data"]["schema"]["properties"]["file"]
        assert upload["type"] == "array" and upload["items"]["format"] == "binary"  # the file picker
        for raw in ("image/*", "application/octet-stream"):  # one image as the whole body
            assert bodies[raw]["schema"]["format"] == "binary" and bodies[raw]["schema"]["minLength"] == 1


def _schema_example(spec: dict, media: dict) -> bool:
    ref = media.get("schema", {}).get("$ref", "")
    if not ref:
        return False
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return bool(schema.get("examples"))


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_docs_render_in_headless_chromium_without_network(server: LiveServer, tmp_path: Path) -> None:
    from verification.check_docs_offline import check_docs

    report = check_docs(server.url, tmp_path)
    assert report.operations >= 5
    assert report.foreign_requests == []
    assert report.predict_status == 200 and '"predictions"' in report.predict_body
