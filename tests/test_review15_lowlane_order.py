"""Review #15: the low lane bypasses the `_queued` count, so a record can be sealed after a text
whose inline write left bytes in the queue, and written before them: frames out of sealing order.

Deterministic: the sender thread is stopped right where the race lives (after its high-lane
get_nowait() found nothing, before _send_record() takes the write lock) while another thread
types a text whose inline write the kernel does not take (EAGAIN, as under TCP_NOTSENT_LOWAT).
"""

from __future__ import annotations

import queue
import sys
import socket
import threading
import time

from p2pchat.core import filewire
from p2pchat.core.messages import Hello, Text
from p2pchat.core.session import Session
from p2pchat.errors import P2PChatError
from p2pchat.link import handshake
from p2pchat.link.connection import Connection

from .helpers import key

KEEPALIVE = 30


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
        t.join(5)

    hooked.hook = type_a_text
    lost: list[P2PChatError] = []
    connection.start(lambda event: None, lost.append)
    connection.use_low_lane(Lane())
    time.sleep(0.5)  # the sender writes the records and the text's bytes

    b.settimeout(1.0)
    data = bytearray()
    try:
        while chunk := b.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    events = bob.receive_data(bytes(data))  # raises TamperedError: a record came before the text's frame
    texts = [event for event in events if isinstance(event, Text)]
    assert texts == [Text(1, "hello during a transfer")]
    connection.close(say_bye=False)
    b.close()
