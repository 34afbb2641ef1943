"""Files in the interactive interface, on a real pseudo-terminal: an offer, /accept, /send, the outcome lines."""

from __future__ import annotations

from pathlib import Path

from .procs import dialer, listener
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
