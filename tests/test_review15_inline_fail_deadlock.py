"""Review #15 (pre-existing, made no better by the files wiring): a text written inline whose write
fails (ECONNRESET from a peer that reset) calls Connection._fail -> Conversation._on_lost from
inside Conversation.send_text, which holds Conversation._lock (a non-reentrant Lock): the typing
thread deadlocks for good (the terminal freezes; a pipe never ends).
"""

from __future__ import annotations

import socket
import threading
import time

from p2pchat.core import filewire
from p2pchat.core.conversation import new_conversation_id
from p2pchat.core.messages import Hello
from p2pchat.core.session import Session
from p2pchat.link import handshake
from p2pchat.link.connection import Connection
from p2pchat.link.conversation import Conversation

from .helpers import key

KEEPALIVE = 30


class ResettingSocket(socket.socket):
    """send() fails with ECONNRESET for one chosen thread (the peer reset the connection)."""

    reset_for: threading.Thread | None = None

    def send(self, data, flags=0):  # type: ignore[no-untyped-def]
        if self.reset_for is threading.current_thread():
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().send(data, flags)


def test_a_failed_inline_write_does_not_deadlock_send_text() -> None:
    a, b = socket.socketpair()
    a = ResettingSocket(a.family, a.type, a.proto, fileno=a.detach())
    features = (filewire.FEATURE,)

    def hello(name: str) -> Hello:
        return Hello(name, "t", features, keepalive=KEEPALIVE, conversation=new_conversation_id())

    alice = Session(initiator=True, static_key=key(1), hello=hello("a"))
    bob = Session(initiator=False, static_key=key(2), hello=hello("b"))
    done: dict[str, list] = {}
    thread = threading.Thread(target=lambda: done.setdefault("bob", handshake.handshake(b, bob)[1]))
    thread.start()
    _, early = handshake.handshake(a, alice)
    thread.join(10)
    conversation = Conversation(resume_for=0)
    conversation.adopt(Connection(a, alice, KEEPALIVE), early)
    conversation.start(lambda event: None)
    time.sleep(0.3)  # nothing queued: the next text is written inline

    def typist() -> None:
        a.reset_for = threading.current_thread()
        conversation.send_text("are you there?")

    typing = threading.Thread(target=typist, daemon=True)
    typing.start()
    typing.join(10)
    assert not typing.is_alive(), "send_text deadlocked on Conversation._lock (inline write failed)"
    conversation.close(say_bye=False)
    b.close()
