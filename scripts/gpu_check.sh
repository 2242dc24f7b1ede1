#!/usr/bin/env bash
# The GPU check: everything GPU in one command, under one deadline, ordered by value (docs/gpu.md).
#
#   verification/pack_gpu_check.sh          # here first: wheels + training data -> gpu-check-bundle/
#   scripts/gpu_check.sh --out "$OUT"       # on the GPU host, from the repo root (carry gpu-check-bundle there)
#   scripts/gpu_check.sh --device cpu --budget-s 240 --bundle B --out DIR   # the CPU rehearsal, tiny sizes (CI)
#
# Steps, in order: install (the bundle's wheels, offline) and unpack the data; the default recipe alone (its
# metrics.json, train.log and report.html copied to OUT as soon as it ends); this service on the device with
# that checkpoint (1 image per request at 1, 32 and 128 clients, 64 images at 2; the in-process limit); the
# model-free ceiling; the guide's loop and the seed recipe; the CUDA tests; the peers beside the service.
# Each step gets what is left of the budget (less a reserve for the end), not a fixed share: a step that runs
# out is stopped, what it wrote is kept, and the next step still runs (if at least MIN_STEP_S is left).
# After every step, and on exit or SIGTERM, SUMMARY.md is rewritten and everything else is packed into
# results.tar.gz: OUT holds at most 6 files (SUMMARY.md, gpu_check.log, metrics.json, train.log, report.html,
# results.tar.gz). Processes a step leaves behind (benchmark servers run in sessions of their own) are killed.
# Exit status 0 when every step passed, 1 otherwise.
#
# Options: --out DIR (required), --budget-s S (default 480: one 600 s call with room for the machine's start),
# --bundle DIR (default gpu-check-bundle), --data DIR (training data already on the host; default: the
# bundle's), --device cuda|cpu (default cuda; cpu runs the same steps at tiny sizes). Env: PYTHON (python3).
# shellcheck disable=SC2054  # commas inside values (KIND:IMAGES:LEVELS scenarios), not between array elements
set -uo pipefail
cd "$(dirname "$0")/.." || exit

OUT=""
BUDGET_S=480
BUNDLE=gpu-check-bundle
DATA=""
DEVICE=cuda
PYTHON=${PYTHON:-python3}
RESERVE_S=20   # kept back from every step for the summary and the archive at the end
MIN_STEP_S=15  # a step with less than this left is skipped, not started
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --budget-s) BUDGET_S=$2; shift 2 ;;
        --bundle) BUNDLE=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$OUT" ] || { echo "gpu_check: --out DIR is required (the folder whose files come back)" >&2; exit 2; }
case "$DEVICE" in cuda | cpu) ;; *) echo "gpu_check: --device must be cuda or cpu" >&2; exit 2 ;; esac
case "$BUDGET_S" in '' | *[!0-9]*) echo "gpu_check: --budget-s must be whole seconds" >&2; exit 2 ;; esac

DEADLINE=$((SECONDS + BUDGET_S))
mkdir -p "$OUT" || exit
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX") || exit
TAG="gpu-check-$$-$RANDOM"  # in the environment of every step's processes, so that none outlives its step
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
echo "=== GPU check on $DEVICE, budget ${BUDGET_S} s, work folder $WORK, results in $OUT"

kill_step_processes() {  # PATTERN: TERM, then KILL, every process whose GPU_CHECK_STEP matches PATTERN
    local pids=() pid
    for pid in /proc/[0-9]*; do
        grep -qzx "GPU_CHECK_STEP=$1" "$pid/environ" 2>/dev/null && pids+=("${pid#/proc/}")
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    echo "=== stopping ${#pids[@]} process(es) left by the step: ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null
    sleep 3
    kill -KILL "${pids[@]}" 2>/dev/null
    return 0
}

summarise() {  # SUMMARY.md from the steps so far, then everything else into results.tar.gz, atomically
    "$PYTHON" verification/gpu_results.py --work "$WORK" --out "$OUT" --device "$DEVICE" --budget-s "$BUDGET_S" ||
        { echo "# GPU check (the summary script failed: the raw step table)"; cat "$WORK/steps.tsv"; } >"$OUT/SUMMARY.md"
    tar -C "$WORK" --exclude='*.safetensors' --exclude='*.state.pt*' -czf "$OUT/.results.tar.gz.part" . &&
        mv -f "$OUT/.results.tar.gz.part" "$OUT/results.tar.gz"
}

STEP=""
# shellcheck disable=SC2329  # called by the EXIT trap
finish() {  # on exit, normal or not: nothing left running, the last summary and archive written
    trap - EXIT TERM INT
    if [ -n "$STEP" ]; then
        kill_step_processes "$TAG-$STEP"
        printf '%s\tstopped\t%s\tthe check was stopped during this step\n' "$STEP" "$((SECONDS - STEP_STARTED))" \
            >>"$WORK/steps.tsv"
    fi
    kill_step_processes "$TAG-.*"
    summarise
    echo "=== results in $OUT: $(find "$OUT" -maxdepth 1 -type f -printf '%f ')"
    # The work folder (about 1.8 GB on the CPU rehearsal: data, checkpoints, installs) is in the archive but
    # for its checkpoints; left behind, every run filled /tmp further. GPU_CHECK_KEEP_WORK=1 keeps it.
    [ -n "${GPU_CHECK_KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap finish EXIT
trap 'exit 143' TERM INT

FAILED=0
step() {  # NAME COMMAND...: run it with what is left of the budget; its output in WORK/NAME.log and here
    local name=$1 left=$((DEADLINE - SECONDS - RESERVE_S)) rc
    shift
    if [ "$left" -lt "$MIN_STEP_S" ]; then
        printf '%s\tskipped\t0\tno time left (%s s of the budget)\n' "$name" "$left" >>"$WORK/steps.tsv"
        FAILED=1
        summarise
        return 1
    fi
    echo "=== $name (up to $((left - 10)) s): $*"
    STEP=$name STEP_STARTED=$SECONDS
    # In the background, so that a SIGTERM to this script is handled at once, not after the step.
    (GPU_CHECK_STEP="$TAG-$name" timeout --kill-after=10 "$((left - 10))" "$@" 2>&1 | tee "$WORK/$name.log") &
    wait $!
    rc=$?
    STEP=""
    kill_step_processes "$TAG-$name"
    local note=""
    [ "$rc" = 124 ] && note="stopped at its time limit: what is left of the budget"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - STEP_STARTED))" "$note" >>"$WORK/steps.tsv"
    echo "=== $name: exit $rc after $((SECONDS - STEP_STARTED)) s"
    [ "$rc" = 0 ] || FAILED=1
    summarise
    return "$rc"
}

note() {  # NAME WHY: a step that does not run, and why (not a failure)
    printf '%s\tnot run\t0\t%s\n' "$1" "$2" >>"$WORK/steps.tsv"
}

# What this ran on: the card, the drivers, the Python packages.
{
    nvidia-smi 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c "import platform, torch; print('python', platform.python_version(), 'torch', torch.__version__, \
'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
    echo "cpu cores: $(nproc)"
} >"$WORK/environment.txt" 2>&1
cat "$WORK/environment.txt"

# 1. Packages, offline, from the bundle's wheels (pip installs only what the host lacks); then the data.
if [ -f "$BUNDLE/requirements.txt" ]; then
    step install "$PYTHON" -m pip install --no-index --find-links "$BUNDLE/wheels" -r "$BUNDLE/requirements.txt"
else
    note install "no bundle at $BUNDLE (verification/pack_gpu_check.sh makes it): the host's own packages"
fi
if [ -z "$DATA" ] && [ -f "$BUNDLE/data.tar.xz" ]; then
    DATA=$BUNDLE/data
    [ -d "$DATA/train" ] || { mkdir -p "$DATA" && step unpack-data tar -xJf "$BUNDLE/data.tar.xz" -C "$DATA"; }
fi
if [ -n "$DATA" ] && [ ! -d "$DATA/train" ]; then
    echo "=== no training data at $DATA (train/<class>/, test/<class>/): the training steps are skipped" >&2
    DATA=""
fi

if [ "$DEVICE" = cuda ]; then
    DEFAULT_RECIPE=()  # the recipe as users run it
    LOAD=(--client-processes 4 --duration 5 --warmup 2)
    SERVICE_SCENARIOS=(--scenario cifar:1:1,32,128 --scenario cifar:64:2 --limit-seconds 1)
    CEILING_SCENARIOS=(--scenario cifar:1:32,128)
    GUIDE_AND_SEED=(--full --guide-max-steps 150)
else  # the rehearsal: the same steps, sized for seconds on two cores
    DEFAULT_RECIPE=(--epochs 1 --input-size 64 --batch-size 32 --decode-workers 1)
    LOAD=(--duration 1 --warmup 0.5)
    SERVICE_SCENARIOS=(--scenario cifar:1:1,4 --scenario cifar:8:2 --limit-seconds 0.2)
    CEILING_SCENARIOS=(--scenario cifar:1:4)
    GUIDE_AND_SEED=(--train-per-class 8 --test-per-class 2 --guide-max-steps 3)
fi

# 2. The default recipe alone: the number the project is about.
CHECKPOINT=$WORK/default/alexnet-cifar10.safetensors
if [ -n "$DATA" ]; then
    step train-default "$PYTHON" -m training --data-dir "$DATA" --device "$DEVICE" --output "$CHECKPOINT" \
        --no-progress --no-download "${DEFAULT_RECIPE[@]}"
    for file in "$WORK/default/metrics.json" "$WORK/default/report.html"; do
        [ -f "$file" ] && cp "$file" "$OUT/"
    done
    [ -f "$WORK/train-default.log" ] && cp "$WORK/train-default.log" "$OUT/train.log"
else
    note train-default "no training data"
fi

# 3. This service on the device, with the trained checkpoint (its abstention rule included); random weights
#    at the default input size when there is none.
if [ ! -f "$CHECKPOINT" ]; then
    CHECKPOINT=$WORK/random.safetensors
    [ "$DEVICE" = cuda ] && size=224 || size=64
    "$PYTHON" -c "import sys; from models import save_random_checkpoint as s; s(sys.argv[1], input_size=int(sys.argv[2]), with_rule=True)" \
        "$CHECKPOINT" "$size" && echo "=== no trained checkpoint: serving random weights ($CHECKPOINT)"
fi
CIFAR_TEST=${DATA:+$DATA/test}
CIFAR_TEST=${CIFAR_TEST:-$WORK/no-data}  # absent: the benchmarks generate their pictures
step serving "$PYTHON" -m benchmarks.serving --servers service --checkpoint "$CHECKPOINT" --device "$DEVICE" \
    --cifar-dir "$CIFAR_TEST" --out "$WORK/serving" "${LOAD[@]}" "${SERVICE_SCENARIOS[@]}"

# 4. The model-free ceiling: what the service costs per request around the model, beside the bare-FastAPI floor.
step serving-model-free "$PYTHON" -m benchmarks.serving --model-free --servers service --device "$DEVICE" \
    --cifar-dir "$CIFAR_TEST" --out "$WORK/serving-model-free" "${LOAD[@]}" "${CEILING_SCENARIOS[@]}"

# 5. The guide's loop and the seed recipe (the default recipe ran above).
if [ -n "$DATA" ]; then
    step guide-and-seed "$PYTHON" -m benchmarks.training --device "$DEVICE" --recipes seed --data-dir "$DATA" \
        --out "$WORK/training" --runs-dir "$WORK/training/runs" "${GUIDE_AND_SEED[@]}"
else
    note guide-and-seed "no training data"
fi

# 6. The CUDA tests (all skipped on a CPU).
step cuda-tests "$PYTHON" -m pytest tests/cuda -q -p no:cacheprovider --junitxml "$WORK/cuda-tests.xml"

# 7. The peers beside the service, same checkpoint and load.
step serving-peers "$PYTHON" -m benchmarks.serving --servers service,plain-fastapi,litserve --no-limit \
    --checkpoint "$CHECKPOINT" --device "$DEVICE" --cifar-dir "$CIFAR_TEST" --out "$WORK/serving-peers" \
    "${LOAD[@]}" "${CEILING_SCENARIOS[@]}"

exit "$FAILED"
