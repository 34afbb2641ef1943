"""The listener's side of a chat that outlives connections: take the same peer back, refuse others.

The port stays open for the whole chat. Every caller goes through a full, fresh
handshake; only one that proves the peer's key is taken back (a dialer that
redials, or the peer's program started again). Anyone else is refused with one
line. :func:`accept_next` is "the next authenticated connection": the one place
a concurrent acceptor can be swapped in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
from collections.abc import Callable

from ..core.session import Event, HandshakeComplete, Session
from ..errors import NetworkError, P2PChatError, RemoteProtocolError
from .handshake import Peer, handshake, say_bye_quietly
from .sockets import peer_name

log = logging.getLogger("p2pchat")

STOP_TIMEOUT = 2.0  # seconds stop() waits for the accept thread beyond a handshake in progress


class Stopped(Exception):
    """The wait for a caller was called off."""


class CallerRefused(NetworkError):
    """Refused a caller."""


def accept_next(
    listener: socket.socket,
    make_session: Callable[[], Session],
    verify: Callable[[HandshakeComplete], None],
    on_rejected: Callable[[str, P2PChatError], None],
    timeout: float,
    wake_fd: int | None = None,
) -> tuple[socket.socket, Session, Peer, list[Event]]:
    """Wait for a caller that completes the handshake; drop (and report) every other one.

    Errors raised by *verify* that are not CallerRefused end the wait (a pinned key that
    does not match). Readable *wake_fd* ends it with Stopped.
    """
    while True:
        session = make_session()  # before accept(): its ephemeral key is ready when a caller comes
        waiting = [listener.fileno()] if wake_fd is None else [listener.fileno(), wake_fd]
        ready, _, _ = select.select(waiting, [], [])
        if wake_fd is not None and wake_fd in ready:
            raise Stopped()
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):  # the caller left before we took it
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            peer, pending = handshake(sock, session, verify, timeout)
        except (RemoteProtocolError, NetworkError) as exc:  # a bad caller, not a wrong key: keep waiting
            on_rejected(peer_name(sock), exc)
            sock.close()
            continue
        except BaseException:
            say_bye_quietly(sock, session)
            sock.close()
            raise
        sock.settimeout(None)
        return sock, session, peer, pending


class TakeBack:
    """A thread that keeps accepting during the chat and hands back the same peer's new connections.

    *take(sock, session, peer, early)* gets each authenticated connection of the right key.
    """

    def __init__(
        self,
        listener: socket.socket,
        make_session: Callable[[], Session],
        peer_key: bytes,
        take: Callable[[socket.socket, Session, Peer, list[Event]], None],
        on_rejected: Callable[[str, P2PChatError], None],
        timeout: float,
    ) -> None:
        self._listener = listener
        self._make_session = make_session
        self._peer_key = peer_key
        self._take = take
        self._on_rejected = on_rejected
        self._timeout = timeout
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="p2pchat-takeback", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _verify(self, done: HandshakeComplete) -> None:
        if done.remote_static != self._peer_key:
            raise CallerRefused("a chat with another peer is in progress")

    def _run(self) -> None:
        while True:
            try:
                sock, session, peer, early = accept_next(
                    self._listener, self._make_session, self._verify, self._on_rejected, self._timeout, self._wake_r
                )
            except Stopped:
                return
            except (OSError, P2PChatError) as exc:  # the listening socket failed: nobody can call back now
                log.debug("taking callers back stopped: %r", exc, exc_info=exc)
                return
            self._take(sock, session, peer, early)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")
        if self._thread.ident is not None:
            self._thread.join(self._timeout + STOP_TIMEOUT)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)
