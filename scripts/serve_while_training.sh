#!/bin/sh
# Serve a checkpoint while a training run in the background may replace it (`make serve` without a GPU).
#
#   serve_while_training.sh CHECKPOINT HOST PORT TRAINER ARGS...
#
# The trainer runs through train_if_missing.sh, so it trains only over a first stand-in (--recipe cpu-first)
# and exits at once otherwise. It starts once the service answers, so that the speed its first steps measure
# (a time budget's) is not the service's start-up's; the service polls the file (ALEXNET_CHECKPOINT_POLL_S,
# 10 s here unless set) and takes the new checkpoint without a restart when the trainer writes it. When the service stops (Ctrl-C), the
# trainer is stopped with SIGTERM, which saves its state: the next `make serve` resumes it.
# alexnet-serve and python are looked up on PATH (the Makefile puts its venv's bin first).
set -eu

usage="usage: serve_while_training.sh CHECKPOINT HOST PORT TRAINER ARGS..."
checkpoint="${1:?$usage}"
host="${2:?$usage}"
port="${3:?$usage}"
shift 3

here="$(cd "$(dirname "$0")" && pwd)"
trainer=
stop_trainer() {
    if [ -n "$trainer" ] && kill -0 "$trainer" 2>/dev/null; then
        echo "serve: stopping the background training (its state is saved; make serve resumes it)"
        kill -TERM "$trainer" 2>/dev/null || true
        wait "$trainer" || true
    fi
}
trap stop_trainer EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One process throughout, so that the TERM above reaches whichever part runs: it waits (at most 5 minutes) for
# the service's liveness, then becomes train_if_missing.sh (exec), which becomes the trainer.
ALEXNET_CHECKPOINT="$checkpoint" python -c 'import os, sys, time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/health/live", timeout=2)
        break
    except OSError:
        time.sleep(0.5)
os.execv(sys.argv[3], sys.argv[3:])' "$host" "$port" "$here/train_if_missing.sh" "$@" &
trainer=$!

export ALEXNET_CHECKPOINT_POLL_S="${ALEXNET_CHECKPOINT_POLL_S:-10}"
alexnet-serve --checkpoint "$checkpoint" --host "$host" --port "$port"
