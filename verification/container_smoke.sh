#!/usr/bin/env bash
# Build the image and run it for real with podman, on a machine with no Docker engine and no access to
# public image registries (like this project's dev and CI machines). Needs root and Debian's packages.
#
#   sudo verification/container_smoke.sh        # or: make container-smoke
#
# 1. installs podman, buildah, runc and debootstrap with apt-get if they are missing;
# 2. makes the base image once (cached): a Debian bookworm minbase with python3 and venv, made with
#    debootstrap from this machine's apt mirror and imported as $BASE_IMAGE_NAME;
# 3. checks what .dockerignore lets into a build (decoy data, checkpoints, venv, .git must stay out);
#    builds the Dockerfile on the base, with this machine's pip configuration (its package folders and CA
#    bundle mounted read-only into the build), so torch comes from wherever pip gets it here;
# 4. writes a tiny random-weights checkpoint with the image's own `models` package, starts the container
#    with it on the CPU, locked down as docker-compose.yml runs it (read-only root filesystem, a tmpfs at
#    /tmp, no capabilities, no-new-privileges) and with an API key; calls /health, and /predict without,
#    with a wrong and with the key, from outside; checks the lockdown from inside; runs the image's
#    HEALTHCHECK; stops it.
# Prints the time of each step and the image size.
#
# Settings (env): ALEXNET_CACHE_DIR (default ~/.cache/alexnet-service), SMOKE_PORT (18000),
# SMOKE_IMAGE (localhost/alexnet-service:smoke), SMOKE_KEEP_IMAGE=1 to keep the built image and its layer
# cache (faster rebuilds, about 6 GB of disk); by default both are removed and only the base image stays.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CACHE_DIR="${ALEXNET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/alexnet-service}"
BASE_IMAGE_NAME="localhost/alexnet-bookworm-min:latest"
IMAGE="${SMOKE_IMAGE:-localhost/alexnet-service:smoke}"
PORT="${SMOKE_PORT:-18000}"
CONTAINER="alexnet-smoke-$$"
MODE="${1:-}"  # --build, --run or nothing (both)
[[ -z "$MODE" || "$MODE" == --build || "$MODE" == --run ]] || { echo "usage: $0 [--build|--run]" >&2; exit 2; }
WORK="$(mktemp -d)"
API_KEY="smoke-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"  # fresh each run; never printed

log() { echo "smoke: $*"; }
die() { echo "smoke: FAILED: $*" >&2; exit 1; }

step_start=$SECONDS
declare -a TIMINGS=()
timed() {  # timed NAME -- records how long the step since the last call took
    TIMINGS+=("$(printf '%-40s %5ds' "$1" $((SECONDS - step_start)))")
    step_start=$SECONDS
}

print_timings() {
    ((${#TIMINGS[@]})) && printf '  %s\n' "${TIMINGS[@]}"
    log "total ${SECONDS}s"
}

cleanup() {
    print_timings
    podman rm -f "$CONTAINER" >/dev/null 2>&1 || true
    [[ "${SMOKE_KEEP_IMAGE:-0}" == 1 || "$MODE" == --build ]] || podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # e.g. CI's `timeout`: stop, and still clean up through the EXIT trap

install_tools() {
    local missing=()
    for tool in podman buildah runc debootstrap curl; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt-get"
        # Another apt (a machine's first-boot upgrade, say) may hold the lock: wait for it, not fail.
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
            podman buildah runc debootstrap curl >/dev/null
    fi
}

# Podman's defaults fail here: crun trips on this machine's cgroups and the default rlimits are refused.
configure_podman() {
    mkdir -p "$CACHE_DIR"
    cat >"$CACHE_DIR/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF="$CACHE_DIR/containers.conf"
}

# The bookworm mirror that apt on this machine uses (no public image registry can be reached).
debian_mirror() {
    # shellcheck disable=SC2016  # $(...) here is apt's own field syntax, not the shell's
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT) $(IDENTIFIER)' |
        awk '$2 == "bookworm" && $3 == "main" && $4 == "Packages" { print $1; exit }'
}

make_base_image() {
    if podman image exists "$BASE_IMAGE_NAME"; then
        log "base image $BASE_IMAGE_NAME already made"
        return
    fi
    local mirror rootfs="$CACHE_DIR/bookworm-rootfs"
    mirror="$(debian_mirror)"
    [[ -n "$mirror" ]] || die "no Debian bookworm mirror in this machine's apt sources"
    log "making $BASE_IMAGE_NAME with debootstrap (minbase + python3, venv, CA certificates)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" \
        >"$CACHE_DIR/debootstrap.log" 2>&1 || die "debootstrap failed, see $CACHE_DIR/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --quiet - "$BASE_IMAGE_NAME" >/dev/null
    rm -rf "$rootfs"
}

# This machine's effective pip configuration as one pip.conf, plus a read-only mount for every local
# folder or file it names (package folders, constraints, CA bundle). Fills PIP_MOUNTS.
declare -a PIP_MOUNTS=()
declare -A MOUNTED=()
pip_build_config() {
    local conf="$WORK/pip.conf" key value token path
    echo "[global]" >"$conf"
    # `pip config list` prints section.key='value'; ":env:" lines (PIP_* variables) win over files.
    while IFS= read -r line; do
        key="${line%%=*}" && key="${key#*.}"
        value="${line#*=}" && value="${value#\'}" && value="${value%\'}"
        sed -i "/^$key = /d" "$conf"
        echo "$key = $value" >>"$conf"
        for token in $value; do
            path="${token#file://}"
            [[ "$path" == /* && -e "$path" ]] || continue
            [[ "$path" == */simple || "$path" == */simple/ ]] && path="$(dirname "${path%/}")"  # index + its files/
            [[ -n "${MOUNTED[$path]:-}" ]] || PIP_MOUNTS+=(-v "$path:$path:ro")
            MOUNTED[$path]=1
        done
    done < <(python3 -m pip config list | sort -s -t. -k1,1 | grep -v '^:env:' ; python3 -m pip config list | grep '^:env:')
    PIP_MOUNTS+=(-v "$conf:/etc/pip.conf:ro")
    log "pip configuration for the build: $(grep -c = "$conf") settings, mounts: ${PIP_MOUNTS[*]}"
}

# What .dockerignore really lets into a build, checked with podman itself: a copy of the work tree plus
# decoys where data, checkpoints, venvs, git history and caches would be, copied into a throwaway image.
check_build_context() {
    local ctx="$WORK/context" listing
    mkdir -p "$ctx"
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -c | tar -C "$ctx" -x
    for decoy in data/cifar/x.jpg checkpoints/x.safetensors .venv/bin/x .git/HEAD tests/x.py \
        models/__pycache__/x.pyc runs/x/metrics.json x.safetensors; do
        mkdir -p "$ctx/$(dirname "$decoy")" && echo decoy >"$ctx/$decoy"
    done
    printf 'FROM %s\nCOPY . /context\n' "$BASE_IMAGE_NAME" >"$WORK/Context.Dockerfile"
    podman build -q -f "$WORK/Context.Dockerfile" -t localhost/alexnet-context-check "$ctx" >/dev/null
    listing="$(podman run --rm localhost/alexnet-context-check sh -c 'cd /context && find . -type f | sort')"
    podman rmi -f localhost/alexnet-context-check >/dev/null
    if grep -E '^\./(data|checkpoints|\.venv|\.git|tests|runs)/|__pycache__|\.safetensors$' <<<"$listing"; then
        die ".dockerignore let the files above into the build context"
    fi
    for needed in pyproject.toml README.md models/alexnet.py scripts/train_if_missing.sh; do
        grep -qx "./$needed" <<<"$listing" || die ".dockerignore keeps $needed out of the build context"
    done
    log "build context: $(wc -l <<<"$listing") files, none of the decoys (data, checkpoints, venv, .git, caches)"
}

build_image() {
    log "building $IMAGE on $BASE_IMAGE_NAME"
    # --format docker keeps HEALTHCHECK (the OCI image format has no field for it). Without
    # SMOKE_KEEP_IMAGE=1 no layer cache is kept, so removing the image at the end frees its 6 GB.
    local layers=false
    [[ "${SMOKE_KEEP_IMAGE:-0}" == 1 ]] && layers=true
    podman build --format docker --layers="$layers" --build-arg "BASE_IMAGE=$BASE_IMAGE_NAME" "${PIP_MOUNTS[@]}" \
        -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; die "podman build"; }
    local bytes
    bytes="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
    log "image size: $((bytes / 1000000)) MB"
}

# A real checkpoint with random weights at input size 64 (as the tests use), written by the
# image's own models package, so the test needs nothing on the host but podman.
write_tiny_checkpoint() {
    mkdir -p "$WORK/ckpt" && chmod 0777 "$WORK/ckpt"
    podman run --rm -v "$WORK/ckpt:/out" "$IMAGE" python -c '
from models import save_random_checkpoint
save_random_checkpoint("/out/tiny.safetensors", input_size=64, note="random weights, container smoke test")'
    [[ -s "$WORK/ckpt/tiny.safetensors" ]] || die "no checkpoint written"
}

start_container() {
    # --health-interval disable: podman would schedule the HEALTHCHECK with systemd timers, which this kind
    # of machine does not run; check_container runs the image's HEALTHCHECK itself instead.
    # The lockdown of docker-compose.yml's x-locked-down and x-api, flag for flag. --read-only-tmpfs=false: podman
    # would otherwise add writable /run and /var/tmp that Docker does not, and the check would prove less.
    local locked_down=(--read-only --read-only-tmpfs=false --tmpfs /tmp:size=64m --cap-drop=ALL
        --security-opt=no-new-privileges)
    podman run -d --name "$CONTAINER" --health-interval disable -p "127.0.0.1:$PORT:8000" "${locked_down[@]}" \
        -e ALEXNET_DEVICE=cpu -e ALEXNET_API_KEY="$API_KEY" \
        -v "$WORK/ckpt/tiny.safetensors:/checkpoints/alexnet-cifar10.safetensors:ro" "$IMAGE" >/dev/null
    local deadline=$((SECONDS + 180))
    until curl -fsS "http://127.0.0.1:$PORT/health" >"$WORK/health.json" 2>/dev/null; do
        if ((SECONDS > deadline)) || [[ "$(podman inspect -f '{{.State.Running}}' "$CONTAINER")" != true ]]; then
            podman logs "$CONTAINER" 2>&1 | tail -30
            die "/health did not answer 200 within 180 s"
        fi
        sleep 1
    done
    log "GET /health -> 200 $(cat "$WORK/health.json")"
}

# A 40x40 PNG made with the standard library only (no Pillow on the host).
write_png() {
    python3 - "$1" <<'EOF'
import struct, sys, zlib
w = h = 40
rows = b"".join(b"\x00" + bytes(v for x in range(w) for v in (x * 6, y * 6, 128)) for y in range(h))
chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
EOF
}

call_api() {
    local url="http://127.0.0.1:$PORT" code key_header="Authorization: Bearer $API_KEY"
    write_png "$WORK/image.png"
    for header in "X-No-Key: none" "X-API-Key: not-the-key-0123456789"; do
        code="$(curl -sS -o "$WORK/refused.json" -w '%{http_code}' -H "$header" -F "file=@$WORK/image.png" "$url/predict")"
        [[ "$code" == 401 ]] || die "POST /predict with '$header' answered $code, expected 401"
    done
    log "POST /predict without the API key, and with a wrong one -> 401 $(cat "$WORK/refused.json")"
    code="$(curl -sS -o "$WORK/predict.json" -w '%{http_code}' -H "$key_header" \
        -F "file=@$WORK/image.png;type=image/png" "$url/predict")"
    [[ "$code" == 200 ]] || { cat "$WORK/predict.json"; die "POST /predict answered $code"; }
    grep -qE '"(airplane|automobile|bird|cat|deer|dog|frog|horse|ship|truck)"' "$WORK/predict.json" ||
        die "POST /predict named no CIFAR-10 class: $(cat "$WORK/predict.json")"
    log "POST /predict (PNG) -> 200 $(head -c 300 "$WORK/predict.json")"

    echo "not an image" >"$WORK/not-an-image.txt"
    code="$(curl -sS -o "$WORK/bad.json" -w '%{http_code}' -H "$key_header" -F "file=@$WORK/not-an-image.txt" "$url/predict")"
    [[ "$code" == 4* ]] || die "POST /predict with a text file answered $code, expected a 4xx"
    log "POST /predict (text file) -> $code $(cat "$WORK/bad.json")"
}

# The image serves OIP over gRPC on 8001 (ENV ALEXNET_GRPC_PORT): grpc.health.v1 as Kubernetes' liveness probe asks
# it, and one ModelInfer of call_api's PNG (on stdin) with the key, by Triton's client, from inside the container
# (the image has the grpc extra; the port is not published here).
check_grpc() {
    podman exec -i -e KEY="$API_KEY" "$CONTAINER" python -c '
import os, socket, sys, numpy as np, grpc, tritonclient.grpc as triton
from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g
address = socket.gethostbyname(socket.gethostname()) + ":8001"  # the container address: gRPC must not listen on loopback only
health = g.HealthStub(grpc.insecure_channel(address))
for name in ("", "inference.GRPCInferenceService"):
    status = health.Check(h.HealthCheckRequest(service=name), timeout=10).status
    assert status == h.HealthCheckResponse.SERVING, (name, status)
client = triton.InferenceServerClient(address)
image = triton.InferInput("images", [1], "BYTES")
image.set_data_from_numpy(np.array([sys.stdin.buffer.read()], dtype=object))
result = client.infer("alexnet", [image], headers={"x-api-key": os.environ["KEY"]})
print(address, result.as_numpy("labels")[0].decode(), result.as_numpy("probabilities").shape)
' <"$WORK/image.png" >"$WORK/grpc.txt" || die "gRPC on 8001 did not answer (health SERVING, then ModelInfer with the key)"
    log "gRPC on 8001: grpc.health.v1 SERVING; ModelInfer with the key -> $(cat "$WORK/grpc.txt")"
}

check_container() {
    podman healthcheck run "$CONTAINER" >/dev/null || die "the image's HEALTHCHECK reported unhealthy"
    log "image HEALTHCHECK (podman healthcheck run) -> healthy"
    local uid
    uid="$(podman exec "$CONTAINER" id -u)"
    [[ "$uid" != 0 ]] || die "the service runs as root"
    # The lockdown, seen from inside: the root filesystem refuses writes, /tmp takes them, PID 1 has no
    # capabilities even in its bounding set, and cannot gain privileges.
    if podman exec "$CONTAINER" sh -c 'echo x >/srv/alexnet/x' 2>/dev/null; then die "the root filesystem is writable"; fi
    podman exec "$CONTAINER" sh -c 'echo x >/tmp/x' || die "/tmp is not writable"
    local status
    status="$(podman exec "$CONTAINER" grep -E '^(CapBnd|CapEff|NoNewPrivs):' /proc/1/status | tr -s ' \t' ' ' | paste -sd' ')"
    [[ "$status" == "CapEff: 0000000000000000 CapBnd: 0000000000000000 NoNewPrivs: 1" ]] ||
        die "PID 1 is not locked down: $status"
    log "read-only root, writable /tmp; PID 1 $status"
    check_grpc
    log "container memory after the requests: $(podman stats --no-stream --format '{{.MemUsage}}' "$CONTAINER" 2>/dev/null || echo 'not available')"
    log "service runs as uid $uid; processes: $(podman top "$CONTAINER" args | tail -n +2 | tr -s ' ' | paste -sd';')"
    # (podman also tries to remove a systemd healthcheck timer here and complains that systemd is absent)
    podman stop -t 10 "$CONTAINER" 2> >(grep -v 'systemd connection' >&2) >/dev/null
    log "stopped (exit code $(podman inspect -f '{{.State.ExitCode}}' "$CONTAINER"))"
}

# One step per line: under `set -e`, a function called on the left of `&&` runs with errexit off, so a failed
# command inside it would not stop the script.
# `--build`: only the tools, the base image and the image (apt-get, debootstrap and podman build: about 5 minutes
# from nothing, mostly network and disk), kept for a later `--run`, so that CI can build while the test suite
# runs; `--run`: only the container checks, on that image (then removed). No argument: both, one after the other.
main() {
    [[ $EUID == 0 ]] || die "run as root (podman needs it on this kind of machine)"
    if [[ "$MODE" != --run ]]; then
        build_steps
    else
        configure_podman  # its settings live in this process's environment: needed by every podman call
        podman image exists "$IMAGE" || die "no image $IMAGE: run verification/container_smoke.sh --build first"
    fi
    if [[ "$MODE" == --build ]]; then
        log "built: $IMAGE is ready for --run"
        return
    fi
    write_tiny_checkpoint
    timed "tiny checkpoint"
    start_container
    timed "container start -> /health 200"
    call_api
    check_container
    timed "/predict, healthcheck, stop"
    log "OK"
}

build_steps() {
    install_tools
    configure_podman
    timed "tools (apt-get when missing)"
    make_base_image
    timed "base image (debootstrap when missing)"
    check_build_context
    timed "build context check"
    pip_build_config
    build_image
    timed "podman build"
}

[[ "${BASH_SOURCE[0]}" != "$0" ]] || main  # sourcing it only defines the functions
