"""Open the service's /docs in headless Chromium and prove it works offline.

    python -m verification.check_docs_offline                                # starts alexnet-serve, random weights
    python -m verification.check_docs_offline --url http://127.0.0.1:8000    # or checks a running service

Chromium (Debian's ``chromium`` package) is driven over the DevTools protocol: every request the page makes
is recorded, the page must render the API's operations, every request must go to the service itself, and
the /predict form is used as a person would: an image is picked in its file input, Execute is clicked and
the answer must appear. Screenshots go to docs/images/ (``--shots`` to put them elsewhere). Exits 1 on any
failure. Needs ``websockets`` (installed with uvicorn[standard]).
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]
WIDTH, HEIGHT = 1280, 1500  # pixels of the screenshots
PREDICT = "#operations-predict-predict_images_predict_post"  # Swagger UI's id for the /predict block


@dataclass
class Report:
    requests: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    operations: int = 0
    predict_status: int | None = None
    predict_body: str = ""
    screenshots: list[Path] = field(default_factory=list)


class DevTools:
    """A minimal Chrome DevTools protocol client over one page session, recording network requests."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.requests: list[str] = []
        target = self.call("Target.createTarget", url="about:blank", session=None)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=None)["sessionId"]

    def call(self, method: str, session: str | bool | None = True, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session is True:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("method") == "Network.requestWillBeSent":
                self.requests.append(reply["params"]["request"]["url"])
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"waited {timeout:.0f} s for: {expression}")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def check_docs(url: str, shots: Path, chromium: str = "chromium") -> Report:
    """Drive /docs at ``url``; return what happened (the caller decides what counts as failure)."""
    report = Report()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with connect(_browser_endpoint(Path(profile)), max_size=None, open_timeout=20) as ws:
                tools = DevTools(ws)
                try:
                    _use_docs(tools, url, shots, report)
                finally:
                    report.requests = list(tools.requests)
        finally:
            browser.terminate()
            browser.wait(10)
    origin = urlsplit(url)._replace(path="", query="", fragment="").geturl()
    report.foreign_requests = [
        u
        for u in report.requests
        if not (u.startswith(origin + "/") or u.split(":", 1)[0] in ("data", "blob", "about"))
    ]
    return report


def _browser_endpoint(profile: Path, timeout: float = 30.0) -> str:
    """Chromium writes its DevTools port and browser path to DevToolsActivePort in the profile."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    raise TimeoutError("Chromium did not open its DevTools port")


def _use_docs(tools: DevTools, url: str, shots: Path, report: Report) -> None:
    for domain in ("Network", "Page", "Runtime", "DOM"):
        tools.call(f"{domain}.enable")
    tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
    tools.call("Page.navigate", url=f"{url}/docs")
    report.operations = tools.wait_for(
        "document.querySelectorAll('.opblock').length >= 5 && document.querySelectorAll('.opblock').length"
    )
    time.sleep(0.5)  # fonts and layout settle
    report.screenshots.append(tools.screenshot(shots / "docs-offline.png"))

    # The /predict form, as a person uses it: open it, pick an image, Execute, read the answer.
    tools.evaluate(f"{_in_predict('.opblock-summary-control')}.click()")
    tools.wait_for(f"!!{_in_predict('input[type=file]')}")
    image = _sample_image(shots.parent / "docs-upload-sample.png")
    document = tools.call("DOM.getDocument", depth=-1)["root"]["nodeId"]
    node = tools.call("DOM.querySelector", nodeId=document, selector=f"{PREDICT} input[type=file]")["nodeId"]
    tools.call("DOM.setFileInputFiles", nodeId=node, files=[str(image)])
    tools.evaluate(f"{_in_predict('.execute')}.click()")
    answer = ".live-responses-table tbody"
    status = tools.wait_for(
        f"(() => {{ const c = {_in_predict(answer + ' .response-col_status')}; return c && c.textContent.trim(); }})()"
    )
    report.predict_status = int(str(status).split()[0])
    report.predict_body = tools.evaluate(f"{_in_predict(answer + ' .response-col_description pre')}.textContent")
    # The picked file, Execute and the answer in one picture.
    tools.evaluate(f"{_in_predict('.opblock-section-request-body')}.scrollIntoView({{block: 'start'}})")
    time.sleep(0.3)
    report.screenshots.append(tools.screenshot(shots / "docs-predict.png"))
    image.unlink()


def _in_predict(selector: str) -> str:
    return f"document.querySelector('{PREDICT} {selector}')"


def _sample_image(path: Path) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 200)).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _start_service(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """alexnet-serve on a random-weight checkpoint (64px input: quick), on a free loopback port."""
    from models import save_random_checkpoint

    checkpoint = save_random_checkpoint(workdir / "random.safetensors", input_size=64)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "app", "--checkpoint", str(checkpoint), "--port", str(port), "--device", "cpu"]
    service = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2):
                return service, url
        except OSError:
            time.sleep(0.3)
    service.terminate()
    raise TimeoutError("the service did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service (default: start one on random weights)")
    parser.add_argument("--shots", type=Path, default=ROOT / "docs" / "images", help="where screenshots go")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium", help="the browser binary")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        service, url = (None, args.url) if args.url else _start_service(Path(workdir))
        try:
            report = check_docs(url, args.shots, args.chromium)
        finally:
            if service is not None:
                service.terminate()
                service.wait(30)
    print(f"{len(report.requests)} requests, all to {url}:" if not report.foreign_requests else "FOREIGN requests:")
    for request in report.foreign_requests or report.requests:
        print(f"  {request}")
    print(f"operations rendered: {report.operations}; /predict from the form: {report.predict_status}")
    print(f"answer: {report.predict_body[:300]}")
    print("screenshots: " + ", ".join(str(p) for p in report.screenshots))
    ok = not report.foreign_requests and report.operations >= 5 and report.predict_status == 200
    print("OK: /docs works offline" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
