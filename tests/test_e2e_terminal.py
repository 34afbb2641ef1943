"""The interactive interface in a real pseudo-terminal, read back through the pyte terminal emulator."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from .procs import TIMEOUT, Proc, dialer

pyte = pytest.importorskip("pyte", reason="pyte (in the test extra) reads the terminal's screen")

COLUMNS, ROWS = 80, 24


class Terminal:
    """p2pchat running on a pty; the screen as a person would see it."""

    def __init__(
        self,
        args: list[str],
        home: Path,
        env: dict[str, str] | None = None,
        columns: int = COLUMNS,
        rows: int = ROWS,
        shell: str | None = None,
    ) -> None:
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.changed = threading.Condition()
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("P2PCHAT_", "NO_COLOR"))}
        full_env.update({"P2PCHAT_HOME": str(home), "TERM": "xterm-256color", **(env or {})})
        command = [sys.executable, "-m", "p2pchat", *args]
        if shell is not None:  # run it from a shell script; {command} stands for the p2pchat command line
            command = ["bash", "-c", shell.format(command=" ".join(shlex.quote(arg) for arg in command))]
        self.proc = subprocess.Popen(
            command,
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

    def drawn(self) -> bool:
        """A redraw is complete: prompt_toolkit hides the cursor while it draws and shows it at the end,
        back on the input line (a screen read in the middle of a redraw holds half of two pages)."""
        cursor = self.screen.cursor
        return not cursor.hidden and cursor.y == self.screen.lines - 1

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def port(self) -> int:
        """The port from the listener's ``listening on`` line."""
        pattern = re.compile(rb"listening on .*:(\d+)")
        self.wait(lambda: pattern.search(self.raw) is not None, "the listening line")
        match = pattern.search(self.raw)
        assert match is not None
        return int(match.group(1))

    def scrollback(self) -> list[str]:
        """What was written after the full-screen view closed (the normal screen), escapes removed."""
        data = bytes(self.raw).removesuffix(b"\0EOF")
        text = data[data.rfind(b"\x1b[?1049l") :].decode("utf-8", "replace")
        text = re.sub(r"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[=>]", "", text)
        return [line.rstrip("\r").rstrip() for line in text.split("\n")]

    def bells(self) -> int:
        """BEL characters that ring (not the ones ending a title sequence)."""
        return re.sub(rb"\x1b\][^\x07]*\x07", b"", bytes(self.raw)).count(b"\x07")

    def close(self) -> int:
        code = self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)
        os.close(self.master)
        return code


STAMP = r"\d\d:\d\d"


def test_input_line_stays_put_while_messages_arrive(homes: tuple[Path, Path]) -> None:
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis"], homes[0])
    try:
        with dialer(homes[1], term.port()) as dia:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            assert "dia" in term.rows()[0] and "new key" in term.rows()[0]
            term.type("half typed")
            term.wait(lambda: term.rows()[-1] == "> half typed", "the half-typed line")
            dia.write("first message\nsecond message\n")
            term.wait(lambda: any("dia: second message" in row for row in term.rows()), "the messages")
            rows = term.rows()
            assert rows[-1] == "> half typed"  # the input line: bottom row, text intact
            assert re.fullmatch(STAMP + r"   dia: second message", rows[-2])  # newest message right above
            assert re.fullmatch(STAMP + r"   dia: first message", rows[-3])
            assert rows[0].startswith(" connected · dia · new key")
            name_cell = term.screen.buffer[ROWS - 2][8]  # the "d" of "dia": coloured
            assert name_cell.data == "d" and name_cell.fg != "default"
            term.type(" and sent\r")
            dia.wait_out(r"^lis: half typed and sent$")
            term.wait(lambda: term.rows()[-1] == ">", "the cleared input line")
            # Our own lines: labelled "you", with a delivery mark the peer's lines never have.
            term.wait(lambda: bool(re.fullmatch(STAMP + r" ✓ you: half typed and sent", term.rows()[-2])), "the mark")
            term.type("/ME waves\r")  # commands in any case
            dia.wait_out(r"^\* lis waves$")
            term.type("/me\r")
            term.wait(lambda: "-- /me needs text: /me ACTION" in term.rows()[-2], "the /me explanation")
            assert term.rows()[-1] == "> /me"  # kept, to be fixed
            term.type("\x15/verify bogus\r")
            term.wait(lambda: "takes no argument or confirm, not 'bogus'" in term.rows()[-2], "the explanation")
            term.type("\x15/veri\t")  # Tab completes
            term.wait(lambda: term.rows()[-1] == "> /verify", "the completed command")
            term.type("\r")
            term.wait(lambda: any("-- safety code" in row for row in term.rows()), "the safety code")
            term.type("/verify confirm\r")
            term.wait(lambda: "· verified" in term.rows()[0], "verified in the status bar")
            known = json.loads((homes[0] / "known_peers").read_text())["peers"]
            assert [peer["verified"] for peer in known] == [True]
            term.type("/help\r")
            term.wait(lambda: any("//text" in row for row in term.rows()), "the help")
            term.type("/QUIT\r")
            assert term.close() == 0
            assert dia.finish() == 0
        assert "lis left the chat" in dia.stderr_text
        after = term.scrollback()
        assert any(re.fullmatch(STAMP + r" ✓ you: half typed and sent", line) for line in after), after
        assert "p2pchat: you left the chat" in after
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_narrow_marks_without_colour_and_a_draft_kept_when_the_peer_leaves(homes: tuple[Path, Path]) -> None:
    """40 columns, NO_COLOR: the status bar degrades, marks still tell pending from delivered."""
    args = ["listen", "127.0.0.1:0", "--name", "lis", "--no-bell"]
    term = Terminal(args, homes[0], env={"NO_COLOR": "1"}, columns=40)
    try:
        peer_name = "diana-with-a-rather-long-name"
        with Proc(["dial", f"127.0.0.1:{term.port()}", "--name", peer_name], homes[1]) as dia:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            bar = term.rows()[0]
            assert bar.startswith(" connected · diana-with-a-rather-lo") and bar.endswith("…"), bar
            dia.signal(signal.SIGSTOP)  # the peer cannot acknowledge: our message stays pending
            try:
                term.type("alpha beta gamma delta epsilon zeta eta theta\r")
                mine = STAMP + r" … you: alpha beta gamma delta"
                term.wait(lambda: any(re.fullmatch(mine, r) for r in term.rows()), "…")
                rows = term.rows()
                first = next(n for n, row in enumerate(rows) if "… you: alpha" in row)
                assert rows[first + 1] == " " * 13 + "epsilon zeta eta theta", rows  # wrapped at a space, indented
            finally:
                dia.signal(signal.SIGCONT)
            term.wait(lambda: any(re.fullmatch(mine.replace("…", "✓"), r) for r in term.rows()), "✓")
            dia.wait_out(r"^lis: alpha beta")
            dia.write("bye now\x1b[2J\u202e\n")
            term.wait(lambda: any("bye now" in row for row in term.rows()), "the last message")
            term.type("half-typed reply")
            dia.close_stdin()
            assert dia.finish() == 0
            term.wait(lambda: any("left the chat" in row for row in term.rows()), "the leaving line")
            screen = "".join(term.rows())
            assert "byenow\\x1b[2J\\u202e" in screen.replace(" ", "")  # escaped, not obeyed
            assert term.rows()[-1] == "> half-typed reply"  # still there, editable
            assert term.rows()[0].startswith(" diana-with-a-rather-long-name left")
            term.type("\r")  # Enter closes; the draft is printed, not lost
            assert term.close() == 0
        after = term.scrollback()
        assert any("bye now" in line for line in after), after
        assert "p2pchat: not sent: half-typed reply" in after
        assert term.bells() == 0  # --no-bell
        assert any("left the chat" in line for line in after)
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_passphrase_prompt_multiline_paste_and_history(homes: tuple[Path, Path]) -> None:
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis", "--passphrase"], homes[0])
    try:
        term.wait(lambda: b"passphrase (shared with your peer): " in term.raw, "the passphrase prompt")
        term.type("sesame\r")
        port = term.port()
        assert b"sesame" not in term.raw  # not echoed
        with dialer(homes[1], port, env={"P2PCHAT_PASSPHRASE": "sesame"}) as dia:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            term.type("two\x1b\rlines\nthree\r")  # Alt+Enter, then Ctrl-J, between them
            dia.wait_out(r"^lis: three$")
            assert dia.out[-3:] == ["lis: two\n", "lis: lines\n", "lis: three\n"]
            term.wait(lambda: term.rows()[-2] == " " * 13 + "three", "the message's last line, indented")
            assert re.fullmatch(STAMP + r" . you: two", term.rows()[-4])
            term.type("\x1b[A")  # Up recalls the last line sent
            term.wait(lambda: term.rows()[-3:] == ["> two", "  lines", "  three"], "the recalled lines in the input")
            term.type("\x04")  # Ctrl-D with text in the input does not quit...
            term.type("\x15\x7f\x15\x7f\x15")  # (clear: Ctrl-U, Backspace, ...)
            term.wait(lambda: term.rows()[-1] == ">", "the cleared input")
            term.type("\x1b[200~pasted\nblock\n\x1b[201~")  # a bracketed paste ending in a newline
            term.wait(lambda: term.rows()[-3:] == ["> pasted", "  block", ""], "the pasted block, in the input")
            term.type("\x15\x7f\x15\x7f\x15\x7f\x15")
            term.wait(lambda: term.rows()[-1] == ">", "the cleared input")
            assert term.proc.poll() is None
            term.type("\x04")  # ...but on an empty line it does
            assert term.close() == 0
            assert dia.finish() == 0
        assert not any("pasted" in line for line in dia.out)  # the paste was never sent
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def _words(rows: list[str]) -> set[str]:
    return {word for row in rows for word in row.split() if re.fullmatch(r"\d{4}", word)}


def test_scrolling_a_tall_message_unread_marker_title_wheel_and_suspend(homes: tuple[Path, Path]) -> None:
    """One chat, 80x24: a 100-row message read from its last row to its first, then back; Ctrl-Z and fg."""
    # A job-control shell, as in real life: Ctrl-Z stops p2pchat, the script says so and resumes it.
    script = "set -m; {command}; echo '[shell: stopped]'; fg >/dev/null; exit $?"
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis"], homes[0], shell=script)
    try:
        with dialer(homes[1], term.port()) as dia:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            term.wait(lambda: term.screen.title == "p2pchat — dia", "the title")
            # 13 words of 5 cells fill a row after the 13-cell head: 1300 words are 100 rows.
            words = [f"{n:04d}" for n in range(1, 1301)]
            dia.write(" ".join(words) + "\n")
            term.wait(lambda: "1300" in term.rows()[-2], "the message's last row")
            rows = term.rows()
            assert rows[-2] == " " * 13 + " ".join(words[-13:])  # wrapped at spaces, indented to the text
            assert term.bells() == 1  # the bell: focus unknown, so it rings
            seen = _words(term.rows())
            term.type("\x1b[5~")  # PageUp: moves a page at the first press
            term.wait(lambda: "1300" not in "".join(term.rows()) and term.drawn(), "the first page up")
            for _ in range(10):
                seen |= _words(term.rows())
                if "0001" in seen:
                    break
                before = term.rows()
                term.type("\x1b[5~")
                term.wait(lambda before=before: term.rows() != before and term.drawn(), "the next page")  # type: ignore[misc]
            assert seen == set(words)  # every row was on screen on the way up: none skipped
            top = term.rows()
            assert any(re.fullmatch(STAMP + r"   dia: 0001 0002 .*", row) for row in top), top
            assert top[-2].startswith("↓ more below (End)")
            dia.write("one more\nand another\n")  # new messages do not move the view; the marker counts them
            term.wait(lambda: term.rows()[-2].startswith("↓ 2 new (End)"), "the unread marker")
            assert term.rows()[:-2] == top[:-2]
            term.wait(lambda: term.screen.title == "p2pchat — dia (2 new)", "the unread count in the title")
            term.type("\x1b[F")  # End: back to the bottom, marker gone
            term.wait(lambda: term.rows()[-2].endswith("dia: and another"), "the bottom")
            assert not any(row.startswith("↓") for row in term.rows())
            term.wait(lambda: term.screen.title == "p2pchat — dia", "the title without a count")
            term.type("\x1b[O")  # the terminal reports: focus lost
            # Keys are handled in order: once a key typed after the report shows, the report was handled
            # (the message comes another way, and must not overtake it).
            term.type("?")
            term.wait(lambda: term.rows()[-1] == "> ?", "the key typed after the focus report")
            term.type("\x7f")
            term.wait(lambda: term.rows()[-1] == ">", "the input empty again")
            dia.write("while you were away\n")
            term.wait(lambda: term.screen.title == "p2pchat — dia (1 new)", "the count while unfocused")
            term.type("\x1b[I")  # focus back
            term.wait(lambda: term.screen.title == "p2pchat — dia", "the title once focused")
            dia.write("seen at once\n")
            term.wait(lambda: term.rows()[-2].endswith("dia: seen at once"), "a message while focused")
            assert term.bells() == 4  # 2 + 1 more while scrolled or away; none while focused
            term.type("\x1b[<64;20;10M")  # the mouse wheel, up (SGR mouse report)
            term.wait(lambda: term.rows()[-2].startswith("↓ more below"), "the wheel scrolled up")
            term.type("\x1b[H")  # Home: the top, the first row of the conversation on screen
            term.wait(lambda: "joined from" in term.rows()[1], "the top")
            term.type("\x1b[F")
            term.wait(lambda: term.rows()[-2].endswith("dia: seen at once"), "the bottom again")
            term.type("typed before suspending")
            term.type("\x1a")  # Ctrl-Z: the conversation goes to the scrollback, then the shell
            term.wait(lambda: b"[shell: stopped]" in term.raw, "the shell's turn")
            printed = bytes(term.raw).decode("utf-8", "replace")
            assert "dia: seen at once" in printed.split("[shell: stopped]")[0]
            stopped = term.raw.find(b"[shell: stopped]")
            term.wait(lambda: term.raw.rfind(b"typed before suspending") > stopped, "the redrawn screen after fg")
            term.wait(lambda: term.rows()[-1] == "> typed before suspending", "the input, intact")
            term.type("\x03")  # Ctrl-C with a draft: leave at once, the draft is printed
            assert term.close() == 130
            assert dia.finish() == 0
        after = term.scrollback()
        assert any(line.endswith("dia: seen at once") for line in after), after
        assert "p2pchat: you interrupted the chat" in after
        assert "p2pchat: not sent: typed before suspending" in after
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_stdout_redirected_means_pipe_mode(homes: tuple[Path, Path], tmp_path: Path) -> None:
    """stdin a terminal, stdout a file: no full-screen interface in the file, lines as in pipe mode."""
    log = tmp_path / "chat.log"
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis"], homes[0], shell="{command} > " + shlex.quote(str(log)))
    try:
        with dialer(homes[1], term.port()) as dia:
            term.type("hi from a terminal\r")
            dia.wait_out(r"^lis: hi from a terminal$")
            dia.write("hello file\n")
            term.type("\x04")  # Ctrl-D: the terminal's input ends; half-close: it still receives
            assert dia.finish() == 0  # acknowledged: written to the file
            assert term.close() == 0  # both inputs ended: done
        assert "dia left the chat" in bytes(term.raw).decode()
        assert log.read_text() == "dia: hello file\n"  # nothing else: no escape sequences
        assert b"\x1b[?1049h" not in term.raw
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_a_lost_link_and_its_resume_on_screen(homes: tuple[Path, Path]) -> None:
    """Issue #10 in the terminal: the status bar says the state in words, one line marks the loss and
    one the resume, and what is typed meanwhile waits and then arrives."""
    term = Terminal(["listen", "127.0.0.1:0", "--name", "lis", "--keepalive", "1"], homes[0])
    try:
        with dialer(homes[1], term.port(), "--keepalive", "1") as dia:
            term.wait(lambda: "connected" in term.rows()[0], "the status bar")
            dia.signal(signal.SIGSTOP)  # silent, not closed: a dead link
            term.wait(lambda: any("connection lost" in row for row in term.rows()), "the line marking the loss")
            term.wait(lambda: "waiting for dia to come back" in term.rows()[0], "the state in the status bar")
            term.type("typed while the link is down\r")
            term.wait(lambda: any("… you: typed while the link is down" in row for row in term.rows()), "pending")
            dia.signal(signal.SIGCONT)  # the dialer finds its connection gone and calls back
            term.wait(lambda: any("connection resumed" in row for row in term.rows()), "the line marking the resume")
            term.wait(lambda: "connected" in term.rows()[0], "connected again")
            dia.wait_out(r"^lis: typed while the link is down$")
            term.wait(lambda: any("✓ you: typed while the link is down" in row for row in term.rows()), "delivered")
            assert re.search(STAMP + r" .*connection lost", "\n".join(term.rows()))  # with the time
            term.type("\x04")  # Ctrl-D: leave
            dia.close_stdin()
            assert dia.finish() == 0
            assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
