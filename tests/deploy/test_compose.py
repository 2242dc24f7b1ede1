"""docker-compose.yml and its CPU override and scale profile, as the real Compose v2 binary resolves them."""

from __future__ import annotations

import re
from typing import Any

from tests.deploy.helpers import find, image_ports
from tests.helpers import REPO

GPU_SERVICES = ("train", "api", "api-replica")
CPU = ("docker-compose.yml", "docker-compose.cpu.yml")


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    return ((service.get("deploy") or {}).get("resources") or {}).get("reservations", {}).get("devices", [])


def test_every_model_service_reserves_one_nvidia_gpu(render_compose) -> None:
    services = render_compose("docker-compose.yml", profiles=("scale",))["services"]
    for name in GPU_SERVICES:
        assert gpu_devices(services[name]) == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], name
    assert services["api"]["environment"]["ALEXNET_DEVICE"] == "cuda"
    assert "cuda" in services["train"]["command"]


def test_api_waits_for_training_and_reads_the_checkpoint_it_wrote(render_compose) -> None:
    services = render_compose("docker-compose.yml")["services"]
    api, train = services["api"], services["train"]
    assert api["depends_on"]["train"]["condition"] == "service_completed_successfully"
    assert api["environment"]["ALEXNET_CHECKPOINT"] == train["environment"]["ALEXNET_CHECKPOINT"]
    assert api["environment"]["ALEXNET_CHECKPOINT"].startswith("/checkpoints/")
    (api_volume,) = api["volumes"]
    train_volumes = {volume["target"]: volume for volume in train["volumes"]}
    assert api_volume["type"] == "volume" and api_volume["target"] == "/checkpoints" and api_volume["read_only"]
    assert train_volumes["/checkpoints"]["source"] == api_volume["source"]
    assert not train_volumes["/checkpoints"].get("read_only")
    assert train_volumes["/data"]["type"] == "volume"
    assert train["command"][0] == "alexnet-train-if-missing"
    assert train["restart"] == "no"


def test_api_is_published_healthchecked_and_restarted(render_compose) -> None:
    api = render_compose("docker-compose.yml")["services"]["api"]
    http, grpc = image_ports()  # both of the image's ports, HTTP and gRPC, on the same numbers by default
    assert [(port["published"], port["target"]) for port in api["ports"]] == [(str(http), http), (str(grpc), grpc)]
    assert "ALEXNET_GRPC_PORT" not in api["environment"]  # the host's value is the host port, not the container's
    assert api["restart"] == "unless-stopped"
    assert "http://127.0.0.1:8000/health" in " ".join(api["healthcheck"]["test"])
    assert "build" in api


def test_host_folders_replace_the_volumes(render_compose) -> None:
    env = {"ALEXNET_CHECKPOINT_SOURCE": "/srv/my-checkpoints", "ALEXNET_DATA_SOURCE": "/srv/cifar10"}
    services = render_compose("docker-compose.yml", env=env)["services"]
    assert services["api"]["volumes"][0]["type"] == "bind"
    assert services["api"]["volumes"][0]["source"] == "/srv/my-checkpoints"
    train_sources = {volume["target"]: volume["source"] for volume in services["train"]["volumes"]}
    assert train_sources == {"/checkpoints": "/srv/my-checkpoints", "/data": "/srv/cifar10"}


def test_service_settings_pass_through_only_when_set(render_compose) -> None:
    unset = render_compose("docker-compose.yml")["services"]["api"]["environment"]
    assert unset["ALEXNET_MAX_BATCH_SIZE"] is None  # unset in the container: the service's own default
    chosen = render_compose("docker-compose.yml", env={"ALEXNET_MAX_BATCH_SIZE": "16"})["services"]["api"]
    assert chosen["environment"]["ALEXNET_MAX_BATCH_SIZE"] == "16"


def test_cpu_override_reserves_no_gpu_and_serves_a_first_stand_in_while_a_better_one_trains(render_compose) -> None:
    services = render_compose(*CPU, profiles=("scale",))["services"]
    served = services["api"]["environment"]["ALEXNET_CHECKPOINT"]
    for name in GPU_SERVICES:
        assert gpu_devices(services[name]) == [], name
        assert services[name]["environment"]["ALEXNET_CHECKPOINT"] == served, name
    assert services["api"]["environment"]["ALEXNET_DEVICE"] == "cpu"
    # A first stand-in before the API starts; the better one beside the serving API, over the same file (the
    # stand-in recipes of training/config.py RECIPES), which the API polls.
    for name, recipe in (("train", "cpu-first"), ("train-on", "cpu")):
        command = services[name]["command"]
        assert command[0] == "alexnet-train-if-missing" and command[command.index("--device") + 1] == "cpu"
        assert command[command.index("--recipe") + 1] == recipe
        assert services[name]["environment"]["ALEXNET_CHECKPOINT"] == served and gpu_devices(services[name]) == []
    train_on = services["train-on"]
    assert train_on["depends_on"]["train"]["condition"] == "service_completed_successfully"
    assert "train-on" not in services["api"]["depends_on"]  # the API does not wait for it
    assert train_on["volumes"] == services["train"]["volumes"] and train_on["restart"] == "no"
    assert float(services["api"]["environment"]["ALEXNET_CHECKPOINT_POLL_S"]) > 0
    # A CPU run is saved under its own name, so a GPU host never serves it as if it were the full recipe.
    assert "cpu" in served
    assert services["api-replica"]["deploy"]["replicas"] >= 2


def test_scale_profile_puts_nginx_in_front_of_the_replicas(render_compose) -> None:
    assert "lb" not in render_compose("docker-compose.yml")["services"]
    services = render_compose("docker-compose.yml", profiles=("scale",))["services"]
    lb, replicas = services["lb"], services["api-replica"]
    assert replicas["deploy"]["replicas"] >= 2 and "ports" not in replicas
    assert {name: dep["condition"] for name, dep in lb["depends_on"].items()} == {
        "api": "service_healthy",
        "api-replica": "service_healthy",
    }
    (config,) = lb["volumes"]
    assert config["target"] == "/etc/nginx/conf.d/default.conf" and config["read_only"]
    nginx_conf = (REPO / "deploy/nginx/alexnet.conf").read_text()
    assert config["source"] == str(REPO / "deploy/nginx/alexnet.conf")
    # The upstream names exactly the services that run the API, on the port the image serves.
    upstream = re.search(r"upstream alexnet_api \{(.*?)\}", nginx_conf, re.S).group(1)
    assert set(re.findall(r"^\s*server ([\w-]+):8000 resolve;", upstream, re.M)) == {"api", "api-replica"}
    assert "proxy_pass http://alexnet_api;" in nginx_conf
    # nginx resolves through Docker's embedded DNS, and the pinned nginx knows `resolve` (>= 1.27.3).
    assert "resolver 127.0.0.11" in nginx_conf
    major, minor = (int(part) for part in re.match(r"nginx:(\d+)\.(\d+)", lb["image"]).groups())
    assert (major, minor) >= (1, 28)


def test_every_service_running_our_code_is_locked_down(render_compose) -> None:
    for files in (("docker-compose.yml",), CPU):
        services = render_compose(*files, profiles=("scale",))["services"]
        ours = {name: service for name, service in services.items() if service["image"] == "alexnet-service:latest"}
        assert set(ours) == {*GPU_SERVICES, *(["train-on"] if files == CPU else [])}, files
        for name, service in ours.items():
            assert service["read_only"] is True, (files, name)
            assert service["cap_drop"] == ["ALL"] and not service.get("cap_add"), (files, name)
            assert "no-new-privileges:true" in service["security_opt"], (files, name)
            assert [mount.split(":")[0] for mount in service["tmpfs"]] == ["/tmp"], (files, name)
            assert not service.get("privileged"), (files, name)
        # Writable: only the volumes that must be (the trainer's checkpoint and data), never the API's.
        assert all(volume["read_only"] for volume in ours["api"]["volumes"])
    # The caches that would go under $HOME (read-only now) go to the tmpfs instead.
    env = " ".join(args for _, args in find("ENV"))
    for variable in ("XDG_CACHE_HOME", "MPLCONFIGDIR", "TRITON_CACHE_DIR"):
        assert re.search(rf"\b{variable}=/tmp/", env), variable


def test_access_settings_pass_through_only_when_set(render_compose) -> None:
    unset = render_compose("docker-compose.yml")["services"]["api"]["environment"]
    names = ("ALEXNET_API_KEY", "ALEXNET_METRICS_REQUIRE_KEY", "ALEXNET_CORS_ORIGINS")
    assert all(unset[name] is None for name in names)  # no key on the host: the container has none either
    keyed = render_compose("docker-compose.yml", profiles=("scale",), env={"ALEXNET_API_KEY": "k" * 32})["services"]
    assert {keyed[name]["environment"]["ALEXNET_API_KEY"] for name in ("api", "api-replica")} == {"k" * 32}
