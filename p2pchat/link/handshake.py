"""The handshake on a socket: run a Session's handshake within a deadline (callers are accepted in acceptor.py)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.messages import Bye, Hello
from ..core.session import Event, HandshakeComplete, Session
from ..errors import (
    ConnectionLost,
    HandshakeError,
    HandshakeTimeout,
    P2PChatError,
    PassphraseMismatch,
)
from .sockets import peer_name

HANDSHAKE_TIMEOUT = 10.0  # seconds a peer gets to finish the handshake and say hello
RECV_SIZE = 256 * 1024  # bytes per recv(): several full frames per system call
CLOSE_LINGER = 2.0  # seconds to wait for the peer to close after our bye


@dataclass(frozen=True)
class Peer:
    """Who is on the other end, once the handshake and hello are done."""

    remote_static: bytes
    handshake_hash: bytes
    hello: Hello
    address: str


def handshake(
    sock: socket.socket,
    session: Session,
    verify: Callable[[HandshakeComplete], None] = lambda _: None,
    timeout: float = HANDSHAKE_TIMEOUT,
    *,
    first_timeout: float | None = None,
) -> tuple[Peer, list[Event]]:
    """Run the handshake and wait for the peer's hello, all within *timeout*.

    *verify* sees the peer's key before this side sends anything after it (our
    last handshake message, our hello); raising there aborts with nothing said.
    A listener gives the caller's first message a shorter *first_timeout*.
    Returns the peer and any events that arrived right behind its hello.
    """
    start = time.monotonic()
    deadline = start + timeout
    first_deadline = min(deadline, start + first_timeout) if first_timeout is not None else deadline
    answered = False  # the peer's first handshake message arrived
    complete: HandshakeComplete | None = None
    hello: Hello | None = None
    pending: list[Event] = []
    sent_everything = False
    try:
        _send(sock, session.data_to_send(), deadline)
        while hello is None:
            try:
                data = _recv(sock, deadline if answered else first_deadline)
            except TimeoutError:
                if not answered and first_deadline < deadline:
                    raise HandshakeTimeout(
                        f"the caller did not start the handshake within {first_deadline - start:g} s"
                    ) from None
                raise
            if not data:
                if session.initiator and not answered:
                    # A p2pchat listener hangs up on our first message when its psk setting differs.
                    raise PassphraseMismatch(
                        "the listener hung up at our first handshake message: "
                        "the passphrases may differ (or one side has none), or it is refusing callers for now"
                    )
                session.receive_eof()  # raises, unless the peer said bye before hello
                raise ConnectionLost("the peer left during the handshake")
            events = session.receive_data(data)
            # A dialer is answered by any byte; a listener only by a whole first message (no slow drip).
            answered = answered or session.initiator or session.has_unsent_data or session.handshake_complete
            for event in events:
                if isinstance(event, HandshakeComplete):
                    complete = event
                    verify(event)
                elif isinstance(event, Hello) and hello is None:
                    hello = event
                else:
                    pending.append(event)
            out = session.data_to_send()
            if out:
                _send(sock, out, deadline)
                sent_everything = session.handshake_complete
    except TimeoutError as exc:
        raise HandshakeTimeout(f"the peer did not complete the handshake within {timeout:g} s") from exc
    except ConnectionLost as exc:
        if sent_everything and not session.bye_received:
            # We finished our part, and the peer hung up instead of saying hello.
            raise HandshakeError(
                "the peer ended the handshake: the passphrases may differ (or one side has none), or it refused our key"
            ) from exc
        raise
    except OSError as exc:
        raise ConnectionLost(f"connection lost during the handshake: {exc.strerror or exc}") from exc
    assert complete is not None
    return Peer(complete.remote_static, complete.handshake_hash, hello, peer_name(sock)), pending


def say_bye_quietly(sock: socket.socket, session: Session) -> None:
    """Leave politely if the handshake got that far (Ctrl-C while connecting); never raises.

    Nothing is sent if our side of the handshake is still unsent (a key check refused the peer).
    """
    if session.handshake_complete and not session.has_unsent_data:
        with contextlib.suppress(OSError, P2PChatError):
            sock.settimeout(CLOSE_LINGER)
            sock.sendall(session.send(Bye()))


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    return sock.recv(RECV_SIZE)


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    if data:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(data)
