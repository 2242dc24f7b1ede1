"""alexnet-predict runs the service's pipeline on files and prints the same JSON as POST /predict."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.cli import predict
from tests.app.helpers import LiveServer, encode, picture


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    made = []
    for i, (fmt, suffix) in enumerate([("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp")]):
        path = folder / f"picture{i}.{suffix}"
        path.write_bytes(encode(picture(64 + 16 * i, 48, seed=i), fmt))
        made.append(path)
    return made


def run_predict(argv: list[str], capsys) -> dict:
    predict(argv)
    return json.loads(capsys.readouterr().out)


def test_cli_and_service_give_identical_json(
    server: LiveServer, tiny_checkpoint: Path, image_files: list[Path], capsys
) -> None:
    for k in (5, 10):
        printed = run_predict(["--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--top-k", str(k)]
                              + [str(p) for p in image_files], capsys)  # fmt: skip
        uploads = [("file", (p.name, p.read_bytes())) for p in image_files]
        served = httpx.post(f"{server.url}/predict", params={"top_k": k}, files=uploads).json()
        assert printed == served
        assert [p["filename"] for p in printed["predictions"]] == [p.name for p in image_files]


def test_cli_names_a_bad_file(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(SystemExit) as exit_:
        predict(["--checkpoint", str(tiny_checkpoint), str(text)])
    assert exit_.value.code == 1
    assert "'notes.txt': not a supported image" in capsys.readouterr().err


def test_cli_missing_file_and_checkpoint(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        predict(["--checkpoint", str(tiny_checkpoint), str(tmp_path / "absent.png")])
    assert exit_.value.code == 1 and "absent.png" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        predict(["--checkpoint", str(tmp_path / "none.safetensors"), str(tmp_path / "absent.png")])
    assert exit_.value.code == 1 and "no such file" in capsys.readouterr().err
