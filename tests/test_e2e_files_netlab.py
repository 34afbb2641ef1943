"""A file transfer across a silent cut of the link (issue #15 on issue #10's namespaces).

The sender's uplink is shaped to 16 Mbit/s so the transfer is still under way when the cut
comes; the cut waits for the receiver to have written part of the file (its -v line), so the
resume must continue from a non-zero offset, and the whole file is verified at the end.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from . import netlab
from .netlab import NetLab

needs_lab = pytest.mark.skipif(netlab.unavailable() is not None, reason=netlab.unavailable() or "")

KEEPALIVE = "1"  # seconds: a dead link is noticed after 3 s
SIZE = 6 * 1024 * 1024  # 3 s at 16 Mbit/s


@needs_lab
def test_a_transfer_continues_after_a_silent_cut(homes: tuple[Path, Path], tmp_path: Path) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(SIZE))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with NetLab() as lab:
        lab.shape("a", "16mbit")
        lis = lab.run(
            "b",
            [
                "-v",
                "listen",
                f"{lab.address('b')}:0",
                "--name",
                "lis",
                "--keepalive",
                KEEPALIVE,
                "--save-to",
                str(inbox),
            ],
            homes[0],
        )
        port = lis.port()
        dia = lab.run(
            "a",
            ["dial", f"{lab.address('b')}:{port}", "--name", "dia", "--keepalive", KEEPALIVE, "--send", str(source)],
            homes[1],
        )
        lis.wait_err(r"bytes written")  # part of the file is on the receiver's disk
        lab.cut()
        dia.wait_err(r"^p2pchat: connection lost")
        lis.wait_err(r"^p2pchat: connection lost")
        lab.restore()
        continued = dia.wait_err(r"^p2pchat: continuing payload\.bin from .*\((\d+)%\)")
        dia.write("after the cut\n")
        lis.wait_out(r"^dia: after the cut$")
        dia.close_stdin()
        lis.close_stdin()
        assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0, lis.stderr_text
    assert 0 < int(continued.group(1)) < 100
    saved = inbox / "payload.bin"
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert "saved " in lis.stderr_text and "SHA-256 verified" in lis.stderr_text
    assert not list(inbox.glob("*.part"))
    assert "Traceback" not in dia.stderr_text  # (the listener runs with -v: its details may hold one)
    for proc in (lis, dia):
        assert not re.search(r"not delivered|incomplete|not sent", proc.stderr_text), proc.stderr_text
