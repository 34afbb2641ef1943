"""The terminal's file commands, without a screen: what each says, and Tab on a path."""

from __future__ import annotations

import io
import time
from pathlib import Path

from p2pchat.link.filetransfer import FileOutcome, FileProgress
from p2pchat.term.filecommands import FileCommands, complete_path
from p2pchat.term.filepipe import FilePipe
from p2pchat.term.progress import Meter, duration


def _commands(tmp_path: Path, in_use: bool = True) -> tuple[FileCommands, list[tuple[str, bool]]]:
    lines: list[tuple[str, bool]] = []
    commands = FileCommands(
        "bob",
        notify=lambda line, warning: lines.append((line, warning)),
        files_in_use=lambda: in_use,
        directory=tmp_path,
    )
    return commands, lines


def test_send_and_its_mistakes(tmp_path: Path) -> None:
    commands, lines = _commands(tmp_path)
    table = commands.table()
    assert set(table) == {"/send", "/accept", "/decline", "/transfers", "/cancel"}
    assert table["/send"]("") == ["/send PATH: offer a file (Tab completes the path)"]
    assert table["/send"](str(tmp_path / "missing")) == [
        f"cannot read {tmp_path / 'missing'}: No such file or directory"
    ]
    assert table["/send"](str(tmp_path)) == [f"{tmp_path} is not a regular file"]
    (tmp_path / "report.pdf").write_bytes(b"x" * 2_300_000)
    assert table["/send"](str(tmp_path / "report.pdf")) == [
        "offered report.pdf (2.3 MB) to bob as #1; waiting for an answer"
    ]
    assert table["/transfers"]("") == ["#1 report.pdf (2.3 MB) to bob: offered"]
    assert table["/accept"]("") == ["no offer is waiting"]
    assert table["/decline"]("") == ["no offer is waiting"]
    assert table["/cancel"]("9") == ["no transfer #9: /transfers lists them"]
    assert table["/cancel"]("") == []  # the only one under way: stopped
    assert lines == [("you stopped report.pdf", True)]
    assert table["/transfers"]("") == ["#1 report.pdf (2.3 MB) to bob: stopped"]
    commands.engine.close()


def test_a_peer_without_files_is_never_offered_one(tmp_path: Path) -> None:
    commands, _ = _commands(tmp_path, in_use=False)
    (tmp_path / "a").write_text("x")
    assert commands.send(str(tmp_path / "a")) == [f"bob does not support file transfer: not sending {tmp_path / 'a'}"]
    assert commands.transfers("") == ["no transfers"]


def test_tab_completes_paths(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_text("x")
    (tmp_path / "reports").mkdir()
    (tmp_path / ".hidden").write_text("x")
    base = str(tmp_path) + "/"
    assert complete_path(base + "rep") == [base + "report.pdf", base + "reports/"]
    assert complete_path(base + "reports") == [base + "reports/"]
    assert complete_path(base) == [base + "report.pdf", base + "reports/"]  # no hidden files unless asked
    assert complete_path(base + ".h") == [base + ".hidden"]
    assert complete_path(base + "nothing/x") == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pipe_progress_line_only_on_a_terminal(tmp_path: Path) -> None:
    terminal, plain = _Terminal(), io.StringIO()
    for stream in (terminal, plain):
        files = FilePipe("bob", tmp_path, stderr=stream)
        files.on_event(FileProgress(1, "a.bin", False, 500, 1000))
        files.on_event(FileOutcome(1, False, True, "saved a.bin, SHA-256 verified"))
        files.close()
        assert not files.failed
    assert terminal.getvalue().startswith("\r\x1b[Kreceiving a.bin: 50% of 1.0 kB")
    assert terminal.getvalue().endswith("\r\x1b[Kp2pchat: saved a.bin, SHA-256 verified\n")
    assert plain.getvalue() == "p2pchat: saved a.bin, SHA-256 verified\n"


def test_pipe_exit_status_counts_only_files_it_meant_to_move(tmp_path: Path) -> None:
    declining = FilePipe("bob", None, stderr=io.StringIO())
    declining.on_event(FileOutcome(1, False, False, "declined a.bin", wanted=False))
    assert not declining.failed  # without --save-to, nothing was expected
    saving = FilePipe("bob", tmp_path, stderr=io.StringIO())
    saving.on_event(FileOutcome(1, False, False, "a.bin: the data does not match its SHA-256"))
    assert saving.failed
    sending = FilePipe("bob", None, stderr=io.StringIO())
    sending.on_event(FileOutcome(1, True, False, "bob declined a.bin"))
    assert sending.failed
    for files in (declining, saving, sending):
        files.close()


def test_progress_words_rate_and_time_left() -> None:
    meter = Meter()
    assert meter.line(1, 0, 10_000_000, now=100.0) == "0% of 10.0 MB"  # no rate before it means anything
    assert meter.line(1, 1_000_000, 10_000_000, now=100.2) == "10% of 10.0 MB"
    assert meter.line(1, 4_000_000, 10_000_000, now=102.0) == "40% of 10.0 MB, 2.0 MB/s, 3 s left"
    # Continued from an earlier offset after a lost link: the rate counts afresh.
    assert meter.line(1, 3_000_000, 10_000_000, now=110.0) == "30% of 10.0 MB"
    assert meter.line(1, 3_700_000, 10_000_000, now=111.0) == "37% of 10.0 MB, 700.0 kB/s, 9 s left"
    assert meter.line(2, 0, 0, now=0.0) == "100% of 0 bytes"


def test_durations_as_precise_as_a_person_needs() -> None:
    assert [duration(s) for s in (0, 8.4, 99.4, 100, 3500, 3599, 3900)] == [
        "0 s",
        "8 s",
        "99 s",
        "2 min",
        "58 min",
        "1 h 00 min",
        "1 h 05 min",
    ]


def test_a_pipe_waits_for_a_person_to_answer_then_gives_up(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A peer in the terminal has not answered the offer: the pipe says it is waiting (after
    ANSWER_NOTICE), not that the transfer stalled, and gives up only after ANSWER_TIMEOUT."""
    import p2pchat.term.filepipe as filepipe

    monkeypatch.setattr(filepipe, "ANSWER_NOTICE", 0.05)
    monkeypatch.setattr(filepipe, "STALL_TIMEOUT", 0.05)
    monkeypatch.setattr(filepipe, "ANSWER_TIMEOUT", 0.6)
    (tmp_path / "a.bin").write_bytes(b"a" * 10)
    stderr = io.StringIO()
    files = FilePipe("bob", None, stderr=stderr)
    files.engine.attach(lambda plaintext: None, lambda: None)  # a link on which nobody answers
    files.offer([tmp_path / "a.bin"], files_in_use=True)
    start = time.monotonic()
    files.wait()
    waited = time.monotonic() - start
    lines = stderr.getvalue().splitlines()
    assert lines == [
        "p2pchat: waiting for bob to accept or decline a.bin",
        "p2pchat: bob did not answer within 0.01 min: giving up",
    ]
    assert waited >= 0.6 and files.failed  # the answer's deadline, not the stall's, decided
    files.close()
