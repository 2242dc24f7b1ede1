"""The second load generator: wrk (Debian's ``apt-get install wrk``), driven with the same requests as ours.

Why a second one: a load generator of our own could flatter the servers it was written beside. wrk is C, a
widely used HTTP benchmarking tool, and costs less client CPU per request than any Python client. It is run
with the same bodies (written to files, read by a small Lua script that rotates through them), the same
number of keep-alive connections (one request in flight on each) and the same warm-up and window: a
warm-up run whose figures are thrown away, then the measured run. What it cannot do that ours does: check
each answer's predictions. A non-2xx answer or a socket error counts as an error; the servers' logs and
our own generator's runs show the answers are right.
"""

from __future__ import annotations

import math
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.loadgen import LoadResult, LoadSpec
from benchmarks.stats import Summary

# The bodies rotate per connection, each connection starting at a different one, as our generator's workers do.
LUA = """
local requests, counter = {}, 0
function setup(thread)
  thread:set("first", counter)
  counter = counter + 1
end
function init(args)
  for i = 2, #args do
    local file = assert(io.open(args[i], "rb"))
    requests[#requests + 1] = wrk.format("POST", args[1], {["Content-Type"] = CONTENT_TYPE}, file:read("*a"))
    file:close()
  end
  position = first or 0
end
function request()
  position = position % #requests + 1
  return requests[position]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("ALEXNET-WRK %d %d %d %d %d %d %d %.1f %.1f %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean, latency.max))
end
"""
RESULT = "ALEXNET-WRK"  # the line done() prints: counts, then latencies in microseconds


def wrk_installed() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(spec: LoadSpec, threads: int = 1) -> LoadResult:
    """One load level with wrk: a warm-up run, then the measured one; its summary and wrk's CPU time."""
    if not wrk_installed():
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    threads = max(1, min(threads, spec.concurrency))
    with tempfile.TemporaryDirectory(prefix="alexnet-wrk-") as scratch:
        script = Path(scratch) / "bodies.lua"
        script.write_text(f"CONTENT_TYPE = {_lua_string(spec.content_type)}\n{LUA}")
        bodies = []
        for i, body in enumerate(spec.bodies):
            path = Path(scratch) / f"body{i}"
            path.write_bytes(body)
            bodies.append(str(path))
        url = f"http://{spec.host}:{spec.port}"
        command = ["wrk", f"-t{threads}", f"-c{spec.concurrency}", "-s", str(script)]
        command += [f"--timeout={math.ceil(spec.timeout_s)}s"]
        tail = [url, "--", spec.path, *bodies]
        cpu_before = _children_cpu_s()
        if spec.warmup_s > 0:
            _run([*command, f"-d{max(1, round(spec.warmup_s))}s", *tail])
        output = _run([*command, f"-d{max(1, round(spec.duration_s))}s", *tail])
        client_cpu = _children_cpu_s() - cpu_before
    summary = parse_output(output, spec.images_per_request)
    return LoadResult(summary, client_cpu, summary.window_s + max(1, round(spec.warmup_s)))


def parse_output(output: str, images_per_request: int) -> Summary:
    """The line the script's done() prints -> a Summary of the 2xx answers, errors by kind, latencies in ms."""
    line = next((line for line in output.splitlines() if line.startswith(RESULT + " ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
    fields = line.split()[1:]
    requests, duration_us, *counts = (int(x) for x in fields[:7])
    errors = {kind: n for kind, n in zip(("non_2xx", "connect", "read", "write", "timeout"), counts, strict=True) if n}
    latency = dict(zip(("p50", "p95", "p99", "mean", "max"), (float(x) / 1000 for x in fields[7:]), strict=True))
    good = requests - errors.get("non_2xx", 0)
    return Summary(duration_us / 1e6, good, good * images_per_request, errors, latency)


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout + result.stderr  # a Lua error goes to stderr with status 0: shown if no result


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
