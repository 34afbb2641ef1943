"""A listener's front door: handshakes with several callers at once, each bounded in time and number.

    acceptor = Acceptor(listener, make_session, on_rejected=report)
    try:
        accepted = acceptor.next(admit)   # the next caller that completes the handshake and that admit() accepts
    finally:
        acceptor.close()

One thread accepts connections; each caller's handshake runs in a thread of its own,
at most MAX_HANDSHAKES at once and MAX_PER_SOURCE from one address, so silent or slow
callers cannot keep the real peer out. A caller must send its first handshake message
within FIRST_MESSAGE_TIMEOUT and finish within the handshake timeout. Failed handshakes
feed a :class:`~p2pchat.core.throttle.Throttle`: a source (and, past a point, everyone)
is refused for a growing time, which bounds online guessing of a passphrase or code.

``next()`` may be called again and again on one acceptor (a chat taking back its peer
after a lost connection): *admit* sees each caller's key before anything of ours follows
our handshake, and raising there (KeyMismatchError, say) rejects that caller only.
A caller admitted while no ``next()`` is waiting is held (one at most) for the next call,
which checks it again with its own *admit*.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from ..core.session import Event, HandshakeComplete, Session
from ..core.throttle import Throttle, source_of
from ..errors import HandshakeError, NetworkError, P2PChatError, SecurityError
from .handshake import HANDSHAKE_TIMEOUT, Peer, handshake, say_bye_quietly
from .sockets import peer_name

log = logging.getLogger("p2pchat")

MAX_HANDSHAKES = 16  # callers in the handshake at once: enough for the real peer to get through a crowd
MAX_PER_SOURCE = 4  # of those from one address (IPv6: one /64), so one machine cannot take every slot
FIRST_MESSAGE_TIMEOUT = 3.0  # seconds for a caller's first handshake message: a real peer sends it at once
CLOSE_TIMEOUT = 5.0  # seconds close() waits for handshake threads to notice their sockets are shut
REPORT_EVERY = 10.0  # seconds between lines about refusing one source (an attack must not flood stderr)


class Closed(Exception):
    """The acceptor was closed while next() waited."""


class Accepted(NamedTuple):
    """A caller that completed the handshake and was admitted; the socket is blocking again."""

    sock: socket.socket
    session: Session
    peer: Peer
    early: list[Event]  # events that arrived right behind the peer's hello


Admit = Callable[[HandshakeComplete], None]


class Gate(Protocol):
    """What happens around each caller's handshake (a short-code exchange before it, say)."""

    def open(self, sock: socket.socket, deadline: float) -> Session:
        """Before the handshake, by *deadline*: the caller's Session; raising P2PChatError refuses it."""
        ...

    def settle(self, sock: socket.socket, error: P2PChatError | None) -> P2PChatError | None:
        """After it (error None: admitted). Returning an error ends every wait with it."""
        ...


class _Sessions:
    """The plain gate: a fresh session per caller, nothing to settle."""

    def __init__(self, make_session: Callable[[], Session]) -> None:
        self._make_session = make_session

    def open(self, sock: socket.socket, deadline: float) -> Session:
        return self._make_session()

    def settle(self, sock: socket.socket, error: P2PChatError | None) -> P2PChatError | None:
        return None


def _admit_anyone(_: HandshakeComplete) -> None:
    pass


def _was_a_guess(session: Session, error: P2PChatError) -> bool:
    """Whether a failed handshake could have tested a secret: one that failed at the caller's last message.

    Only there does a passphrase (the psk is mixed in at the end of message 3) decide the outcome.
    Garbage, silence or another protocol tests nothing and must not lock the real peer out.
    """
    return isinstance(error, HandshakeError) and session.handshake_messages_read >= 2


class Acceptor:
    """Serves handshakes on a listening socket and hands out authenticated callers (see the module doc)."""

    def __init__(
        self,
        listener: socket.socket,
        make_session: Callable[[], Session],
        on_rejected: Callable[[str, P2PChatError], None],
        *,
        timeout: float = HANDSHAKE_TIMEOUT,
        first_message_timeout: float = FIRST_MESSAGE_TIMEOUT,
        max_handshakes: int = MAX_HANDSHAKES,
        max_per_source: int = MAX_PER_SOURCE,
        throttle: Throttle | None = None,
        gate: Gate | None = None,
        admit: Admit = _admit_anyone,
    ) -> None:
        self._listener = listener
        self._gate: Gate = gate or _Sessions(make_session)
        self._on_rejected = on_rejected
        self._timeout = timeout
        self._first_timeout = min(first_message_timeout, timeout)
        self._max = max_handshakes
        self._max_per_source = max_per_source
        self.throttle = throttle or Throttle()
        self._lock = threading.Lock()  # guards everything below, and serialises on_rejected
        self._admit = admit  # callers that finish before the first next() are checked by this one
        self._in_flight: dict[socket.socket, str] = {}  # socket -> source, while its handshake runs
        self._workers: set[threading.Thread] = set()
        self._reported: dict[str, float] = {}  # source -> when we last said we refuse it
        self._results: queue.Queue[Accepted | P2PChatError | Closed] = queue.Queue(maxsize=1)
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()  # close() wakes the accept thread through this
        self._thread = threading.Thread(target=self._accept_loop, name="p2pchat-acceptor", daemon=True)
        self._thread.start()

    # -- the API ---------------------------------------------------------------

    def next(self, admit: Admit | None = None, timeout: float | None = None) -> Accepted:
        """The next caller that completes the handshake and that *admit* lets in.

        *admit* (default: the one given before) replaces the predicate for every caller from
        now on. Blocks until a caller is admitted, or *timeout* seconds (TimeoutError).
        *admit* raises a P2PChatError to refuse a caller; that caller gets a one-line report,
        and the wait goes on. NetworkError if the listening socket fails; Closed once close()
        was called (from another thread, say).
        """
        if admit is not None:
            with self._lock:
                self._admit = admit
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                result = self._results.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"no caller within {timeout:g} s") from None
            if isinstance(result, (P2PChatError, Closed)):
                self._fail(result)  # it stays the answer for every later call
                raise result
            if self._still_admitted(result):
                return result

    def close(self) -> None:
        """Stop accepting, end every handshake in progress, and wait (boundedly) for the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for sock in self._in_flight:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes its handshake thread at once
            workers = list(self._workers)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for thread in [self._thread, *workers]:
            thread.join(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(queue.Empty):
            held = self._results.get_nowait()
            if isinstance(held, Accepted):
                say_bye_quietly(held.sock, held.session)
                held.sock.close()
        self._fail(Closed())  # a next() waiting in another thread returns now
        self._wake_r.close()
        self._wake_w.close()

    # -- the accept thread -----------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = selector.select()  # idle until a caller or close(): no polling
                with self._lock:
                    if self._closed:
                        return
                if not any(key.fileobj is self._listener for key, _ in ready):
                    continue
                try:
                    sock, _ = self._listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue  # the caller left before we took it
                except OSError as exc:
                    self._fail(NetworkError(f"cannot accept callers: {exc.strerror or exc}"))
                    return
                self._admit_connection(sock)

    def _admit_connection(self, sock: socket.socket) -> None:
        address = peer_name(sock)
        source = source_of(address.rpartition(":")[0])
        refusal = None
        with self._lock:
            wait = self.throttle.wait(source)
            if wait > 0:
                now = time.monotonic()
                if now - self._reported.get(source, -REPORT_EVERY) >= REPORT_EVERY:
                    self._reported[source] = now
                    refusal = f"too many failed handshakes; refusing callers from there for {wait:.0f} s"
            elif len(self._in_flight) >= self._max:
                refusal = f"already {self._max} handshakes in progress"
            elif sum(1 for s in self._in_flight.values() if s == source) >= self._max_per_source:
                refusal = f"already {self._max_per_source} handshakes in progress from that address"
            else:
                self._in_flight[sock] = source
                worker = threading.Thread(target=self._serve, args=(sock, address, source), daemon=True)
                self._workers.add(worker)
                worker.start()
                return
        sock.close()
        if refusal is not None:
            self._report(address, NetworkError(refusal))

    # -- one handshake per thread ------------------------------------------------------------

    def _serve(self, sock: socket.socket, address: str, source: str) -> None:
        session: Session | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = self._gate.open(sock, time.monotonic() + self._first_timeout)
            peer, early = handshake(sock, session, self._check, self._timeout, first_timeout=self._first_timeout)
        except P2PChatError as exc:  # a bad caller, a wrong key, a passphrase that differs: keep waiting
            if session is not None and _was_a_guess(session, exc):
                with self._lock:
                    self.throttle.failed(source)
            self._drop(sock)
            if not self._closed:
                self._report(address, exc)
            self._settle(sock, exc)
            return
        except OSError as exc:  # our socket was shut by close(), or the caller's vanished
            self._drop(sock)
            lost = NetworkError(f"connection lost during the handshake: {exc.strerror or exc}")
            if not self._closed:
                self._report(address, lost)
            self._settle(sock, lost)
            return
        except BaseException as exc:  # a bug: one line for the listener, the details behind -v
            log.debug("handshake thread failed:", exc_info=exc)
            self._drop(sock)
            self._settle(sock, NetworkError("internal error during the handshake"))
            return
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())
        with self._lock:
            self.throttle.succeeded(source)
            self._in_flight.pop(sock, None)
            closed = self._closed
        sock.settimeout(None)
        self._settle(sock, None)
        accepted = Accepted(sock, session, peer, early)
        if closed or not self._offer(accepted):
            say_bye_quietly(sock, session)
            sock.close()

    def _settle(self, sock: socket.socket, error: P2PChatError | None) -> None:
        fatal = self._gate.settle(sock, error)
        if fatal is not None:
            self._fail(fatal)

    def _check(self, done: HandshakeComplete) -> None:
        with self._lock:
            admit = self._admit
        admit(done)

    def _offer(self, accepted: Accepted) -> bool:
        try:
            self._results.put_nowait(accepted)
        except queue.Full:
            self._report(accepted.peer.address, SecurityError("another caller is already waiting to be taken"))
            return False
        return True

    def _still_admitted(self, accepted: Accepted) -> bool:
        """Check a waiting caller again: it may have been admitted under an earlier predicate."""
        with self._lock:
            admit = self._admit
        try:
            admit(HandshakeComplete(accepted.peer.remote_static, accepted.peer.handshake_hash))
        except P2PChatError as exc:
            self._report(accepted.peer.address, exc)
            say_bye_quietly(accepted.sock, accepted.session)
            accepted.sock.close()
            return False
        return True

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._in_flight.pop(sock, None)
        sock.close()

    def _report(self, address: str, error: P2PChatError) -> None:
        with self._lock:  # one line at a time from many threads
            self._on_rejected(address, error)

    def _fail(self, error: P2PChatError | Closed) -> None:
        """End every wait with *error*: it goes before a held caller, which is let go."""
        with self._lock:
            with contextlib.suppress(queue.Empty):
                held = self._results.get_nowait()
                if not isinstance(held, Accepted):
                    error = held  # the first ending stays the answer
                else:
                    say_bye_quietly(held.sock, held.session)
                    held.sock.close()
            with contextlib.suppress(queue.Full):
                self._results.put_nowait(error)
