"""The interactive interface in a real pseudo-terminal, read back through the pyte terminal emulator."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from .procs import TIMEOUT, dialer

pyte = pytest.importorskip("pyte", reason="pyte (in the test extra) reads the terminal's screen")

COLUMNS, ROWS = 80, 24


class Terminal:
    """p2pchat running on a pty; the screen as a person would see it."""

    def __init__(self, args: list[str], home: Path, env: dict[str, str] | None = None) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.changed = threading.Condition()
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("P2PCHAT_", "NO_COLOR"))}
        full_env.update({"P2PCHAT_HOME": str(home), "TERM": "xterm-256color", **(env or {})})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pchat", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full_env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the pty is its terminal, as in real life
        )
        os.close(slave)
        self.master = master
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the other side of the pty closed
                data = b""
            with self.changed:
                if not data:
                    self.raw += b"\0EOF"
                    self.changed.notify_all()
                    return
                self.raw += data
                self.stream.feed(data)
                self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, TIMEOUT):
                raise AssertionError(f"timed out waiting for {what}; screen:\n" + "\n".join(self.screen.display))

    def rows(self) -> list[str]:
        return [row.rstrip() for row in self.screen.display]

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def port(self) -> int:
        """The port from the listener's ``listening on`` line."""
        pattern = re.compile(rb"listening on .*:(\d+)")
        self.wait(lambda: pattern.search(self.raw) is not None, "the listening line")
        match = pattern.search(self.raw)
        assert match is not None
        return int(match.group(1))

    def close(self) -> int:
        code = self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)
        os.close(self.master)
        return code


def test_input_line_stays_put_while_messages_arrive(homes: tuple[Path, Path]) -> None:
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis"], homes[0])
    try:
        with dialer(homes[1], term.port()) as dia:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            assert "dia" in term.rows()[0] and "new" in term.rows()[0]
            term.type("half typed")
            term.wait(lambda: term.rows()[-1] == "> half typed", "the half-typed line")
            dia.write("first message\nsecond message\n")
            term.wait(lambda: any("dia: second message" in row for row in term.rows()), "the messages")
            rows = term.rows()
            assert rows[-1] == "> half typed"  # the input line: bottom row, text intact
            assert re.fullmatch(r"\d\d:\d\d dia: second message", rows[-2])  # newest message right above
            assert re.fullmatch(r"\d\d:\d\d dia: first message", rows[-3])
            assert "dia" in rows[0] and "connected" in rows[0] and "0 unacknowledged" in rows[0]
            name_cell = term.screen.buffer[ROWS - 2][6]  # the "d" of "dia": coloured
            assert name_cell.data == "d" and name_cell.fg != "default"
            term.type(" and sent\r")
            dia.wait_out(r"^lis: half typed and sent$")
            term.wait(lambda: term.rows()[-1] == ">", "the cleared input line")
            assert re.fullmatch(r"\d\d:\d\d lis: half typed and sent", term.rows()[-2])
            term.type("/me waves\r")
            dia.wait_out(r"^\* lis waves$")
            term.type("/verify\r")
            term.wait(lambda: any("-- safety code" in row for row in term.rows()), "the safety code")
            term.type("/verify confirm\r")
            term.wait(lambda: "verified" in term.rows()[0].replace("unverified", ""), "verified in the status bar")
            known = json.loads((homes[0] / "known_peers").read_text())["peers"]
            assert [peer["verified"] for peer in known] == [True]
            term.type("/quit\r")
            assert term.close() == 0
            assert dia.finish() == 0
        assert "lis left the chat" in dia.stderr_text
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_peer_leaving_is_reported_and_exit_code_is_0(homes: tuple[Path, Path]) -> None:
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis"], homes[0], env={"NO_COLOR": "1"})
    try:
        with dialer(homes[1], term.port()) as dia:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            dia.write("bye now\x1b[2J\u202e\n")
            assert dia.finish() == 0
            term.wait(lambda: any("dia left the chat" in row for row in term.rows()), "the leaving line")
            rows = term.rows()
            assert any(row.endswith("dia: bye now\\x1b[2J\\u202e") for row in rows), rows  # escaped, not obeyed
            name_row = next(r for r, row in enumerate(rows) if "dia: bye now" in row)
            assert term.screen.buffer[name_row][6].fg == "default"  # NO_COLOR
            term.type("\r")  # "Press Enter to close."
            assert term.close() == 0
        assert b"dia left the chat" in term.raw
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_passphrase_prompt_multiline_and_history(homes: tuple[Path, Path]) -> None:
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis", "--passphrase"], homes[0])
    try:
        term.wait(lambda: b"passphrase (shared with your peer): " in term.raw, "the passphrase prompt")
        term.type("sesame\r")
        port = term.port()
        assert b"sesame" not in term.raw  # not echoed
        with dialer(homes[1], port, env={"P2PCHAT_PASSPHRASE": "sesame"}) as dia:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            term.type("two\x1b\rlines\r")  # Alt+Enter between them
            dia.wait_out(r"^lis: lines$")
            assert dia.out[-2:] == ["lis: two\n", "lis: lines\n"]
            term.wait(lambda: term.rows()[-2] == " " * 11 + "lines", "the message's second line, indented")
            assert re.fullmatch(r"\d\d:\d\d lis: two", term.rows()[-3])
            term.type("\x1b[A")  # Up recalls the last line sent
            term.wait(lambda: term.rows()[-2:] == ["> two", "lines"], "the recalled lines in the input")
            term.type("\x04")  # Ctrl-D with text in the input does not quit...
            term.type("\x15\x7f\x15")  # (clear: Ctrl-U, Backspace, Ctrl-U)
            term.wait(lambda: term.rows()[-1] == ">", "the cleared input")
            assert term.proc.poll() is None
            term.type("\x04")  # ...but on an empty line it does
            assert term.close() == 0
            assert dia.finish() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
