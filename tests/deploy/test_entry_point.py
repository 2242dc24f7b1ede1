"""One way to start the service: the container, compose, `make serve`, the load-balancer check and the
benchmarks all run ``alexnet-serve`` (``app.cli:serve``; ``python -m app`` where only an interpreter is named).

That function's shutdown (/health 503 on SIGTERM, no traceback) is proven in tests/app/test_shutdown.py.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from pathlib import Path

import tomllib

from benchmarks.servers.catalog import server_specs
from models import DEFAULT_CHECKPOINT
from tests.deploy.helpers import dockerfile_command
from tests.helpers import REPO

ENTRY_POINT = "app.cli:serve"


def test_alexnet_serve_and_python_m_app_are_one_function() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["alexnet-serve"] == ENTRY_POINT
    main = ast.parse((REPO / "app" / "__main__.py").read_text())
    imported = {(node.module, alias.name) for node in ast.walk(main) if isinstance(node, ast.ImportFrom)
                for alias in node.names}  # fmt: skip
    called = {node.func.id for node in ast.walk(main) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert imported == {("app.cli", "serve")} and called == {"serve"}


def test_the_container_runs_alexnet_serve_as_one_process() -> None:
    argv = dockerfile_command()
    assert argv[0] == "alexnet-serve" and "--workers" not in argv
    assert argv[argv.index("--port") + 1] == "8000" and argv[argv.index("--host") + 1] == "0.0.0.0"


def test_compose_runs_the_images_command(render_compose) -> None:
    for files in (("docker-compose.yml",), ("docker-compose.yml", "docker-compose.cpu.yml")):
        services = render_compose(*files, profiles=("scale",))["services"]
        for name in ("api", "api-replica"):
            assert services[name].get("command") in (None, dockerfile_command()), (files, name)  # None: the image's CMD


def test_make_serve_runs_alexnet_serve() -> None:
    recipe = re.search(r"^serve:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M).group(1)
    (run,) = [line for line in recipe.splitlines() if "alexnet-serve" in line]
    assert shlex.split(run.strip())[0] == "$(BIN)/alexnet-serve"


def test_the_load_balancer_check_and_the_benchmarks_start_the_entry_point() -> None:
    lb_check = (REPO / "verification" / "lb_check.sh").read_text()
    assert re.search(r"^\s+python -m app --host", lb_check, re.M) and "uvicorn app" not in lb_check
    specs = server_specs(sys.executable, Path("checkpoint.safetensors"), "cpu", 32, 5.0)
    for name in ("service", "service-nobatch"):
        assert specs[name].command[:3] == (sys.executable, "-m", "app"), name


def test_every_launcher_names_the_default_checkpoint() -> None:
    """models.DEFAULT_CHECKPOINT is the one home; the files that cannot import it must say the same."""
    name = Path(DEFAULT_CHECKPOINT).name
    makefile = re.search(r"^TRAINED_CHECKPOINT \?= (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert makefile == DEFAULT_CHECKPOINT
    assert f"ALEXNET_CHECKPOINT=/checkpoints/{name}" in (REPO / "Dockerfile").read_text()
    assert f"ALEXNET_CHECKPOINT_NAME:-{name}" in (REPO / "docker-compose.yml").read_text()
