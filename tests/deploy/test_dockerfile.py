"""The Dockerfile's promises, read from the file (hadolint checks style in CI; the podman smoke test runs it)."""

from __future__ import annotations

import json
import re

from packaging.specifiers import SpecifierSet

from tests.deploy.helpers import find
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


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    copies = find("COPY")
    runs = find("RUN")
    deps_copy = next(index for index, args in copies if args.split()[0] == "pyproject.toml")
    deps_install = next(index for index, args in runs if "-r /tmp/deps/requirements.txt" in args)
    code_copy = next(index for index, args in copies if args.split()[0] == ".")
    assert deps_copy < deps_install < code_copy


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
