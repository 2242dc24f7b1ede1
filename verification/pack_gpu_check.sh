#!/usr/bin/env bash
# Pack what scripts/gpu_check.sh needs on a GPU host that has PyTorch but no internet and no web packages:
#   gpu-check-bundle/wheels/            the service's and the benchmarks' packages as wheels (no torch, numpy, pillow)
#   gpu-check-bundle/requirements.txt   what to install from them
#   gpu-check-bundle/cifar-jpeg.tar.xz  the JPEG copy of CIFAR-10 (train/ + test/), about 19 MB
#
#   verification/pack_gpu_check.sh [DEST]     # env: GPU_PYTHON_VERSION (default 3.12), ALEXNET_DATA_DIR (the JPEG copy)
# Needs a package index (pip's configuration) and python3 >= 3.11 here; takes a minute or two (xz).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${1:-gpu-check-bundle}
PY_VERSION=${GPU_PYTHON_VERSION:-3.12}
DATA=${ALEXNET_DATA_DIR:-data}
PYTHON=${PYTHON:-python3}
mkdir -p "$DEST/wheels"

# The project's runtime dependencies, its [bench] extra and pytest (for the CUDA tests), less what a PyTorch
# host already has.
"$PYTHON" - "$DEST/requirements.txt" <<'PY'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
present = {"torch", "torchvision", "numpy", "pillow", "matplotlib", "tqdm"}  # on any PyTorch host; torch is GBs
extras = project["optional-dependencies"]
pytest = [d for d in extras["dev"] if d.startswith("pytest")]
wanted = [d for d in project["dependencies"] + extras["bench"] + pytest
          if re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() not in present]
open(sys.argv[1], "w").write("\n".join(wanted) + "\n")
print("requirements:", ", ".join(wanted))
PY

platforms=()
for tag in manylinux1 manylinux2010 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_26 manylinux_2_27 \
           manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35 manylinux_2_39; do
    platforms+=(--platform "${tag}_x86_64")
done
"$PYTHON" -m pip download --quiet --only-binary=:all: --implementation cp --python-version "$PY_VERSION" \
    "${platforms[@]}" --dest "$DEST/wheels" -r "$DEST/requirements.txt"
echo "wheels: $(find "$DEST/wheels" -name "*.whl" | wc -l) files, $(du -sh "$DEST/wheels" | cut -f1)"

if [ -d "$DATA/train" ] && [ -d "$DATA/test" ]; then
    # A solid xz archive: the small JPEGs share headers and tables, so they pack about 12x.
    tar -C "$(dirname "$DATA")" -cf - "$(basename "$DATA")/train" "$(basename "$DATA")/test" \
        | xz -T0 -6 > "$DEST/cifar-jpeg.tar.xz"
    echo "data: $(du -sh "$DEST/cifar-jpeg.tar.xz" | cut -f1) from $DATA"
else
    echo "no JPEG copy of CIFAR-10 at $DATA (set ALEXNET_DATA_DIR): the bundle has no data" >&2
fi
echo "bundle ready: $DEST ($(du -sh "$DEST" | cut -f1))"
