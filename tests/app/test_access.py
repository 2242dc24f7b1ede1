"""Access control on the real service: the optional API key, which paths stay open, and CORS only when asked."""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

import app.access
from app.config import Settings
from tests.app.helpers import LiveServer, files, png, service_settings

KEY = "test-key-0123456789abcdef"
ORIGIN = "https://app.example"
OPEN_PATHS = ("/health", "/health/live", "/health/ready", "/docs", "/docs/static/swagger-ui.css", "/openapi.json",
              "/v2/health/live", "/v2/health/ready")  # fmt: skip


@pytest.fixture(scope="module")
def keyed(tiny_checkpoint: Path) -> Iterator[LiveServer]:
    """One server with a key and a CORS origin, shared by the tests below that only read from it."""
    live = LiveServer(service_settings(tiny_checkpoint, api_key=KEY, cors_origins=[ORIGIN])).start()
    yield live
    live.stop()


def predict(url: str, **headers: str) -> httpx.Response:
    return httpx.post(url + "/predict", files=files(("a.png", png())), headers=headers, timeout=30)


def test_without_a_key_everything_is_open(server: LiveServer) -> None:
    assert predict(server.url).status_code == 200
    for path in ("/model.json", "/metrics", "/health"):
        assert httpx.get(server.url + path).status_code == 200, path
    assert "securitySchemes" not in httpx.get(server.url + "/openapi.json").json().get("components", {})


def test_a_key_is_required_on_predict_and_the_model_pages(keyed: LiveServer) -> None:
    for path in (
        "/predict",
        "/model.json",
        "/model",
        "/no-such-path",
        "/v2",
        "/v2/models/alexnet",
    ):  # unknown: closed too
        response = httpx.request("POST" if path == "/predict" else "GET", keyed.url + path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Bearer realm="alexnet-service"'
        assert response.json() == {"detail": app.access.MISSING}
    for headers in ({"Authorization": "Bearer wrong-key-0123456789"}, {"X-API-Key": KEY[:-1]}, {"X-API-Key": ""}):
        response = predict(keyed.url, **headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == 'Bearer realm="alexnet-service", error="invalid_token"'
        assert response.json() == {"detail": app.access.INVALID}
    # The key in a Basic header is not a bearer token: only the two documented ways count.
    assert predict(keyed.url, Authorization=f"Basic {KEY}").status_code == 401


def test_no_open_prefix_leads_to_a_keyed_route(keyed: LiveServer) -> None:
    # Paths sent as they are (http.client normalises nothing): the open /docs prefix must not reach /model.json.
    host, port = keyed.url.removeprefix("http://").split(":")
    for path in ("/docs/../model.json", "/docs/static/../../model.json", "/docs/static/..%2f..%2fmodel.json"):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", path)
        status = connection.getresponse().status
        connection.close()
        assert status == 404, (path, status)


def test_bearer_and_x_api_key_both_work(keyed: LiveServer) -> None:
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"Authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}):
        response = predict(keyed.url, **headers)
        assert response.status_code == 200, headers
        assert response.json()["predictions"]
    assert httpx.get(keyed.url + "/model.json", headers={"X-API-Key": KEY}).status_code == 200


def test_health_docs_and_metrics_stay_open(keyed: LiveServer) -> None:
    for path in (*OPEN_PATHS, "/metrics"):
        assert httpx.get(keyed.url + path).status_code == 200, path
    # Refused requests are counted, so a scan or a client with a stale key shows on the dashboard.
    assert 'status="401"' in httpx.get(keyed.url + "/metrics").text


def test_metrics_can_require_the_key(serve: Callable[..., LiveServer]) -> None:
    server = serve(api_key=KEY, metrics_require_key=True)
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/metrics", headers={"X-API-Key": KEY}).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200


def test_no_upload_is_read_without_the_key(serve: Callable[..., LiveServer]) -> None:
    # Over the body limit: with the key it is 413 (the upload was read); without, 401 before any of it is read.
    server = serve(api_key=KEY, max_body_bytes=2000, max_file_bytes=2000)
    big = files(("a.bin", b"x" * 20_000))
    assert httpx.post(server.url + "/predict", files=big, timeout=30).status_code == 401
    assert httpx.post(server.url + "/predict", files=big, headers={"X-API-Key": KEY}, timeout=30).status_code == 413


def test_the_key_is_compared_with_hmac_compare_digest(keyed: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A spy that refuses everything: if the check used == (or anything but compare_digest), the right key
    # would still get in and the spy would see nothing.
    seen: list[tuple[bytes, bytes]] = []

    def refuse(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return False

    monkeypatch.setattr(app.access.hmac, "compare_digest", refuse)
    assert predict(keyed.url, **{"X-API-Key": KEY}).status_code == 401
    assert seen and all(len(a) == len(b) == 32 for a, b in seen)  # sha256 digests: the key's length never shows


def test_the_key_never_leaves_the_service(tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = service_settings(tiny_checkpoint, api_key=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    live = LiveServer(settings).start()
    try:
        with_key = {"X-API-Key": KEY}
        for path in ("/health", "/health/ready", "/model.json", "/metrics", "/openapi.json", "/docs"):
            response = httpx.get(live.url + path, headers=with_key)
            assert response.status_code == 200 and KEY not in response.text, path
        assert KEY not in repr(live.app.user_middleware)
        assert KEY not in predict(live.url, **with_key).text
    finally:
        live.stop()
    assert "API key required" in caplog.text and KEY not in caplog.text


def test_the_schema_declares_the_key_so_docs_can_send_it(keyed: LiveServer) -> None:
    spec = httpx.get(keyed.url + "/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    predict_op = spec["paths"]["/predict"]["post"]
    assert predict_op["security"] == [{"bearer": []}, {"apiKey": []}]
    ref = predict_op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"]
    assert "security" not in spec["paths"]["/health"]["get"] and "security" not in spec["paths"]["/metrics"]["get"]


def test_cors_is_off_unless_origins_are_set(server: LiveServer) -> None:
    preflight = httpx.options(server.url + "/predict", headers=preflight_headers(ORIGIN))
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in httpx.get(server.url + "/health", headers={"Origin": ORIGIN}).headers


def test_cors_answers_configured_origins_only(keyed: LiveServer) -> None:
    preflight = httpx.options(keyed.url + "/predict", headers=preflight_headers(ORIGIN))  # no key: browsers send none
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert {"authorization", "x-api-key"} <= set(preflight.headers["access-control-allow-headers"].lower().split(", "))
    other = httpx.options(keyed.url + "/predict", headers=preflight_headers("https://evil.example"))
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    # A refused request still carries the CORS header, so the page's script can read the 401 and say why.
    refused = predict(keyed.url, Origin=ORIGIN)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, x-api-key",
    }


def test_settings_refuse_unusable_keys_without_echoing_them() -> None:
    for bad in ("short-key", "a key with spaces in it", "k\u00e9y-0123456789abcdef"):
        with pytest.raises(ValidationError) as caught:
            Settings(api_key=bad)
        assert bad not in str(caught.value)
    assert Settings(api_key="").api_key is None  # ALEXNET_API_KEY= (empty) is no key
    assert Settings().api_key is None and Settings().host == "127.0.0.1"  # open, and on loopback, by default


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXNET_CORS_ORIGINS", f"{ORIGIN}, http://localhost:3000")
    assert Settings().cors_origins == [ORIGIN, "http://localhost:3000"]
    monkeypatch.setenv("ALEXNET_CORS_ORIGINS", f'["{ORIGIN}"]')
    assert Settings().cors_origins == [ORIGIN]
    monkeypatch.setenv("ALEXNET_CORS_ORIGINS", "")
    assert Settings().cors_origins == []
    monkeypatch.setenv("ALEXNET_CORS_ORIGINS", ORIGIN + "/")  # would never match a browser's Origin header
    with pytest.raises(ValidationError, match="no trailing slash"):
        Settings()
