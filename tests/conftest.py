from __future__ import annotations

import os
from pathlib import Path

import pytest

# The suite starts about a thousand p2pchat processes. Where the environment forbids bytecode files
# (PYTHONDONTWRITEBYTECODE, set on some machines), each would compile the package from source again:
# about a third of its start-up. Let them cache it (in __pycache__, per Python version).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.fixture
def homes(tmp_path: Path) -> tuple[Path, Path]:
    """Separate P2PCHAT_HOME directories for the two peers."""
    a, b = tmp_path / "home-a", tmp_path / "home-b"
    return a, b
