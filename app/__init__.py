"""The FastAPI service: ``uvicorn app.main:app`` or ``alexnet-serve``; see docs/serving.md."""
