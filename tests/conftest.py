from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def homes(tmp_path: Path) -> tuple[Path, Path]:
    """Separate P2PCHAT_HOME directories for the two peers."""
    a, b = tmp_path / "home-a", tmp_path / "home-b"
    return a, b
