"""The FastAPI service: ``alexnet-serve`` (or ``python -m app``); see docs/serving.md."""
