#!/bin/sh
# Train a checkpoint at $ALEXNET_CHECKPOINT unless one is already there; the arguments go to the trainer.
# The compose `train` service runs this (as alexnet-train-if-missing) before the API starts, so a second
# `docker compose up`, or a checkpoint of your own mounted at that path, starts serving at once.
#
#   ALEXNET_CHECKPOINT=/checkpoints/alexnet-cifar10.safetensors train_if_missing.sh --device cuda
set -eu

checkpoint="${ALEXNET_CHECKPOINT:?set ALEXNET_CHECKPOINT to the checkpoint path to train or keep}"

if [ -f "$checkpoint" ]; then
    echo "train: checkpoint $checkpoint already exists, not training (remove it to train again)"
    exit 0
fi

# --resume: a run that was stopped (container killed, host rebooted) goes on from the state file the trainer
# keeps beside the checkpoint (written at most every minute, at the end and on SIGTERM); with no state file it
# starts from the beginning. --stale-state restart: a state file of other settings (the image's recipe changed
# since) is kept aside as <name>.state.pt.stale and training starts afresh, instead of stopping the stack.
echo "train: no checkpoint at $checkpoint; training: python -m training --output $checkpoint --resume --stale-state restart $*"
exec python -m training --output "$checkpoint" --resume --stale-state restart "$@"
