"""``python -m training`` is ``alexnet-train``."""

from training.train import cli

if __name__ == "__main__":
    cli()
