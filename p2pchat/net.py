"""Sockets and threads: listen, dial, the handshake on a socket, and the chat's two threads.

The protocol itself lives in :mod:`p2pchat.session`; this module only moves its
bytes. A :class:`Link` owns one connected socket and two threads:

* the receiver reads frames, turns them into events for the interface, and
  queues an ack for every text;
* the sender drains the outgoing queue, so typing never waits on the network.

Every way out (bye, /quit, a lost link, tampering) ends both threads and closes
the socket; :meth:`Link.close` joins them, so none dies in the middle of a write.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import (
    ConnectionLost,
    HandshakeError,
    HandshakeTimeout,
    LocalProtocolError,
    NetworkError,
    P2PChatError,
    RemoteProtocolError,
    UsageError,
)
from .events import ChatEvent, Delivered, LinkFailed, PeerLeft, Received
from .messages import Ack, Bye, Hello, Message, Text, pieces
from .session import Event, HandshakeComplete, Session

log = logging.getLogger("p2pchat")

CONNECT_TIMEOUT = 10.0  # seconds to wait for TCP connect before saying the host is unreachable
HANDSHAKE_TIMEOUT = 10.0  # seconds a peer gets to finish the handshake and say hello
RECV_SIZE = 256 * 1024  # bytes per recv(): several full frames per system call
SEND_BATCH = 256 * 1024  # coalesce queued frames up to this many bytes into one sendall()
MAX_IN_FLIGHT = 1000  # unacknowledged texts before a pipe stops reading stdin: bounds memory
CLOSE_LINGER = 2.0  # seconds to wait for the peer to close after our bye


@dataclass(frozen=True)
class Address:
    host: str | None  # None: every interface (listen only)
    port: int

    def __str__(self) -> str:
        host = self.host or "*"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_address(text: str, *, listening: bool) -> Address:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; UsageError otherwise."""
    host: str | None
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise UsageError(f"bad address {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        host, port_text = inside, rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise UsageError(f"bad address {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    elif listening:
        host, port_text = None, text
    else:
        raise UsageError(f"bad address {text!r}: expected HOST:PORT")
    if not port_text.isdigit() or not (0 if listening else 1) <= int(port_text) <= 65535:
        raise UsageError(f"bad port {port_text!r}: expected a number from {0 if listening else 1} to 65535")
    if host == "" and not listening:
        raise UsageError(f"bad address {text!r}: expected HOST:PORT")
    return Address(host or None, int(port_text))


# -- listening and dialing ----------------------------------------------------


def listen(address: Address) -> socket.socket:
    """A listening socket; with no host, every interface, IPv6 and IPv4 where the machine has them."""
    try:
        if address.host is None:
            return _listen_any(address.port)
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, sockaddr = infos[0]
        return _bound(socket.socket(family, kind, proto), sockaddr)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot listen on {address}: unknown host {address.host}") from exc
    except OSError as exc:
        raise _listen_error(address, exc) from exc


def _listen_any(port: int) -> socket.socket:
    if socket.has_dualstack_ipv6():
        with contextlib.suppress(OSError):  # IPv6 configured off at run time: fall back to IPv4
            return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("0.0.0.0", port))


def _bound(sock: socket.socket, sockaddr: tuple[object, ...]) -> socket.socket:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a chat
        sock.bind(sockaddr)
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


def _listen_error(address: Address, exc: OSError) -> NetworkError:
    if exc.errno == errno.EADDRINUSE:
        return NetworkError(f"cannot listen on {address}: port {address.port} is already in use")
    if exc.errno == errno.EACCES:
        return NetworkError(f"cannot listen on {address}: permission denied (ports below 1024 need privileges)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return NetworkError(f"cannot listen on {address}: that address is not on this machine")
    return NetworkError(f"cannot listen on {address}: {exc.strerror or exc}")


def listening_address(sock: socket.socket) -> str:
    """The address a listener really got (the real port when 0 was asked for)."""
    host, port = sock.getsockname()[:2]
    if host in ("::", "0.0.0.0"):
        return f"*:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def dial(address: Address, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A TCP connection to *address*; NetworkError with one clear line on failure."""
    assert address.host is not None
    try:
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot reach {address}: unknown host {address.host}") from exc
    except ConnectionRefusedError as exc:
        raise NetworkError(f"cannot reach {address}: connection refused (is p2pchat listening there?)") from exc
    except TimeoutError as exc:
        raise NetworkError(f"cannot reach {address}: no answer within {timeout:g} s") from exc
    except OSError as exc:
        raise NetworkError(f"cannot reach {address}: {exc.strerror or exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except (OSError, ValueError):  # gone already, or not an IP socket
        return "unknown address"
    host = host.removeprefix("::ffff:")  # an IPv4 caller on a dual-stack listener
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the handshake on a socket -------------------------------------------------


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
) -> tuple[Peer, list[Event]]:
    """Run the handshake and wait for the peer's hello, all within *timeout*.

    *verify* sees the peer's key before this side sends anything after it (our
    last handshake message, our hello); raising there aborts with nothing said.
    Returns the peer and any events that arrived right behind its hello.
    """
    deadline = time.monotonic() + timeout
    complete: HandshakeComplete | None = None
    hello: Hello | None = None
    pending: list[Event] = []
    sent_everything = False
    try:
        _send(sock, session.data_to_send(), deadline)
        while hello is None:
            data = _recv(sock, deadline)
            if not data:
                session.receive_eof()  # raises, unless the peer said bye before hello
                raise ConnectionLost("the peer left during the handshake")
            for event in session.receive_data(data):
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
                "the peer ended the handshake: a passphrase that differs, or it refused our key"
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


def accept(
    listener: socket.socket,
    make_session: Callable[[], Session],
    verify: Callable[[HandshakeComplete], None],
    on_rejected: Callable[[str, P2PChatError], None],
    timeout: float = HANDSHAKE_TIMEOUT,
) -> tuple[socket.socket, Session, Peer, list[Event]]:
    """Wait for a caller that completes the handshake; drop (and report) every other one.

    Errors raised by *verify* (a pinned key that does not match) end the wait.
    """
    while True:
        session = make_session()  # before accept(): its ephemeral key is ready when a caller comes
        sock, _ = listener.accept()
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


# -- the chat's threads ------------------------------------------------------------

_STOP = object()  # tells the sender thread to finish


class Link:
    """One connected chat: a sender thread, a receiver thread, and delivery tracking.

    Made as soon as the handshake is done, so that :meth:`close` can say bye on
    every way out, even before the interface is up and :meth:`start` is called.
    """

    def __init__(self, sock: socket.socket, session: Session) -> None:
        sock.settimeout(None)
        self._sock = sock
        self._session = session
        self._on_event: Callable[[ChatEvent], None] = lambda event: None
        self._outgoing: queue.SimpleQueue[Message | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending: dict[int, str] = {}  # our texts the peer has not acknowledged, by id
        self._next_id = 1
        self._closing = False
        self._bye_queued = False
        self._ended = False  # the receiver thread saw the end of the link
        self._failed = False
        self._sender = threading.Thread(target=self._send_loop, name="p2pchat-sender")
        self._receiver = threading.Thread(target=self._receive_loop, name="p2pchat-receiver")

    def start(self, on_event: Callable[[ChatEvent], None], already_received: Sequence[Event] = ()) -> None:
        """Start both threads; *already_received* came in with the handshake.

        *on_event* is called from the receiver thread (and once, from whichever
        thread notices, with LinkFailed); it must not block for long.
        """
        self._on_event = on_event
        self._sender.start()
        for event in already_received:
            self._dispatch(event)
        self._receiver.start()

    # -- called by the interface ---------------------------------------------

    def send_text(self, text: str, action: bool = False) -> list[int]:
        """Queue *text* (split if longer than one message can carry); return the ids used."""
        ids = []
        split = pieces(text)  # outside the lock: measuring a long text takes a while
        with self._lock:
            for piece, json_text in split:
                message_id = self._next_id
                self._next_id += 1
                self._pending[message_id] = piece
                self._outgoing.put(Text(message_id, piece, action, json_text))
                ids.append(message_id)
        log.debug("queued text %s", ", ".join(map(str, ids)))
        return ids

    def unacknowledged(self) -> dict[int, str]:
        """Our texts the peer has not acknowledged yet, by id, in order."""
        with self._lock:
            return dict(self._pending)

    def unacknowledged_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_for_room(self) -> None:
        """Block while MAX_IN_FLIGHT texts await acks (back-pressure for pipes), or until the link ends."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._pending) < MAX_IN_FLIGHT or self._ended)

    @property
    def ended(self) -> bool:
        with self._lock:
            return self._ended

    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait until every text is acknowledged or the link ends; True if all were."""
        with self._changed:
            self._changed.wait_for(lambda: not self._pending or self._ended, timeout)
            return not self._pending

    def close(self, say_bye: bool = True) -> None:
        """End the chat: bye (if the link still works), then stop both threads and close.

        Safe to call again, even after a Ctrl-C interrupted an earlier call.
        """
        with self._lock:
            self._closing = True
            running = self._sender.is_alive() or self._sender.ident is None
            send_bye = say_bye and not self._ended and not self._bye_queued and running
            self._bye_queued |= send_bye
        if self._sender.ident is None:  # never started: say bye from here
            if send_bye:
                say_bye_quietly(self._sock, self._session)
            self._sock.close()
            return
        if send_bye:
            self._outgoing.put(Bye())
        self._outgoing.put(_STOP)
        self._sender.join()
        if self._receiver.ident is not None:
            # Give the peer a moment to read our bye and hang up; then cut the link ourselves.
            self._receiver.join(CLOSE_LINGER if send_bye else 0)
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._receiver.join()
        self._sock.close()

    # -- the threads -----------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            item = self._outgoing.get()
            batch = bytearray()
            stop = False
            try:
                while True:  # coalesce what is queued into one system call
                    if item is _STOP:
                        stop = True
                        break
                    assert isinstance(item, (Text, Ack, Bye, Hello))
                    batch += self._session.send(item)
                    if isinstance(item, Bye) or len(batch) >= SEND_BATCH:
                        break
                    try:
                        item = self._outgoing.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._sock.sendall(batch)
                if isinstance(item, Bye):
                    with contextlib.suppress(OSError):
                        self._sock.shutdown(socket.SHUT_WR)  # bye said: we send nothing more
                    stop = True
            except OSError as exc:
                self._fail(ConnectionLost(f"connection lost: {exc.strerror or exc}"), exc)
                return
            except LocalProtocolError as exc:
                self._fail(exc, exc)
                return
            if stop:
                return

    def _receive_loop(self) -> None:
        session = self._session
        try:
            while True:
                data = self._sock.recv(RECV_SIZE)
                if not data:
                    session.receive_eof()  # raises unless the peer said bye
                    return
                for event in session.receive_data(data):
                    self._dispatch(event)
                if session.bye_received:
                    return
        except P2PChatError as exc:
            self._fail(exc, exc)
        except OSError as exc:
            self._fail(ConnectionLost(f"connection lost: {exc.strerror or exc}"), exc)
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()
            self._outgoing.put(_STOP)  # nothing more can be acknowledged or delivered

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Text):
            self._on_event(Received(event.id, event.text, event.action))
            self._outgoing.put(Ack(event.id))  # only once the interface has it: an ack means "shown"
        elif isinstance(event, Ack):
            with self._changed:
                known = self._pending.pop(event.id, None) is not None
                self._changed.notify_all()
            if known:  # an ack for an id we never sent (or twice) changes nothing
                self._on_event(Delivered(event.id))
        elif isinstance(event, Bye):
            with self._lock:
                closing = self._closing
            if not closing:
                self._on_event(PeerLeft())

    def _fail(self, error: P2PChatError, cause: BaseException) -> None:
        with self._lock:
            if self._failed or (self._closing and isinstance(error, ConnectionLost)):
                return  # the first failure is the one that counts; losing a link we close is no news
            self._failed = True
        log.debug("link failed: %r", cause, exc_info=cause)
        self._on_event(LinkFailed(error))
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the other thread
