"""One connected chat: the sender and receiver threads over one socket.

The protocol itself lives in :mod:`p2pchat.core.session`; this module only moves
its bytes. A :class:`Link` owns one connected socket and two threads:

* the receiver reads frames, turns them into events for the interface, and
  queues an ack for every text;
* the sender drains the outgoing queue, so typing never waits on the network.

Every way out (bye, /quit, a lost link, tampering) ends both threads and closes
the socket; :meth:`Link.close` joins them, so none dies in the middle of a write.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable, Sequence

from ..core.messages import Ack, Bye, Hello, Message, Text, pieces
from ..core.session import Event, Session
from ..errors import ConnectionLost, LocalProtocolError, P2PChatError
from ..events import ChatEvent, Delivered, LinkFailed, PeerLeft, Received
from .handshake import CLOSE_LINGER, RECV_SIZE, say_bye_quietly

log = logging.getLogger("p2pchat")

SEND_BATCH = 256 * 1024  # coalesce queued frames up to this many bytes into one sendall()
MAX_IN_FLIGHT = 1000  # unacknowledged texts before a pipe stops reading stdin: bounds memory


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
