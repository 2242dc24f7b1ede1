"""The README's settings table lists every setting the service reads."""

from __future__ import annotations

from app.config import Settings
from tests.helpers import REPO

README = REPO / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text()
    missing = [name for name in Settings.model_fields if f"| `ALEXNET_{name.upper()}` |" not in text]
    assert not missing, f"add these to README.md's settings table: {missing}"
