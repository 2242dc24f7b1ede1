"""GET / : the upload page, over plain HTTP and in real headless Chromium; HEAD on / and the probes; metric labels."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.helpers import LiveServer, picture

# Set to a path (docs/images/page.png) to save the rendered answer there; tests do not write into the repo otherwise
SCREENSHOT = os.environ.get("ALEXNET_PAGE_SCREENSHOT")


def test_the_page_is_small_self_contained_html_with_a_strict_csp(client: httpx.Client) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "connect-src 'self'" in csp
    assert f'<script nonce="{nonce}">' in answer.text and f'<style nonce="{nonce}">' in answer.text
    assert "__NONCE__" not in answer.text
    assert "http://" not in answer.text and "https://" not in answer.text  # no CDN, fonts or scripts from elsewhere
    assert len(answer.content) < 8_000
    for link in ('href="/docs"', 'href="/model"', 'href="/metrics"', 'type="file"', '<label for="files">'):
        assert link in answer.text
    assert client.get("/").headers["content-security-policy"] != csp  # a fresh nonce per response


@pytest.mark.parametrize("path", ["/", "/health", "/health/ready", "/health/live"])
def test_head_answers_like_get_without_a_body(client: httpx.Client, path: str) -> None:
    head, get = client.head(path), client.get(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_routes_stay_out_of_the_schema(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert set(paths["/health"]) == {"get"}


def test_the_page_and_the_docs_assets_get_their_own_metric_labels(client: httpx.Client) -> None:
    client.get("/")
    assert client.get("/docs/static/swagger-ui.css").status_code == 200
    client.get("/no/such/path")
    # A file response is counted when the app's call returns, a moment after the client has the last byte
    deadline = time.monotonic() + 5
    while 'route="/docs/static",status="200"' not in (text := client.get("/metrics").text):
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    assert 'alexnet_requests_total{route="/",status="200"}' in text
    assert 'alexnet_requests_total{route="/docs/static",status="200"}' in text
    assert 'alexnet_requests_total{route="unmatched",status="404"}' in text  # still there for real misses


def test_with_a_key_the_page_stays_open_and_predict_does_not(serve) -> None:  # type: ignore[no-untyped-def]
    live = serve(api_key="page-test-key-0123456789")
    assert httpx.get(f"{live.url}/").status_code == 200
    assert httpx.head(f"{live.url}/health").status_code == 200
    assert httpx.get(f"{live.url}/model.json").status_code == 401  # what the page looks at to show its key field


# --- in a real browser ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.browser
def test_an_upload_through_the_page_shows_what_predict_answers(browser, server: LiveServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = tmp_path / "frog.png"
    picture(32, 32, seed=3).save(image)
    with image.open("rb") as handle:
        expected = httpx.post(f"{server.url}/predict", files={"file": ("frog.png", handle, "image/png")}).json()
    prediction = expected["predictions"][0]

    browser.get(f"{server.url}/")
    browser.find_element(By.ID, "files").send_keys(str(image))
    rows = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card .row"))
    assert browser.find_element(By.CSS_SELECTOR, ".verdict").text.startswith(f"Looks like: {prediction['label']}")
    shown = [(row.get_attribute("data-label"), float(row.get_attribute("data-probability"))) for row in rows]
    assert shown == [(c["label"], c["probability"]) for c in prediction["top_k"]]
    assert browser.find_element(By.CSS_SELECTOR, ".card img").get_attribute("alt") == "thumbnail of frog.png"
    links = {a.get_attribute("pathname") for a in browser.find_elements(By.TAG_NAME, "a")}
    assert {"/docs", "/model", "/metrics"} <= links
    # The CSP blocked nothing the page needs: no console errors (chromedriver reports CSP violations there)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)


@pytest.mark.browser
def test_an_error_is_shown_per_file_in_plain_words(browser, server: LiveServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    browser.get(f"{server.url}/")
    browser.find_element(By.ID, "files").send_keys(str(broken))
    error = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card .error"))[0]
    assert error.text.startswith("Not classified: ") and "broken.png" in error.text
