#!/bin/sh
# Train a checkpoint at $ALEXNET_CHECKPOINT unless one is already there; the arguments go to the trainer.
# The compose `train` service runs this (as alexnet-train-if-missing) before the API starts, so a second
# `docker compose up`, or a checkpoint of your own mounted at that path, starts serving at once.
#
# One exception: a first stand-in (a checkpoint recorded as trained by --recipe cpu-first, about a minute of
# CPU training so that there is something to serve at once) is there to be replaced. A run of any other recipe
# trains over it, and a service polling the file (ALEXNET_CHECKPOINT_POLL_S) takes the new one without a
# restart: docker-compose.cpu.yml's `train-on` service and `make serve` without a GPU do that.
#
#   ALEXNET_CHECKPOINT=/checkpoints/alexnet-cifar10.safetensors train_if_missing.sh --device cuda
set -eu

checkpoint="${ALEXNET_CHECKPOINT:?set ALEXNET_CHECKPOINT to the checkpoint path to train or keep}"
first=cpu-first  # models.checkpoint.FIRST_STAND_IN_RECIPE

# The --recipe the arguments ask for ("default" when none).
asked=default
previous=
for arg in "$@"; do
    case "$previous:$arg" in
        --recipe:*) asked="$arg" ;;
        *:--recipe=*) asked="${arg#--recipe=}" ;;
    esac
    previous="$arg"
done

if [ -f "$checkpoint" ]; then
    recorded="$(python -c 'import sys; from models.checkpoint import recorded_recipe; print(recorded_recipe(sys.argv[1]) or "")' "$checkpoint")"
    if [ "$recorded" != "$first" ] || [ "$asked" = "$first" ]; then
        echo "train: checkpoint $checkpoint already exists, not training (remove it to train again)"
        exit 0
    fi
    echo "train: $checkpoint is a first stand-in (recipe $first); training its replacement (recipe $asked)"
else
    echo "train: no checkpoint at $checkpoint; training"
fi

# --resume: a run that was stopped (container killed, host rebooted) goes on from the state file the trainer
# keeps beside the checkpoint (written at most every minute, at the end and on SIGTERM); with no state file it
# starts from the beginning. --stale-state restart: a state file of other settings (the image's recipe changed
# since, or the first stand-in's own) is kept aside as <name>.state.pt.stale and training starts afresh,
# instead of stopping the stack.
echo "train: python -m training --output $checkpoint --resume --stale-state restart $*"
exec python -m training --output "$checkpoint" --resume --stale-state restart "$@"
