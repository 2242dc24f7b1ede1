"""Benchmarks that compare side by side, in one run, on one machine.

- ``python -m benchmarks.serving``: this service (batching on and off) against a plain FastAPI endpoint,
  LitServe and the model's in-process limit, with real image uploads over loopback.
- ``python -m benchmarks.training``: the project's trainer against the guide's DataLoader loop.

Results go to a folder as JSON and Markdown (and a PNG plot); docs/benchmarks.md explains them.
"""
