"""FileEngine at its edges (found in review), driven through handle() as the receiver thread would:
two offers of one name, an accepted offer waiting its turn, resumes against a slow disk, a file
saved while closing, a cancel made while the link is down."""

from __future__ import annotations

import threading
from pathlib import Path

from p2pchat.core import filewire
from p2pchat.core.filewire import FileAccept, FileData, FileOffer
from p2pchat.core.transfer import WINDOW
from p2pchat.link.filetransfer import FileEngine, FileEvent, FileProgress

DEADLINE = 10.0


class Receiver:
    def __init__(self, directory: Path) -> None:
        self.events: list[FileEvent] = []
        self.sent: list[filewire.Control] = []
        self.changed = threading.Condition()
        self.engine = FileEngine(self._event, peer="alice", directory=directory)
        self.attach()

    def _event(self, event: FileEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def progress_of(self, number: int, done: int) -> None:
        """Wait until transfer *number* has *done* bytes on disk (its progress event says so)."""
        with self.changed:
            assert self.changed.wait_for(
                lambda: any(isinstance(e, FileProgress) and (e.number, e.done) == (number, done) for e in self.events),
                DEADLINE,
            ), self.events

    def attach(self) -> None:
        self.engine.attach(self._send, lambda: None)

    def _send(self, plaintext: bytes) -> None:
        message = filewire.decode(plaintext)
        with self.changed:
            self.sent.append(message)  # type: ignore[arg-type]
            self.changed.notify_all()

    def accept_of(self, transfer_id: int) -> FileAccept:
        with self.changed:
            assert self.changed.wait_for(
                lambda: any(isinstance(m, FileAccept) and m.id == transfer_id for m in self.sent), DEADLINE
            ), self.sent
            return [m for m in self.sent if isinstance(m, FileAccept) and m.id == transfer_id][-1]


def test_two_offers_with_the_same_name_do_not_share_one_part_file(tmp_path: Path) -> None:
    """Sender: /send a/report.pdf, /send b/report.pdf. Receiver: /accept 1; a moment later /accept 2.

    The second accept must not take report.pdf.part -- the first transfer's, in progress -- for a
    partial file kept from an earlier run: both transfers would write one file.
    """
    receiver = Receiver(tmp_path)
    receiver.engine.handle(FileOffer(1, "report.pdf", 100_000))
    receiver.engine.handle(FileOffer(2, "report.pdf", 100_000))
    receiver.engine.accept(1, tmp_path)
    assert receiver.accept_of(1).offset == 0
    receiver.engine.handle(FileData(1, 0, memoryview(b"A" * 5000)))
    receiver.progress_of(1, 5000)  # report.pdf.part holds 5000 bytes, and is in use
    receiver.engine.accept(2, tmp_path)
    assert receiver.accept_of(2).offset == 0, "offer 2 continues offer 1's .part file (in progress)"
    receiver.engine.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report (1).pdf.part", "report.pdf.part"]


def test_an_accepted_offer_waiting_its_turn_is_reported_at_the_end(tmp_path: Path) -> None:
    """Three files accepted (--save-to accepts them all), two receive, the third waits (OFFERED).

    The peer leaves: engine.close() reports the third too (else the pipe's exit status would be
    0 although a file it accepted never arrived).
    """
    receiver = Receiver(tmp_path)
    for transfer_id, name in ((1, "a.bin"), (2, "b.bin"), (3, "c.bin")):
        receiver.engine.handle(FileOffer(transfer_id, name, 10_000))
        receiver.engine.accept(transfer_id, tmp_path)
    receiver.accept_of(1)
    receiver.accept_of(2)
    lines = receiver.engine.close()
    assert any("c.bin" in line for line in lines), lines


def test_resumes_do_not_let_the_sender_grow_the_disk_queue_past_the_window(
    tmp_path: Path, slow_disk: threading.Semaphore
) -> None:
    """Slow disk: the writer holds. A resume must answer the repeated offer only from what is written:
    answering from what was received would open the window again, 4 MiB per reconnect, without bound
    (the README promises at most 8 MiB buffered for the disk).
    """
    gate = slow_disk  # each write waits for a permit
    receiver = Receiver(tmp_path)
    size = 64 * 1024 * 1024
    receiver.engine.handle(FileOffer(1, "big.bin", size))
    receiver.engine.accept(1, tmp_path)
    receiver.accept_of(1)
    chunk = memoryview(bytes(filewire.MAX_DATA))
    offset = 0
    refused = False
    try:
        for _resume in range(4):  # four reconnects by a sender that never waits for the disk
            limit = receiver.accept_of(1).offset + WINDOW
            while offset + len(chunk) <= limit:
                receiver.engine.handle(FileData(1, offset, chunk))
                offset += len(chunk)
            receiver.engine.detach()
            receiver.attach()
            receiver.engine.handle(FileOffer(1, "big.bin", size))  # the repeated offer after a resume
    except Exception:  # a MessageError: the window held
        refused = True
    buffered = offset  # nothing was written: all of it waits in the writer's queue
    gate.release(1_000_000)
    receiver.engine.close()
    assert refused or buffered <= 2 * WINDOW, f"{buffered / 2**20:.0f} MiB queued for the disk"


def test_a_file_saved_while_closing_is_not_reported_incomplete(tmp_path: Path, slow_disk: threading.Semaphore) -> None:
    """The peer sent everything and file_end, then left; the writer is still behind (a slow disk).

    close() lets the writer finish -- it verifies and saves the file under its final name --
    before it lists what did not arrive: the person is never told a saved file is incomplete.
    """
    import hashlib

    from p2pchat.core.filewire import FileEnd

    gate = slow_disk  # each write waits for a permit
    receiver = Receiver(tmp_path)
    content = b"z" * 10_000
    receiver.engine.handle(FileOffer(1, "notes.txt", len(content)))
    receiver.engine.accept(1, tmp_path)
    receiver.accept_of(1)
    receiver.engine.handle(FileData(1, 0, memoryview(content)))
    receiver.engine.handle(FileEnd(1, hashlib.sha256(content).digest()))
    threading.Timer(0.3, gate.release, (1_000_000,)).start()  # the disk catches up while we close
    lines = receiver.engine.close()
    saved = (tmp_path / "notes.txt").exists()
    assert not (saved and any("incomplete" in line for line in lines)), (lines, saved)


def test_a_cancel_made_while_the_link_is_down_reaches_the_receiver(tmp_path: Path) -> None:
    """The sender /cancels during an outage: no link carries the file_cancel then, so the next link
    does (else the receiver's transfer would stay under way: a pipe waiting, the terminal listing it).
    """
    source = tmp_path / "big.bin"
    source.write_bytes(b"q" * 1000)
    sent: list[filewire.Control] = []
    engine = FileEngine(lambda event: None, peer="bob", directory=tmp_path)
    engine.attach(lambda plaintext: sent.append(filewire.decode(plaintext)), lambda: None)  # type: ignore[arg-type]
    number = engine.offer(source)
    engine.detach()  # the link drops
    engine.cancel(number)  # the person stops it meanwhile
    sent.clear()
    engine.attach(lambda plaintext: sent.append(filewire.decode(plaintext)), lambda: None)  # type: ignore[arg-type]
    assert any(isinstance(m, filewire.FileCancel) for m in sent), sent
    engine.close()


def test_a_repeated_offer_gets_one_answer_on_the_link_it_came_on(
    tmp_path: Path, slow_disk: threading.Semaphore
) -> None:
    """The link drops twice while the disk is behind: the answer to the first repeated offer must not
    go out on the third link, where the sender, already accepted again, would see a second accept."""
    gate = slow_disk  # each write waits for a permit
    receiver = Receiver(tmp_path)
    receiver.engine.handle(FileOffer(1, "big.bin", 1_000_000))
    receiver.engine.accept(1, tmp_path)
    receiver.accept_of(1)
    receiver.engine.handle(FileData(1, 0, memoryview(bytes(filewire.MAX_DATA))))  # waits for the disk
    for _link in range(2):  # lost and back, twice: the sender offers again on each new link
        receiver.engine.detach()
        receiver.attach()
        receiver.engine.handle(FileOffer(1, "big.bin", 1_000_000))
    gate.release(1_000_000)
    receiver.progress_of(1, filewire.MAX_DATA)
    receiver.engine.close()  # the writer has done everything it was given
    accepts = [m for m in receiver.sent if isinstance(m, FileAccept)]
    assert accepts == [FileAccept(1, 0), FileAccept(1, filewire.MAX_DATA)]


def test_a_stalled_transfer_shows_where_it_stopped(tmp_path: Path) -> None:
    """Progress is sent at most every 0.25 s; what the interval held back follows at its end, so a
    sender that stops after a burst leaves the bar at the last byte written, not at the first."""
    receiver = Receiver(tmp_path)
    receiver.engine.handle(FileOffer(1, "stalled.bin", 10 * filewire.MAX_DATA))
    receiver.engine.accept(1, tmp_path)
    receiver.accept_of(1)
    for offset in range(0, 3 * filewire.MAX_DATA, filewire.MAX_DATA):  # a burst, then nothing
        receiver.engine.handle(FileData(1, offset, memoryview(bytes(filewire.MAX_DATA))))
    receiver.progress_of(1, 3 * filewire.MAX_DATA)
    shown = [e.done for e in receiver.events if isinstance(e, FileProgress)]
    assert shown[0] == filewire.MAX_DATA and shown[-1] == 3 * filewire.MAX_DATA and len(shown) <= 3
    receiver.engine.close()
