"""The instruction-count benchmark's parts: its clients against the real service, callgrind switched on and off
from outside in a process waiting for input (as the server waits in epoll), and a commit checked out into a
worktree and removed again. The whole run (a server started under valgrind) takes minutes: not run here."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.instructions import callgrind_totals, checked_out, instrumentation, send
from benchmarks.payloads import make_uploads, multipart_body
from tests.app.helpers import LiveServer, service_settings
from tests.helpers import REPO


def test_the_clients_send_every_request_and_count_the_answers(tiny_checkpoint: Path) -> None:
    body, content_type = multipart_body(make_uploads("cifar", 1))
    server = LiveServer(service_settings(tiny_checkpoint)).start()
    try:
        answered = asyncio.run(send(f"{server.url}/predict", body, content_type, requests=10, concurrency=4))
        refused = asyncio.run(send(f"{server.url}/predict", b"not multipart", content_type, requests=3, concurrency=2))
    finally:
        server.stop()
    assert answered == {200: 10}
    assert refused == {400: 3}


# Waits for a line before each step, so that the counting is switched while it is blocked in a read.
CHILD = """
import sys
sum(range(10**5))  # before the switch: not counted
print("ready", flush=True)
loops = int(sys.stdin.readline())
for _ in range(loops):
    sum(range(1000))
print("done", flush=True)
sys.stdin.readline()
sum(range(10**6))  # after the switch went off: not counted
"""


def _counted(tmp_path: Path, loops: int) -> int:
    out = tmp_path / f"callgrind-{loops}.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable]
    child = subprocess.Popen([*command, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        instrumentation(child.pid, True)
        child.stdin.write(f"{loops}\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        instrumentation(child.pid, False)
        child.stdin.write("end\n")
        child.stdin.flush()
        assert child.wait(120) == 0
    finally:
        child.kill()
    return callgrind_totals(out)


@pytest.mark.skipif(shutil.which("callgrind_control") is None, reason="needs valgrind (apt-get install valgrind)")
def test_callgrind_counts_only_what_the_switch_lets_through(tmp_path: Path) -> None:
    few, many = _counted(tmp_path, 10), _counted(tmp_path, 200)
    per_loop = (many - few) / 190  # a sum over 1,000 Python ints: about 165,000 instructions under valgrind here
    assert 10_000 < per_loop < 1_000_000
    # Nothing before the switch or after it went off: either sum outside would add 100 to 1,000 loops' worth.
    assert few < 50 * per_loop


def test_a_commit_is_checked_out_for_the_run_and_removed_after() -> None:
    with checked_out("head=HEAD") as (name, folder, what):
        assert name == "head" and what.startswith("commit ")
        assert (folder / "app" / "main.py").is_file()
    assert not folder.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert str(folder) not in listed
    with pytest.raises(SystemExit, match="neither a folder nor a commit"), checked_out("x=no-such-ref-anywhere"):
        pass


@pytest.mark.parametrize("spec", ["HEAD", "=HEAD", "name="])
def test_a_tree_without_its_name_or_its_place_is_refused(spec: str) -> None:
    with pytest.raises(SystemExit, match="give NAME=REF or NAME=DIR"), checked_out(spec):
        pass
