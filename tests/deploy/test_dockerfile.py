"""The Dockerfile's promises, read from the file (hadolint checks style in CI; the podman smoke test runs it)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import tomllib
from packaging.specifiers import SpecifierSet

from tests.deploy.helpers import find, image_ports
from tests.helpers import REPO


def test_base_image_is_a_build_argument_defaulting_to_a_supported_pytorch_runtime() -> None:
    ((arg_at, arg),) = find("ARG")
    ((from_at, base),) = find("FROM")
    assert arg_at < from_at and base.strip() == "${BASE_IMAGE}"
    default = arg.split("=", 1)[1].strip()
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-runtime", default)
    assert match, default
    (torch_requirement,) = re.findall(r'^\s*"torch([<>=!~][^"]*)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match.group(1) in SpecifierSet(torch_requirement)


def test_dependencies_and_the_grpc_extra_are_installed_before_the_code_is_copied() -> None:
    copies = find("COPY")
    runs = find("RUN")
    deps_copy = next(index for index, args in copies if args.split()[0] == "pyproject.toml")
    deps_install = next(index for index, args in runs if "-r /tmp/deps/requirements.txt" in args)
    code_copy = next(index for index, args in copies if args.split()[0] == ".")
    assert deps_copy < deps_install < code_copy
    # The requirements file is what the step's own Python writes from pyproject.toml (run here on the real file):
    # the service's dependencies and the `grpc` extra, which the image's gRPC port and the liveness probe need.
    words = shlex.split(dict(runs)[deps_install])
    code = words[words.index("-c") + 1]
    written = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "pyproject.toml")], capture_output=True, text=True, check=True
    ).stdout
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert written.splitlines() == project["dependencies"] + project["optional-dependencies"]["grpc"]
    assert any(line.startswith("grpcio-health-checking") for line in written.splitlines())  # app/grpc_health.py


def test_grpc_is_on_in_the_image_on_a_second_exposed_port() -> None:
    http, grpc = image_ports()  # EXPOSE lists exactly the CMD's --port and ENV ALEXNET_GRPC_PORT, two ports
    assert http == 8000 and grpc == 8001  # Triton's numbering, which the docs and the manifests' comments say


def test_runs_as_a_numeric_non_root_user() -> None:
    (user_at, user), (cmd_at, _) = find("USER")[-1], find("CMD")[-1]
    uid, _, gid = user.strip().partition(":")
    assert user_at < cmd_at and int(uid) > 0 and int(gid) > 0


def test_healthcheck_asks_health_with_python_in_exec_form() -> None:
    ((_, healthcheck),) = find("HEALTHCHECK")
    argv = json.loads(healthcheck.split("CMD", 1)[1])
    assert argv[0] == "python" and "http://127.0.0.1:8000/health" in argv[-1]
    compose = (REPO / "docker-compose.yml").read_text()
    assert argv[-1] in compose  # the compose healthcheck runs the same command
