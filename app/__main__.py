"""``python -m app`` is ``alexnet-serve``."""

from app.cli import serve

if __name__ == "__main__":
    serve()
