"""The floor of the model-free runs: FastAPI and uvicorn alone, with nothing of a model behind them.

The endpoint lets Starlette's form parser read the upload (``await request.form()``: the multipart parsing
every FastAPI server pays), then answers a fixed prediction per file, with no decode and no model. What it
measures is the framework's own cost per request, under which no FastAPI server can go; the other servers'
model-free figures are read against it. It imports neither torch nor the project.

Run: uvicorn benchmarks.servers.bare_fastapi:app
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

FIXED_PREDICTION = {"label": "airplane", "probability": 1.0}  # the load generator counts predictions, no more

app = FastAPI(title="bare FastAPI floor")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(request: Request) -> JSONResponse:
    """One fixed prediction per uploaded file in the field ``file``; the files are parsed, never read."""
    async with request.form() as form:  # closes the spooled files when done, as FastAPI's File(...) does
        count = len(form.getlist("file"))
    if not count:
        return JSONResponse({"detail": "no file uploaded in the field 'file'"}, status_code=422)
    return JSONResponse({"predictions": [FIXED_PREDICTION] * count})
