"""Two file engines joined in memory, each with a sender thread like the link's: disk to disk, threads real."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2pchat.core import filewire
from p2pchat.core.filewire import MAX_DATA, FileData
from p2pchat.core.transfer import WINDOW
from p2pchat.errors import LocalError
from p2pchat.link.filetransfer import FileEngine, FileEvent, FileOffered, FileOutcome, FileProgress, human_size

DEADLINE = 30.0  # seconds: generous for a loaded machine
_WAKE = b""


class Peer:
    """An engine, its events, and a sender thread that sends control first and data when idle."""

    def __init__(self, name: str, directory: Path) -> None:
        them = {"alice": "bob", "bob": "alice"}[name]
        self.events: list[FileEvent] = []
        self.changed = threading.Condition()
        self.engine = FileEngine(self._on_event, peer=them, directory=directory)
        self.directory = directory
        self.outgoing: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.other: Peer | None = None
        self.tamper: Callable[[bytes], bytes] = lambda plaintext: plaintext
        self.cut = threading.Event()  # drop everything (a link that died silently)
        self.thread: threading.Thread | None = None

    def _on_event(self, event: FileEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()
        if isinstance(event, FileOffered) and self.auto_accept:
            self.engine.accept(event.number, self.directory)

    auto_accept = True

    def wait_for(self, predicate: Callable[[list[FileEvent]], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.events), DEADLINE), self.events

    def outcomes(self) -> list[FileOutcome]:
        return [event for event in self.events if isinstance(event, FileOutcome)]

    def start(self) -> None:
        self.engine.attach(self.outgoing.put, lambda: self.outgoing.put(_WAKE))
        self.thread = threading.Thread(target=self._send_loop, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.engine.detach()
        self.outgoing.put(None)
        assert self.thread is not None
        self.thread.join(DEADLINE)

    def _send_loop(self) -> None:
        while True:
            try:
                item = self.outgoing.get_nowait()
            except queue.Empty:
                record = self.engine.next_record()
                if record is not None:
                    if record:  # empty: the engine hashed a step for a resume, nothing to send yet
                        self._deliver(bytes(record))
                    continue
                item = self.outgoing.get()
            if item is None:
                return
            if item:
                self._deliver(item)

    def _deliver(self, plaintext: bytes) -> None:
        assert self.other is not None
        if self.cut.is_set():
            return
        message = filewire.decode(self.tamper(plaintext))
        assert message is not None
        self.other.engine.handle(message)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Peer, Peer]]:
    (tmp_path / "alice").mkdir()
    (tmp_path / "bob").mkdir()
    alice, bob = Peer("alice", tmp_path / "alice"), Peer("bob", tmp_path / "bob")
    alice.other, bob.other = bob, alice
    alice.start()
    bob.start()
    yield alice, bob
    for peer in (alice, bob):
        peer.stop()
        peer.engine.close()


def _file(directory: Path, name: str, size: int) -> Path:
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("size", [0, 1, MAX_DATA, MAX_DATA + 1, 2 * WINDOW + 12345])
def test_sizes_disk_to_disk(pair: tuple[Peer, Peer], size: int) -> None:
    alice, bob = pair
    source = _file(alice.directory, "data.bin", size)
    alice.engine.offer(source)
    bob.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
    alice.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
    assert [o.ok for o in bob.outcomes()] == [True] and [o.ok for o in alice.outcomes()] == [True]
    saved = bob.directory / "data.bin"
    assert bob.outcomes()[0].line == f"saved {saved}, SHA-256 verified"
    assert alice.outcomes()[0].line == "sent data.bin to bob, SHA-256 verified"
    assert saved.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in bob.directory.iterdir()) == ["data.bin"]


def test_hostile_name_and_an_existing_file(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    (bob.directory / "passwd").write_text("mine")
    source = _file(alice.directory, "x", 10)
    alice.engine.offer(source, name="../../etc/passwd\x1b[2J\u202e")
    bob.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
    offered = next(e for e in bob.events if isinstance(e, FileOffered))
    assert offered.name == "passwd_[2J_"
    assert (bob.directory / "passwd").read_text() == "mine"
    assert (bob.directory / "passwd_[2J_").read_bytes() == source.read_bytes()


def test_decline(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    bob.auto_accept = False
    alice.engine.offer(_file(alice.directory, "no.txt", 100))
    bob.wait_for(lambda events: any(isinstance(e, FileOffered) for e in events))
    assert bob.engine.pending_offers() == [1]
    bob.engine.decline(1)
    alice.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
    assert alice.outcomes()[0].line == "bob declined no.txt" and not alice.outcomes()[0].ok
    assert bob.outcomes()[0].line == "declined no.txt"
    assert list(bob.directory.iterdir()) == []
    assert not alice.engine.busy and not bob.engine.busy


def _slow(peer: Peer, gate: threading.Event) -> None:
    """Hold the peer's data records until *gate* is set (a transfer that stays under way)."""

    def tamper(plaintext: bytes) -> bytes:
        if plaintext[:1] == bytes([filewire.DATA_TYPE]) and int.from_bytes(plaintext[5:13], "big") >= WINDOW:
            gate.wait(DEADLINE)
        return plaintext

    peer.tamper = tamper


@pytest.mark.parametrize("by_sender", [True, False])
def test_cancel_from_either_side(pair: tuple[Peer, Peer], by_sender: bool) -> None:
    alice, bob = pair
    gate = threading.Event()
    _slow(alice, gate)
    alice.engine.offer(_file(alice.directory, "big.bin", 3 * WINDOW))
    bob.wait_for(lambda events: any(isinstance(e, FileProgress) for e in events))
    (alice if by_sender else bob).engine.cancel(1)
    gate.set()
    for peer in (alice, bob):
        peer.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
    canceller, other = (alice, bob) if by_sender else (bob, alice)
    assert canceller.outcomes()[0].line == "you stopped big.bin"
    assert other.outcomes()[0].line == f"{'alice' if by_sender else 'bob'} stopped big.bin (cancelled)"
    bob.engine.close()  # the writer has dropped the partial data by now
    assert list(bob.directory.iterdir()) == []


def test_a_corrupted_chunk_fails_and_deletes(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair

    def corrupt(plaintext: bytes) -> bytes:
        if plaintext[:1] == bytes([filewire.DATA_TYPE]) and int.from_bytes(plaintext[5:13], "big") == MAX_DATA:
            return plaintext[:-1] + bytes([plaintext[-1] ^ 1])
        return plaintext

    alice.tamper = corrupt
    alice.engine.offer(_file(alice.directory, "f.bin", 5 * MAX_DATA))
    for peer in (alice, bob):
        peer.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
    assert bob.outcomes()[0].line == "f.bin: the data does not match its SHA-256; the partial file is deleted"
    assert alice.outcomes()[0].line == "f.bin: bob got different data (SHA-256 mismatch); not saved"
    assert list(bob.directory.iterdir()) == []


def test_resume_after_a_silent_cut(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    gate = threading.Event()
    _slow(alice, gate)
    source = _file(alice.directory, "movie.mkv", 5 * WINDOW + 99)  # hashed again in steps on resume
    alice.engine.offer(source)
    bob.wait_for(lambda events: any(isinstance(e, FileProgress) for e in events))
    alice.cut.set()
    bob.cut.set()
    gate.set()
    for peer in (alice, bob):
        peer.stop()
        peer.cut.clear()
        peer.tamper = lambda plaintext: plaintext
    bob.start()
    alice.start()  # offers again; bob answers from where he is
    for peer in (alice, bob):
        peer.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
    assert [o.ok for o in bob.outcomes() + alice.outcomes()] == [True, True]
    assert (bob.directory / "movie.mkv").read_bytes() == source.read_bytes()


def test_a_restarted_receiver_continues_a_kept_part(tmp_path: Path) -> None:
    content = os.urandom(2 * WINDOW)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "report.pdf.part").write_bytes(content[:1_000_000])
    (tmp_path / "report.pdf").write_bytes(content)
    alice, bob = Peer("alice", tmp_path), Peer("bob", tmp_path / "in")
    alice.other, bob.other = bob, alice
    sent: list[FileData] = []

    def count(plaintext: bytes) -> bytes:
        message = filewire.decode(plaintext)
        if isinstance(message, FileData):
            sent.append(message)
        return plaintext

    alice.tamper = count
    bob.start()
    alice.start()
    try:
        alice.engine.offer(tmp_path / "report.pdf")
        bob.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
        offered = next(e for e in bob.events if isinstance(e, FileOffered))
        assert offered.kept == 1_000_000
        assert sent[0].offset == 1_000_000  # only the rest travelled
        assert (tmp_path / "in" / "report.pdf").read_bytes() == content
    finally:
        for peer in (alice, bob):
            peer.stop()
            peer.engine.close()


def test_listing_and_unknown_numbers(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    bob.auto_accept = False
    alice.engine.offer(_file(alice.directory, "a.txt", 2_300_000))
    bob.wait_for(lambda events: any(isinstance(e, FileOffered) for e in events))
    assert bob.engine.listing() == ["#1 a.txt (2.3 MB) from alice: offered"]
    assert alice.engine.listing() == ["#1 a.txt (2.3 MB) to bob: offered"]
    with pytest.raises(LocalError, match="no transfer #7"):
        bob.engine.accept(7, bob.directory)
    with pytest.raises(LocalError, match="one you are sending"):
        alice.engine.decline(1)
    assert human_size(0) == "0 bytes" and human_size(999) == "999 bytes" and human_size(1_500) == "1.5 kB"


def test_the_sha256_is_of_the_whole_file(pair: tuple[Peer, Peer]) -> None:
    alice, _ = pair
    source = _file(alice.directory, "h.bin", WINDOW + 1)
    ends: list[bytes] = []

    def watch(plaintext: bytes) -> bytes:
        message = filewire.decode(plaintext)
        if isinstance(message, filewire.FileEnd):
            ends.append(message.sha256)
        return plaintext

    alice.tamper = watch
    alice.engine.offer(source)
    alice.wait_for(lambda events: any(isinstance(e, FileOutcome) for e in events))
    assert ends == [hashlib.sha256(source.read_bytes()).digest()]


def test_at_most_two_files_are_received_at_once(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    said: list[object] = []

    def watch(plaintext: bytes) -> bytes:
        said.append(filewire.decode(plaintext))
        return plaintext

    bob.tamper = watch
    for number in range(5):
        alice.engine.offer(_file(alice.directory, f"f{number}", WINDOW + number))
    bob.wait_for(lambda events: sum(isinstance(e, FileOutcome) for e in events) == 5)
    assert all(outcome.ok for outcome in bob.outcomes())
    accepts = [i for i, m in enumerate(said) if isinstance(m, filewire.FileAccept)]
    results = [i for i, m in enumerate(said) if isinstance(m, filewire.FileResult)]
    assert len(accepts) == 5 and results[0] < accepts[2]  # the third waited for a place
