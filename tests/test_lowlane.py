"""The connection's low lane (file data) against texts written by the caller's own thread.

Frames must leave in the order they were sealed: a text whose inline write the kernel did not
take (EAGAIN, as under TCP_NOTSENT_LOWAT) waits in the queue, and no record may overtake it.
The race is made deterministic: the sender thread is held right where it lives (its high lane
just found empty, the write lock not yet taken) while another thread types.

A caller whose inline write fails must not be the one to report it: it may hold the
conversation's lock, which the report takes.
"""

from __future__ import annotations

import queue
import socket
import sys
import threading

from p2pchat.core import filewire
from p2pchat.core.conversation import new_conversation_id
from p2pchat.core.filewire import FileData
from p2pchat.core.messages import Hello, Text
from p2pchat.core.session import Session
from p2pchat.errors import P2PChatError
from p2pchat.events import LinkFailed
from p2pchat.link import handshake
from p2pchat.link.connection import Connection
from p2pchat.link.conversation import Conversation

from .helpers import key

KEEPALIVE = 30
DEADLINE = 10.0


class RefusingSocket(socket.socket):
    """A socket whose send() says EAGAIN to one chosen thread (the kernel's buffer is full for it)."""

    refuse: threading.Thread | None = None

    def send(self, data, flags=0):  # type: ignore[no-untyped-def]
        if self.refuse is threading.current_thread():
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return super().send(data, flags)


class HookQueue(queue.SimpleQueue):  # type: ignore[type-arg]
    """Runs *hook* once, the first time get_nowait() finds the queue empty."""

    hook = None

    def get_nowait(self):  # type: ignore[no-untyped-def]
        try:
            return super().get_nowait()
        except queue.Empty:
            if self.hook is not None and sys._getframe(1).f_code.co_name == "_next_item":
                hook, self.hook = self.hook, None
                hook()
            raise


class Lane:
    """Three small file data records, then nothing."""

    def __init__(self) -> None:
        self.left = 3
        self.offset = 0

    def next_record(self) -> memoryview | None:
        if not self.left:
            return None
        self.left -= 1
        record = filewire.encode_data(1, self.offset, b"x" * 100)
        self.offset += 100
        return memoryview(record)


def test_a_text_whose_inline_write_was_cut_short_is_not_overtaken_by_a_record() -> None:
    a, b = socket.socketpair()
    a = RefusingSocket(a.family, a.type, a.proto, fileno=a.detach())
    features = (filewire.FEATURE,)
    alice = Session(initiator=True, static_key=key(1), hello=Hello("a", "t", features, keepalive=KEEPALIVE))
    bob = Session(initiator=False, static_key=key(2), hello=Hello("b", "t", features, keepalive=KEEPALIVE))
    thread = threading.Thread(target=lambda: handshake.handshake(b, bob))
    thread.start()
    handshake.handshake(a, alice)
    thread.join(10)
    connection = Connection(a, alice, KEEPALIVE)
    assert connection.files
    hooked = HookQueue()
    connection._outgoing = hooked  # type: ignore[assignment]

    def type_a_text() -> None:  # another thread, while the sender sits between get_nowait() and the write lock
        def typist() -> None:
            a.refuse = threading.current_thread()
            connection.send(Text(1, "hello during a transfer"))

        t = threading.Thread(target=typist)
        t.start()
        t.join(DEADLINE)

    hooked.hook = type_a_text
    lost: list[P2PChatError] = []
    connection.start(lambda event: None, lost.append)
    connection.use_low_lane(Lane())

    b.settimeout(DEADLINE)
    events: list[object] = []
    while sum(isinstance(e, (Text, FileData)) for e in events) < 4:  # the text and three records
        chunk = b.recv(65536)
        assert chunk, "the connection ended early"
        events += bob.receive_data(chunk)  # a record sealed after the text but sent before it: TamperedError
    assert [e for e in events if isinstance(e, Text)] == [Text(1, "hello during a transfer")]
    assert not lost
    connection.close(say_bye=False)
    b.close()


class ResettingSocket(socket.socket):
    """send() fails with ECONNRESET for one chosen thread (the peer reset the connection)."""

    reset_for: threading.Thread | None = None

    def send(self, data, flags=0):  # type: ignore[no-untyped-def]
        if self.reset_for is threading.current_thread():
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().send(data, flags)


def test_a_failed_inline_write_is_reported_by_the_receiver_thread_without_deadlock() -> None:
    a, b = socket.socketpair()
    a = ResettingSocket(a.family, a.type, a.proto, fileno=a.detach())

    def hello(name: str) -> Hello:
        return Hello(name, "t", (filewire.FEATURE,), keepalive=KEEPALIVE, conversation=new_conversation_id())

    alice = Session(initiator=True, static_key=key(1), hello=hello("a"))
    bob = Session(initiator=False, static_key=key(2), hello=hello("b"))
    thread = threading.Thread(target=lambda: handshake.handshake(b, bob))
    thread.start()
    _, early = handshake.handshake(a, alice)
    thread.join(DEADLINE)
    ended = threading.Event()
    conversation = Conversation(resume_for=0)
    conversation.adopt(Connection(a, alice, KEEPALIVE), early)
    conversation.start(lambda event: ended.set() if isinstance(event, LinkFailed) else None)

    def typist() -> None:  # nothing is queued: the text is written from this thread, under the conversation's lock
        a.reset_for = threading.current_thread()
        conversation.send_text("are you there?")

    typing = threading.Thread(target=typist, daemon=True)
    typing.start()
    typing.join(DEADLINE)
    assert not typing.is_alive(), "send_text deadlocked: the inline write's failure was reported under its lock"
    assert ended.wait(DEADLINE), "the failure was never reported"
    assert "connection reset" in str(conversation.ended).lower()
    assert conversation.unacknowledged() == {1: "are you there?"}  # not delivered, and said so at the end
    conversation.close(say_bye=False)
    b.close()
