#!/usr/bin/env bash
# The GPU check rehearsed on the CPU, as CI runs it (.ci/run): the very same scripts/gpu_check.sh (same steps,
# same order, --device cpu: tiny sizes) and the same packing, in an environment like the GPU host's, then a check
# that every step passed and every expected file came back. A harness that fails here would fail on the GPU.
#
#   verification/rehearse_gpu_check.sh          # after the README's install (.venv); about 3 minutes
#
# 1. generated training data (10 classes of JPEGs) packed by verification/pack_gpu_check.sh, wheels for this
#    machine's Python; 2. a venv that sees only the GPU host's packages (verification/gpu_host_env.py: torch,
#    numpy, pytest..., no web stack, no tritonclient); 3. scripts/gpu_check.sh --device cpu in it, under a budget;
# 4. verification/gpu_results.py --check on what came back. Everything is made under gpu-check-rehearsal/.
# Env: PYTHON (default .venv/bin/python, with the project's packages), BUDGET_S (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
BUDGET_S=${BUDGET_S:-300}
HERE=gpu-check-rehearsal  # git-ignored; beside .venv, so the environment can hard-link its packages
rm -rf "$HERE"
mkdir -p "$HERE"

echo "=== rehearsal: generated data, packed as for the GPU"
"$PYTHON" - "$HERE/data" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from models.transforms import CIFAR10_CLASSES

root, rng = Path(sys.argv[1]), np.random.default_rng(0)
for split, count in (("train", 16), ("test", 8)):  # the serving benchmark takes 64 test images, 7 of a class
    for label, name in enumerate(CIFAR10_CLASSES):
        (root / split / name).mkdir(parents=True)
        colour = rng.integers(0, 256, 3)  # each class its own colour, so that a step of training has signal
        for i in range(count):
            pixels = np.clip(colour + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / name / f"{i:04d}.jpg", quality=75)
PY
version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
PYTHON=$PYTHON verification/pack_gpu_check.sh --data "$HERE/data" --dest "$HERE/bundle" \
    --python-version "$version" --arch "$(uname -m)"

echo "=== rehearsal: an environment like the GPU host's"
"$PYTHON" verification/gpu_host_env.py "$HERE/env"

echo "=== rehearsal: scripts/gpu_check.sh --device cpu --budget-s $BUDGET_S"
rc=0
PYTHON=$HERE/env/bin/python scripts/gpu_check.sh --device cpu --budget-s "$BUDGET_S" --bundle "$HERE/bundle" \
    --out "$HERE/out" || rc=$?
cat "$HERE/out/SUMMARY.md"
"$PYTHON" verification/gpu_results.py --check "$HERE/out"
[ "$rc" = 0 ] || { echo "rehearsal: scripts/gpu_check.sh exited $rc" >&2; exit 1; }
