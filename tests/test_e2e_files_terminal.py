"""Files in the interactive interface, on a real pseudo-terminal: an offer, /accept, /send, the outcome lines."""

from __future__ import annotations

import re
from pathlib import Path

from p2pchat.core import filewire
from p2pchat.core.filewire import MAX_DATA, FileAccept, FileCancel, FileOffer
from p2pchat.core.messages import Bye

from .procs import dialer, listener
from .test_e2e_files import Hostile
from .test_e2e_terminal import Terminal


def _screen(term: Terminal) -> str:
    return "".join(term.rows())  # long lines wrap: search the screen as one string


def test_accept_an_offer_in_the_terminal(homes: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    source = tmp_path / "report.pdf"
    source.write_bytes(b"%PDF" * 600)
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis"], homes[0], env={"NO_COLOR": "1"})
    try:
        with dialer(homes[1], term.port(), "--send", str(source)) as dia:
            term.wait(lambda: "dia offers report.pdf (2.4 kB) — /accept 1 or /decline 1" in _screen(term), "the offer")
            term.type(f"/accept 1 {tmp_path / 'in'}\r")
            term.wait(lambda: "SHA-256 verified" in _screen(term), "the outcome")
            assert (tmp_path / "in" / "report.pdf").read_bytes() == source.read_bytes()
            assert dia.finish() == 0, dia.stderr_text  # its file arrived: it leaves, exit 0
            assert "sent report.pdf to lis, SHA-256 verified" in dia.stderr_text
            term.wait(lambda: "dia left the chat" in _screen(term), "the leaving line")
            term.type("\r")
            assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_send_from_the_terminal(homes: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"\xff\xd8" * 5000)
    lis, port = listener(homes[0], "--save-to", str(tmp_path / "in"))
    term = Terminal(["dial", f"127.0.0.1:{port}", "--name", "dia"], homes[1], env={"NO_COLOR": "1"})
    try:
        with lis:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            term.type(f"/send {tmp_path}/pho\t\r")  # Tab completes the path: "pho" alone does not exist
            term.wait(lambda: "sent photo.jpg to lis, SHA-256 verified" in _screen(term), "the outcome")
            term.type("/transfers\r")
            term.wait(lambda: "#1 photo.jpg (10.0 kB) to lis: done" in _screen(term), "the list")
            term.type("/quit\r")
            assert term.close() == 0
            assert lis.finish() == 0, lis.stderr_text
        assert (tmp_path / "in" / "photo.jpg").read_bytes() == source.read_bytes()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_progress_in_the_status_bar_and_a_cancel_from_a_hostile_sender(
    homes: tuple[Path, Path], tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    term = Terminal(
        ["listen", "127.0.0.1:0", "--name", "lis", "--save-to", str(inbox)], homes[0], env={"NO_COLOR": "1"}
    )
    try:
        hostile = Hostile(term.port())
        size = 8 * MAX_DATA
        # An escape sequence in the name would clear the screen if it reached the terminal.
        hostile.send(filewire.encode(FileOffer(1, "\x1b[2Jstalled.bin", size)))
        term.wait(
            lambda: re.search(r"evil offers \S*\[2Jstalled\.bin \(524\.0 kB\)", _screen(term)) is not None, "offer"
        )
        term.type("/accept\r")  # into --save-to
        assert hostile.expect(FileAccept) == FileAccept(1, 0)
        for offset in range(0, size // 2, MAX_DATA):  # half the file, then nothing: a stalled sender
            hostile.send(filewire.encode_data(1, offset, bytes(MAX_DATA)))
        term.wait(lambda: re.search(r"↓ \S*\[2Jstalled\.bin \d+% of 524\.0 kB", term.rows()[0]) is not None, "progress")
        hostile.send(filewire.encode(FileCancel(1, "cancelled")))
        term.wait(
            lambda: re.search(r"evil stopped \S*stalled\.bin \(cancelled\)", _screen(term)) is not None, "outcome"
        )
        term.wait(lambda: "↓" not in term.rows()[0], "the status bar without the transfer")
        assert list(inbox.iterdir()) == []  # the partial file is gone
        hostile.sock.sendall(hostile.session.send(Bye()))
        term.wait(lambda: "evil left the chat" in _screen(term), "the leaving line")
        term.type("\r")
        assert term.close() == 1  # a file it accepted did not arrive (the sender stopped it)
        hostile.sock.close()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
