"""A bug in what a connection's threads call (the interface, the file engine) ends the chat with one
line and exit code 70, never a traceback on the screen and a half-dead connection."""

from __future__ import annotations

import socket
import threading

from p2pchat.core.messages import Hello, Text
from p2pchat.core.session import Session
from p2pchat.errors import ExitCode, InternalError, P2PChatError
from p2pchat.link import handshake
from p2pchat.link.connection import Connection

from .helpers import key

DEADLINE = 10.0


def test_a_bug_in_the_message_handler_fails_the_connection_in_one_line() -> None:
    a, b = socket.socketpair()
    alice = Session(initiator=True, static_key=key(1), hello=Hello("a", "t"))
    bob = Session(initiator=False, static_key=key(2), hello=Hello("b", "t"))
    thread = threading.Thread(target=lambda: handshake.handshake(b, bob))
    thread.start()
    handshake.handshake(a, alice)
    thread.join(DEADLINE)
    uncaught: list[threading.ExceptHookArgs] = []
    previous, threading.excepthook = threading.excepthook, uncaught.append
    lost: list[P2PChatError] = []
    failed = threading.Event()

    def on_message(event: object) -> None:
        raise RuntimeError("secret file contents")  # a bug; its text must not reach the user

    def on_lost(error: P2PChatError) -> None:
        lost.append(error)
        failed.set()

    connection = Connection(a, alice, 30)
    try:
        connection.start(on_message, on_lost)
        b.sendall(bob.send(Text(1, "hi")))
        assert failed.wait(DEADLINE)
        assert isinstance(lost[0], InternalError) and lost[0].exit_code == ExitCode.INTERNAL
        assert str(lost[0]) == "internal error: RuntimeError (run with -v for details)"
        connection.close(say_bye=False)
        assert not uncaught
    finally:
        threading.excepthook = previous
        b.close()
