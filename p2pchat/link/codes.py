"""Short codes on a socket: the SPAKE2 frames before the Noise handshake, and the listener's single-use code.

The dialer sends its SPAKE2 message as one frame and reads the listener's; the
psk that results goes into the Noise handshake (see ``core/pake.py`` and
SECURITY.md, "Short codes"). A listener's code admits one attempt: the first
caller that sends a code message claims it, and if that caller does not end up
admitted the code is used up and the listener stops (a new ``listen --code``
makes a new code). Callers that come while the code is claimed are turned away
without touching it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from ..core.framing import encode_frame
from ..core.pake import CodeExchange, is_code_message
from ..core.session import Session
from ..errors import (
    ConnectionLost,
    FrameError,
    HandshakeError,
    HandshakeTimeout,
    NetworkError,
    P2PChatError,
    SecurityError,
)


class CodeMismatch(HandshakeError):
    """The short code did not match: a typo, or someone in the middle guessed wrong. Ask for a new code."""


class CodeUsedUp(SecurityError):
    """A caller tried a wrong code (or someone in the middle guessed): the code is used up."""


def exchange(sock: socket.socket, code: CodeExchange, deadline: float) -> bytes:
    """The dialer's side: send our SPAKE2 frame, read the listener's; returns the psk."""
    try:
        _settimeout(sock, deadline)
        sock.sendall(encode_frame(code.start()))
        frame = read_frame(sock, deadline)
    except TimeoutError as exc:
        raise HandshakeTimeout("the listener did not answer our short code in time") from exc
    except OSError as exc:
        raise ConnectionLost(f"connection lost during the short-code exchange: {exc.strerror or exc}") from exc
    if frame is None:
        raise HandshakeError(
            "the listener hung up at our short code: it is not listening with --code, "
            "or its code is used up or being tried by someone else"
        )
    return code.finish(frame)


def read_frame(sock: socket.socket, deadline: float) -> bytes | None:
    """Exactly one frame, reading no byte beyond it (the Noise handshake follows); None at EOF."""
    header = _read_exactly(sock, 2, deadline)
    if header is None:
        return None
    length = int.from_bytes(header, "big")
    if length == 0:
        raise FrameError()
    return _read_exactly(sock, length, deadline)


def _read_exactly(sock: socket.socket, count: int, deadline: float) -> bytes | None:
    data = b""
    while len(data) < count:
        _settimeout(sock, deadline)
        chunk = sock.recv(count - len(data))
        if not chunk:
            if data:
                raise FrameError("the connection ended inside a frame")
            return None
        data += chunk
    return data


def _settimeout(sock: socket.socket, deadline: float) -> None:
    sock.settimeout(max(0.001, deadline - time.monotonic()))


class CodeGate:
    """The listener's gate (see ``link.acceptor.Gate``): one attempt at the code, then it is used up."""

    def __init__(self, code: str, make_session: Callable[[bytes], Session]) -> None:
        self._code = code
        self._make_session = make_session
        self._lock = threading.Lock()
        self._claimant: socket.socket | None = None  # the caller whose attempt is the one
        self._used = False

    def open(self, sock: socket.socket, deadline: float) -> Session:
        frame = read_frame(sock, deadline)
        if frame is None:
            raise ConnectionLost("the caller left before sending a short code")
        if not is_code_message(frame):
            raise HandshakeError("the caller sent no short code (this listener wants: p2pchat dial ... --code CODE)")
        exchange = CodeExchange(self._code, dialer=False)
        ours = exchange.start()
        psk = exchange.finish(frame)  # a malformed message fails here, before the code is claimed
        with self._lock:
            if self._used or self._claimant is not None:
                raise NetworkError("the code is being tried by another caller, or is used up")
            self._claimant = sock
        _settimeout(sock, deadline)
        sock.sendall(encode_frame(ours))  # from here on, this caller has had its one guess
        return self._make_session(psk)

    def settle(self, sock: socket.socket, error: P2PChatError | None) -> P2PChatError | None:
        with self._lock:
            if sock is not self._claimant:
                return None
            self._used = True
        if error is None:
            return None
        return CodeUsedUp(
            "the short code was tried and did not match (a typo, or someone in the middle guessing): "
            "it is used up; run p2pchat listen --code again for a new one"
        )
