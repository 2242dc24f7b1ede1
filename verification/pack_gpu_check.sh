#!/usr/bin/env bash
# Build gpu-check-bundle/, what scripts/gpu_check.sh needs on a GPU host that has PyTorch but no internet:
#   wheels/            the service's, the benchmarks' and the tests' packages beyond the PyTorch stack, as wheels
#                      for the host's Python (pip installs only those the host lacks; docs/gpu.md)
#   requirements.txt   what to install from them
#   data.tar.xz        the training data as image folders train/<class>/ + test/<class>/ (the JPEG copy of
#                      CIFAR-10: about 19 MB)
#
#   verification/pack_gpu_check.sh                          # the data from $ALEXNET_DATA_DIR, data/cifar-jpeg or data
#   verification/pack_gpu_check.sh --data ~/cifar-10-python.tar.gz       # the python version, turned into JPEGs
#   verification/pack_gpu_check.sh --no-data                 # no training: the check serves random weights
#
# Options: --data DIR|ARCHIVE, --no-data, --dest DIR (default gpu-check-bundle), --python-version X.Y (the
# host's: 3.12), --arch (the host's: x86_64). Env: PYTHON (python3 with the project's packages, for the python
# version's conversion). Needs a package index; a minute or two. The bundle, the data and the repository
# together must stay within the 64 MiB a device call may carry: it refuses to finish otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=gpu-check-bundle
DATA=""
NO_DATA=0
PY_VERSION=3.12
ARCH=x86_64
PYTHON=${PYTHON:-python3}
CARRY_LIMIT_MB=64
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA=$2; shift 2 ;;
        --no-data) NO_DATA=1; shift ;;
        --dest) DEST=$2; shift 2 ;;
        --python-version) PY_VERSION=$2; shift 2 ;;
        --arch) ARCH=$2; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "pack_gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

holds_data() {  # DIR or FILE: image folders, the CIFAR-10 python version, or its archive
    [ -d "$1/train" ] && [ -d "$1/test" ] && return 0
    [ -f "$1/data_batch_1" ] || [ -d "$1/cifar-10-batches-py" ] || [ -f "$1/cifar-10-python.tar.gz" ] && return 0
    [ -f "$1" ] && case "$1" in *.tar.gz | *.tgz) return 0 ;; esac
    return 1
}

# 1. Find the data first: a bundle without it would be found wanting only on the GPU host.
if [ "$NO_DATA" = 0 ]; then
    if [ -z "$DATA" ]; then
        for candidate in ${ALEXNET_DATA_DIR:+"$ALEXNET_DATA_DIR"} data/cifar-jpeg data; do
            holds_data "$candidate" && { DATA=$candidate; break; }
        done
    fi
    if [ -z "$DATA" ] || ! holds_data "$DATA"; then
        echo "pack_gpu_check: no training data ${DATA:+at $DATA }(looked for image folders train/<class>/ and" \
            "test/<class>/, the CIFAR-10 python version or its archive${DATA:+; }${DATA:-, in \$ALEXNET_DATA_DIR," \
            "data/cifar-jpeg and data}). Put the JPEG copy of CIFAR-10 in data/cifar-jpeg (docs/gpu.md), pass" \
            "--data DIR, or --no-data to pack without it (the GPU check then trains nothing)." >&2
        exit 1
    fi
fi

rm -rf "$DEST/wheels" "$DEST/data" "$DEST/requirements.txt" "$DEST/data.tar.xz"  # what an earlier pack made
mkdir -p "$DEST/wheels"

# 2. The project's runtime dependencies, its [bench] extra and pytest (the CUDA tests), less the PyTorch stack
#    every GPU host has (torch alone is GBs); their own dependencies come along.
"$PYTHON" - "$DEST/requirements.txt" <<'PY'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
present = {"torch", "torchvision", "numpy", "pillow", "matplotlib", "tqdm"}
extras = project["optional-dependencies"]
pytest = [d for d in extras["dev"] if re.match(r"pytest\b", d)]
wanted = [d for d in project["dependencies"] + extras["bench"] + pytest
          if re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() not in present]
open(sys.argv[1], "w").write("\n".join(wanted) + "\n")
print("requirements:", ", ".join(wanted))
PY
platforms=()
for tag in manylinux1 manylinux2010 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_26 manylinux_2_27 \
           manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35 manylinux_2_39; do
    platforms+=(--platform "${tag}_$ARCH")
done
"$PYTHON" -m pip download --quiet --only-binary=:all: --implementation cp --python-version "$PY_VERSION" \
    "${platforms[@]}" --dest "$DEST/wheels" -r "$DEST/requirements.txt"
echo "wheels: $(find "$DEST/wheels" -name '*.whl' | wc -l) files, $(du -sh "$DEST/wheels" | cut -f1), for" \
    "Python $PY_VERSION on $ARCH"

# 3. The data, as image folders in a solid xz archive (the small JPEGs share headers and tables: about 3x).
if [ "$NO_DATA" = 0 ]; then
    folders=$DATA
    if ! { [ -d "$DATA/train" ] && [ -d "$DATA/test" ]; }; then
        folders=$(mktemp -d)
        trap 'rm -rf "$folders"' EXIT
        source=$DATA
        [ -f "$DATA/cifar-10-python.tar.gz" ] && source=$DATA/cifar-10-python.tar.gz
        "$PYTHON" -m verification.cifar_jpeg "$source" "$folders"
    fi
    tar -C "$folders" -cf - train test | xz -T0 -6 >"$DEST/data.tar.xz"
    echo "data: $(du -sh "$DEST/data.tar.xz" | cut -f1) from $DATA"
fi

# 4. What a device call carries: this bundle and the repository's files (tracked and untracked, not ignored).
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
bundle_bytes=$(du -sb "$DEST" | cut -f1)
total_mb=$(((tree_bytes + bundle_bytes) / 1048576))
if [ "$total_mb" -ge "$CARRY_LIMIT_MB" ]; then
    echo "pack_gpu_check: the bundle ($((bundle_bytes / 1048576)) MiB) and the repository ($((tree_bytes / 1048576))" \
        "MiB) are ${total_mb} MiB, over the ${CARRY_LIMIT_MB} MiB a device call carries: use the JPEG copy of" \
        "CIFAR-10 (docs/gpu.md) or remove untracked files" >&2
    exit 1
fi
echo "bundle ready: $DEST ($((bundle_bytes / 1048576)) MiB; with the repository ${total_mb} of ${CARRY_LIMIT_MB} MiB)."
echo "On the GPU host: scripts/gpu_check.sh --out DIR (device tool: carry [\"$DEST\"]; docs/gpu.md)"
