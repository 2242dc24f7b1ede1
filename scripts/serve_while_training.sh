#!/bin/sh
# Serve a checkpoint while a training run in the background may replace it (`make serve` without a GPU).
#
#   serve_while_training.sh CHECKPOINT "SERVE ARGS" TRAINER ARGS...
#
# The trainer runs through train_if_missing.sh, so it trains only over a first stand-in (--recipe cpu-first)
# and exits at once otherwise; the service polls the file (ALEXNET_CHECKPOINT_POLL_S, 10 s here unless set) and
# takes the new checkpoint without a restart when the trainer writes it. When the service stops (Ctrl-C), the
# trainer is stopped with SIGTERM, which saves its state: the next `make serve` resumes it.
# alexnet-serve and python are looked up on PATH (the Makefile puts its venv's bin first).
set -eu

checkpoint="${1:?usage: serve_while_training.sh CHECKPOINT \"SERVE ARGS\" TRAINER ARGS...}"
serve_args="${2-}"
shift 2

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

ALEXNET_CHECKPOINT="$checkpoint" "$here/train_if_missing.sh" "$@" &
trainer=$!

export ALEXNET_CHECKPOINT_POLL_S="${ALEXNET_CHECKPOINT_POLL_S:-10}"
# $serve_args is split on spaces on purpose: --host H --port P.
# shellcheck disable=SC2086
alexnet-serve --checkpoint "$checkpoint" $serve_args
