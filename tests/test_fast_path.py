"""The connection's fast path: callers and the receiver write inline, leftovers go to the sender thread.

Two real chats (conversation and connection) over a socket pair with small buffers, so that inline
writes are cut short and the sender thread must finish them: order, delivery and acks must not notice.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from p2pchat.core.conversation import new_conversation_id
from p2pchat.core.messages import Hello
from p2pchat.core.session import Event, Session
from p2pchat.events import ChatEvent, Delivered, Received
from p2pchat.link import handshake
from p2pchat.link.connection import Connection
from p2pchat.link.conversation import Conversation

from .helpers import key

WAIT = 60.0  # generous: a loaded two-core machine
KEEPALIVE = 30  # seconds: no keepalive is due during the test


class Chat:
    """A conversation over one connection, as the real program runs them."""

    def __init__(self, connection: Connection, early: list[Event]) -> None:
        self.conversation = Conversation(resume_for=0)
        self.connection = connection
        self.early = early

    def start(self, on_event: Callable[[ChatEvent], None]) -> None:
        self.conversation.adopt(self.connection, self.early)
        self.conversation.start(on_event)


def linked(features: tuple[str, ...]) -> tuple[Chat, Chat]:
    a, b = socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # inline writes get cut short
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    alice = Session(initiator=True, static_key=key(1), hello=hello("a", features))
    bob = Session(initiator=False, static_key=key(2), hello=hello("b", features))
    done: dict[str, list[Event]] = {}
    thread = threading.Thread(target=lambda: done.setdefault("bob", handshake.handshake(b, bob)[1]))
    thread.start()
    _, early = handshake.handshake(a, alice)
    thread.join(WAIT)
    return Chat(Connection(a, alice, KEEPALIVE), early), Chat(Connection(b, bob, KEEPALIVE), done["bob"])


def hello(name: str, features: tuple[str, ...]) -> Hello:
    return Hello(name, "t", features, keepalive=KEEPALIVE, conversation=new_conversation_id())


def run_many_senders(features: tuple[str, ...]) -> None:
    sending, receiving = linked(features)
    sender, receiver = sending.conversation, receiving.conversation
    received: list[int] = []
    delivered: list[int] = []
    all_in = threading.Event()
    total = 3 * 300

    def on_receive(event: ChatEvent) -> None:
        if isinstance(event, Received):
            received.append(event.id)
            if len(received) == total:
                all_in.set()

    def on_send(event: ChatEvent) -> None:
        if isinstance(event, Delivered):
            delivered.append(event.id)

    receiving.start(on_receive)
    sending.start(on_send)

    def send(prefix: str) -> None:
        for n in range(300):
            sender.wait_for_room()
            sender.send_text(f"{prefix}{n} " + "x" * (n * 37 % 3000))

    threads = [threading.Thread(target=send, args=(p,)) for p in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert all_in.wait(WAIT)
    assert sender.wait_acknowledged(WAIT)
    assert received == list(range(1, total + 1))  # in the order the ids were given, none lost
    assert sorted(delivered) == received and len(set(delivered)) == total
    sender.close()
    receiver.close()


@pytest.mark.parametrize("features", [("binary", "keepalive", "resume"), ()], ids=str)
def test_texts_from_many_threads_arrive_in_order_and_are_all_acknowledged(features: tuple[str, ...]) -> None:
    run_many_senders(features)
