from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pchat.link import files

DISK_WAIT = 10.0  # seconds a slow_disk write waits for the test to let it through

# The suite starts about a thousand p2pchat processes. Where the environment forbids bytecode files
# (PYTHONDONTWRITEBYTECODE, set on some machines), each would compile the package from source again:
# about a third of its start-up. Let them cache it (in __pycache__, per Python version).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.fixture
def homes(tmp_path: Path) -> tuple[Path, Path]:
    """Separate P2PCHAT_HOME directories for the two peers."""
    a, b = tmp_path / "home-a", tmp_path / "home-b"
    return a, b


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, a disk that fills (needs root and mount; skipped otherwise)."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> threading.Semaphore:
    """A disk behind: each write of a received file waits for a permit (release(n) lets n through)."""
    permits = threading.Semaphore(0)
    real_write = files.PartFile.write

    def slow_write(self: files.PartFile, offset: int, data: memoryview | bytes) -> None:
        assert permits.acquire(timeout=DISK_WAIT), "the test never let the write through"
        real_write(self, offset, data)

    monkeypatch.setattr(files.PartFile, "write", slow_write)
    return permits
