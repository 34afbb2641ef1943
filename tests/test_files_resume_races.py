"""File transfers across link losses, found in review: the engine against a real sender state machine.

Each test drives FileEngine.handle() as the receiver thread would, and feeds what the engine
sends into the peer's own sans-IO state machine, which raises MessageError where the peer's
p2pchat would end the session. Every wait has a deadline; no sleep synchronises anything.
"""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

import pytest

from p2pchat.core import filewire
from p2pchat.core.filewire import FileAccept, FileData, FileOffer
from p2pchat.core.transfer import WINDOW, Transfers
from p2pchat.errors import MessageError
from p2pchat.events import LinkDown, LinkFailed
from p2pchat.link import files as files_module
from p2pchat.link.conversation import Conversation
from p2pchat.link.filetransfer import FileEngine, FileEvent
from p2pchat.term.filepipe import FilePipe

from .test_files_restart import Seen, connect

DEADLINE = 10.0


class Link:
    """What the engine sends on one connection (control messages, decoded)."""

    def __init__(self) -> None:
        self.sent: list[filewire.Control] = []

    def send(self, plaintext: bytes) -> None:
        self.sent.append(filewire.decode(plaintext))  # type: ignore[arg-type]


class Receiver:
    """A FileEngine receiving; links come and go; what it sends is kept per link."""

    def __init__(self, directory: Path) -> None:
        self.events: list[FileEvent] = []
        self.changed = threading.Condition()
        self.engine = FileEngine(self._event, peer="alice", directory=directory)
        self.links: list[Link] = []
        self.new_link()

    def _event(self, event: FileEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def new_link(self) -> Link:
        if self.links:
            self.engine.detach()
        link = Link()
        original = link.send

        def send(plaintext: bytes) -> None:
            with self.changed:
                original(plaintext)
                self.changed.notify_all()

        link.send = send  # type: ignore[method-assign]
        self.links.append(link)
        self.engine.attach(link.send, lambda: None)
        return link

    def wait_sent(self, link: Link, predicate, what: str) -> None:  # type: ignore[no-untyped-def]
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(link.sent), DEADLINE), (what, link.sent)


def accepts(messages: list[filewire.Control], transfer_id: int) -> list[FileAccept]:
    return [m for m in messages if isinstance(m, FileAccept) and m.id == transfer_id]


def deliver(peer: Transfers, messages: list[filewire.Control]) -> None:
    """The peer's receiver thread: each message into its state machine (MessageError = session over)."""
    for message in messages:
        peer.receive(message)


def test_an_accept_crossing_a_repeated_offer_is_the_only_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/accept (or --save-to) while the writer is slow to open the .part (a kept NAME.part of GBs
    is hashed in _open), and the link blips. The writer's file_accept goes out on the new link,
    crossing the sender's repeated offer: that accept is the answer. A second file_accept on the
    same connection would end the session at the sender ("the peer accepted a file twice")."""
    entered, gate = threading.Event(), threading.Event()
    real_create = files_module.PartFile.create.__func__

    def slow_create(cls, directory, offered, size):  # type: ignore[no-untyped-def]
        entered.set()
        assert gate.wait(DEADLINE)
        return real_create(cls, directory, offered, size)

    monkeypatch.setattr(files_module.PartFile, "create", classmethod(slow_create))
    sender = Transfers()
    receiver = Receiver(tmp_path)
    _, offer = sender.offer("a.bin", 100_000)
    receiver.engine.handle(offer)
    receiver.engine.accept(1, tmp_path)
    assert entered.wait(DEADLINE)  # the writer is opening the .part
    sender.link_lost()
    link2 = receiver.new_link()  # the link is back
    reoffers = sender.link_up()  # the sender's repeated offer, on its way
    gate.set()  # the writer finishes opening: file_accept on link 2
    receiver.wait_sent(link2, lambda sent: accepts(sent, 1), "the accept")
    receiver.engine.handle(reoffers[0])  # the repeated offer arrives
    # A sync point: a second offer accepted on link 2 is answered after the writer's earlier tasks.
    _, offer2 = sender.offer("b.bin", 10)
    receiver.engine.handle(offer2)
    receiver.engine.accept(2, tmp_path)
    receiver.wait_sent(link2, lambda sent: accepts(sent, 2), "the sync point")
    try:
        deliver(sender, [m for m in link2.sent if m.id == 1])  # MessageError: "accepted a file twice"
        assert len(accepts(link2.sent, 1)) == 1, link2.sent
    finally:
        receiver.engine.close()


def test_a_repeated_offer_from_a_lost_link_is_not_answered_on_the_next(
    tmp_path: Path, slow_disk: threading.Semaphore
) -> None:
    """Slow disk: the writer is behind. Link 2 comes and goes before the writer reaches its
    answer to link 2's repeated offer; link 3 comes. Only link 3's own answer may go out on link 3:
    the stale one too would make two file_accepts on one connection (a protocol error)."""
    gate = slow_disk  # each write waits for a permit
    sender = Transfers()
    receiver = Receiver(tmp_path)
    transfer, offer = sender.offer("big.bin", 10 * filewire.MAX_DATA)
    receiver.engine.handle(offer)
    receiver.engine.accept(1, tmp_path)
    receiver.wait_sent(receiver.links[0], lambda sent: accepts(sent, 1), "the first accept")
    deliver(sender, receiver.links[0].sent)
    chunk = sender.outgoing[1].next_chunk()
    assert chunk is not None
    receiver.engine.handle(FileData(1, 0, memoryview(bytes(chunk[1]))))  # the writer blocks on it
    transfer.sent(*chunk)
    for _ in range(2):  # link 2, lost again before the writer answers; then link 3
        sender.link_lost()
        receiver.new_link()
        for reoffer in sender.link_up():
            receiver.engine.handle(reoffer)
    link3 = receiver.links[-1]
    gate.release(1_000_000)
    _, offer2 = sender.offer("b.bin", 10)  # the sync point, as above
    receiver.engine.handle(offer2)
    receiver.engine.accept(2, tmp_path)
    receiver.wait_sent(link3, lambda sent: accepts(sent, 2), "the sync point")
    try:
        deliver(sender, [m for m in link3.sent if m.id == 1])  # MessageError: "accepted a file twice"
        assert len(accepts(link3.sent, 1)) == 1, link3.sent
    finally:
        receiver.engine.close()


def test_a_cancel_resent_for_an_offer_lost_with_its_link_comes_with_the_offer(tmp_path: Path) -> None:
    """/send while the link is dying: the offer is queued on a connection that never delivers it.
    /cancel during the outage. On the next link the cancel goes again, with its offer before it: a
    file_cancel alone, for an offer the peer never saw, would be a protocol error there."""
    source = tmp_path / "big.bin"
    source.write_bytes(b"q" * 1000)
    peer = Transfers()  # the receiver: it never got the offer
    engine = FileEngine(lambda event: None, peer="bob", directory=tmp_path)
    engine.attach(lambda plaintext: None, lambda: None)  # a link whose queued bytes never arrive
    number = engine.offer(source)
    engine.detach()
    engine.cancel(number)
    link2 = Link()
    engine.attach(link2.send, lambda: None)
    try:
        deliver(peer, link2.sent)  # type: ignore[arg-type]
    finally:
        engine.close()


def test_a_hostile_sender_cannot_queue_more_than_a_window_for_the_disk(
    tmp_path: Path, slow_disk: threading.Semaphore
) -> None:
    """Hostile sender, disk behind: it offers again and sends data at once. On the same link the
    repeated offer changes nothing (our accept answered it); on a new link, data before our answer
    is a protocol error. Either way no more than a window waits for the disk."""
    permits = slow_disk
    receiver = Receiver(tmp_path)
    size = 64 * 1024 * 1024
    receiver.engine.handle(FileOffer(1, "big.bin", size))
    receiver.engine.accept(1, tmp_path)
    receiver.wait_sent(receiver.links[0], lambda sent: accepts(sent, 1), "the accept")
    chunk = memoryview(bytes(filewire.MAX_DATA))
    handed = 0
    receiver.engine.handle(FileOffer(1, "big.bin", size))  # repeated on the link our accept went on
    with pytest.raises(MessageError, match="window"):
        while True:
            receiver.engine.handle(FileData(1, handed, chunk))
            handed += len(chunk)
    assert handed <= WINDOW
    assert len(accepts(receiver.links[0].sent, 1)) == 1  # nothing reset the window
    receiver.new_link()  # a new link: the offer again, then data without waiting for the answer
    receiver.engine.handle(FileOffer(1, "big.bin", size))
    with pytest.raises(MessageError, match="before its repeated offer was answered"):
        receiver.engine.handle(FileData(1, handed, chunk))
    for _ in range(200):
        permits.release()
    receiver.engine.close()


def test_the_pipe_wait_ends_when_the_resume_deadline_ends_the_chat(tmp_path: Path) -> None:
    """--send FILE, the link is lost, the peer never comes back: the conversation ends at the resume
    deadline, and that wakes the pipe's wait for its transfers, though no link carried them any more
    (else the pipe would sit up to STALL_TIMEOUT, 120 s, more)."""
    source = tmp_path / "big.bin"
    source.write_bytes(b"q" * 1000)
    seen = Seen()
    conversation = Conversation(resume_for=0.5)
    pipe = FilePipe("bob", None, stderr=io.StringIO())
    conversation.use_files(pipe.engine)
    sock, _peer = connect(conversation, "a" * 32)
    conversation.start(seen.add)
    pipe.offer([source], conversation.files_in_use)
    returned = threading.Event()

    def wait() -> None:
        pipe.wait(gone=lambda: conversation.is_ended, connected=lambda: conversation.connected)
        returned.set()

    threading.Thread(target=wait, daemon=True).start()
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    seen.wait(lambda e: isinstance(e, LinkDown), "the loss")
    seen.wait(lambda e: isinstance(e, LinkFailed), "the resume deadline")
    try:
        assert returned.wait(5.0), "the pipe still waits for its transfers after the chat ended"
    finally:
        conversation.close(say_bye=False)
        pipe.engine.close()
