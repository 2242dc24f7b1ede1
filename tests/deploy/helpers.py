"""The Dockerfile read as instructions, for the tests that check its promises."""

from __future__ import annotations

import json
import re

from tests.helpers import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def dockerfile_command() -> list[str]:
    """The image's CMD: exec form is a JSON array (shell form would not parse)."""
    ((_, cmd),) = find("CMD")
    return json.loads(cmd)


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", re.sub(r"^\s*#.*\n", "", DOCKERFILE, flags=re.M))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def find(keyword: str) -> list[tuple[int, str]]:
    return [(index, args) for index, (key, args) in enumerate(instructions()) if key == keyword]


def dockerfile_env(name: str) -> str:
    """A variable the image's ENV instructions set."""
    values = dict(re.findall(r"(\w+)=(\S+)", " ".join(args for _, args in find("ENV"))))
    return values[name]


def image_ports() -> tuple[int, int]:
    """(HTTP, gRPC): the CMD's --port and ALEXNET_GRPC_PORT, which must be exactly the ports EXPOSE lists."""
    ((_, exposed),) = find("EXPOSE")
    argv = dockerfile_command()
    http, grpc = int(argv[argv.index("--port") + 1]), int(dockerfile_env("ALEXNET_GRPC_PORT"))
    assert sorted(int(port) for port in exposed.split()) == sorted([http, grpc]) and 0 < grpc != http, exposed
    return http, grpc
