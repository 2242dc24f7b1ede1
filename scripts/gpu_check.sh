#!/usr/bin/env bash
# The GPU check, one command: the CUDA tests, the training benchmark (the guide's loop, the seed recipe and
# a full-length default-recipe run to its final accuracy) and the serving benchmark, every result in one
# folder. Designed to finish within 8 minutes on one H100 (expected: install 0.5, tests 0.5, training 3.5,
# serving 3 minutes); each step has its own time limit, and a failed step does not stop the others.
#
#   verification/pack_gpu_check.sh            # where there is internet: wheels + data -> gpu-check-bundle/
#   scripts/gpu_check.sh                 # on the GPU host, from the repo root -> gpu-check-results/<time>/
#   scripts/gpu_check.sh --dry-run       # anywhere: the same steps on the CPU at tiny sizes, nothing installed
#
# Options: --bundle DIR (default gpu-check-bundle), --out DIR. Env: PYTHON (default python3),
# ALEXNET_DATA_DIR (the JPEG copy of CIFAR-10; default: unpacked from the bundle).
# The host needs PyTorch; missing web packages are installed offline from the bundle's wheels.
set -uo pipefail
cd "$(dirname "$0")/.." || exit

BUNDLE=gpu-check-bundle
OUT=""
DRY_RUN=0
PYTHON=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) BUNDLE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-gpu-check-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1

SUMMARY=()
run_step() {  # NAME LIMIT_S COMMAND...: run it under a time limit, record its exit code and duration
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout --kill-after=15 "$limit" "$@"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
    SUMMARY+=("| $name | $rc | $((SECONDS - start)) s |")
}

web_packages_present() {
    "$PYTHON" -c "import fastapi, fastapi_offline, uvicorn, multipart, pydantic_settings, prometheus_client, safetensors, httpx, litserve, pytest" \
        2>/dev/null
}

# 1. Packages: offline, from the bundle's wheels, only when something is missing.
if web_packages_present; then
    echo "=== web packages already installed"
elif [ "$DRY_RUN" = 1 ]; then
    echo "=== dry run: web packages missing; a real run installs them from $BUNDLE/wheels" >&2
else
    run_step install 180 "$PYTHON" -m pip install --quiet --no-index --find-links "$BUNDLE/wheels" \
        -r "$BUNDLE/requirements.txt"
fi

# 2. Data: the JPEG copy of CIFAR-10, unpacked from the bundle unless ALEXNET_DATA_DIR points at one.
DATA=${ALEXNET_DATA_DIR:-$BUNDLE/data/cifar-jpeg}
if [ ! -d "$DATA/train" ] && [ -f "$BUNDLE/cifar-jpeg.tar.xz" ]; then
    mkdir -p "$BUNDLE/data"
    run_step unpack-data 120 tar -xJf "$BUNDLE/cifar-jpeg.tar.xz" -C "$BUNDLE/data"
fi

# 3. What this ran on.
{
    nvidia-smi 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c "import torch, platform; print('python', platform.python_version(), 'torch', torch.__version__, \
'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
    nproc
} >"$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

if [ "$DRY_RUN" = 1 ]; then
    DEVICE=cpu
    TRAINING=(--device cpu --train-per-class 8 --test-per-class 2)
    # shellcheck disable=SC2054  # the commas are inside a value (the list of servers)
    SERVING=(--device cpu --quick --servers service,service-nobatch,plain-fastapi,litserve)
else
    DEVICE=cuda
    TRAINING=(--device cuda --full --guide-max-steps 150)
    # The first LitServe configuration only: its variants (benchmarks/servers/catalog.py) would not fit in the time
    # shellcheck disable=SC2054  # the commas are inside values (the servers, KIND:IMAGES:LEVELS)
    SERVING=(--device cuda --servers service,service-nobatch,plain-fastapi,litserve --client-processes 4
             --duration 3 --warmup 1.5 --limit-seconds 1
             --scenario cifar:1:1,32,128 --scenario cifar:64:4,16 --scenario photo:1:32)
fi

# 4. The CUDA tests (skipped, not failed, on a CPU-only dry run).
run_step cuda-tests 150 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider --junitxml "$OUT/cuda-tests.xml"

# 5. Training: the guide's loop against the trainer; on the GPU the full-length recipes and their accuracy.
if [ -d "$DATA/train" ]; then
    run_step training-benchmark 300 "$PYTHON" -m benchmarks.training "${TRAINING[@]}" --data-dir "$DATA" --out "$OUT"
else
    echo "=== no training data at $DATA: training benchmark skipped" >&2
    SUMMARY+=("| training-benchmark | skipped: no data at $DATA | - |")
fi

# 6. Serving: this service, batching off, plain FastAPI, LitServe and the in-process limit, on $DEVICE.
run_step serving-benchmark 270 "$PYTHON" -m benchmarks.serving "${SERVING[@]}" --cifar-dir "$DATA/test" --out "$OUT"

{
    echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), device $DEVICE$([ "$DRY_RUN" = 1 ] && echo ', dry run')"
    echo
    echo '| step | exit code | time |'
    echo '| --- | --- | --- |'
    printf '%s\n' "${SUMMARY[@]}"
    for part in training serving; do
        [ -f "$OUT/$part.md" ] && { echo; echo "## $part"; echo; cat "$OUT/$part.md"; }
    done
} >"$OUT/SUMMARY.md"
echo "=== results in $OUT (SUMMARY.md, gpu_check.log, *.json, *.md, serving.png, cuda-tests.xml)"
