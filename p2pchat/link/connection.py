"""One connection under a chat: the sender and receiver threads over one socket.

The protocol lives in :mod:`p2pchat.core.session`; this module only moves its
bytes, and knows when the connection is dead. A :class:`Connection` owns one
connected socket and two threads:

* the receiver reads frames and hands each message to its owner (the
  conversation, which outlives connections);
* the sender drains the outgoing queue, so typing never waits on the network.

Fewer wake-ups: a caller whose text has nothing queued before it seals and writes
it itself, never blocking; what the socket does not take at once goes to the
sender thread, which writes it first and keeps the back-pressure. The receiver
reads into one reused buffer and writes the acks of each receive batch itself
(one, where acks are cumulative). One write lock keeps frames on the wire in the
order they were sealed.

File data (extension ``files``) is the low lane: the sender thread seals the next record
from its :class:`LowLane` only while nothing else is queued, into one reused buffer, and the
socket's TCP_NOTSENT_LOWAT keeps the kernel from holding more than 128 KiB of it unsent: a
text typed during a transfer waits for one record at most, never behind the file.

Every wait has a deadline. With extension ``keepalive`` in use, the sender sends
a keepalive after KEEPALIVE seconds of sending nothing (its queue wait times out
then: no polling), and the receiver declares the link lost after 3 x the peer's
interval with nothing received. A peer that takes none of our bytes for
SEND_STALL_TIMEOUT is gone; :meth:`Connection.close` joins both threads within
CLOSE_TIMEOUT, cutting the socket if the peer holds a write up.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from ..core import filewire
from ..core.binary import FEATURE as BINARY
from ..core.framing import MAX_FRAME_LEN
from ..core.messages import DONE, KEEPALIVE, RESUME, Ack, Bye, Done, Hello, Keepalive, Text
from ..core.session import Event, Session
from ..errors import ConnectionLost, InternalError, P2PChatError
from .handshake import CLOSE_LINGER, RECV_SIZE, say_bye_quietly

log = logging.getLogger("p2pchat")

SEND_BATCH = 256 * 1024  # coalesce queued frames up to this many bytes into one send
SILENCE_INTERVALS = 3  # a peer silent for this many of its keepalive intervals is gone
SEND_STALL_TIMEOUT = 60.0  # seconds a peer may take none of our bytes before the link counts as lost
MAX_PENDING_ACKS = 4096  # acks not yet sent (a p2pchat/1 peer gets one per text); the receiver waits beyond
CLOSE_TIMEOUT = 2.0  # seconds close() gives each thread to finish before it cuts the socket

# Unsent bytes the kernel may hold for this socket while file data flows: a text queued behind file
# data waits for this much at most. (Linux's option 25, where the socket module does not name it.)
NOTSENT_LOWAT = 128 * 1024
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25 if sys.platform.startswith("linux") else None)

Outgoing = Text | Done | Bye
_STOP = object()  # tells the sender thread to finish
_ACKS = object()  # tells the sender thread that acks are due
_WAKE = object()  # tells the sender thread that the low lane may have data


class LowLane(Protocol):
    """What the sender thread sends when nothing else waits (file data)."""

    def next_record(self) -> memoryview | None:
        """The next plaintext, None when none is due, empty when work was done but nothing is ready.

        The view may be reused by the next call: it is sealed before then.
        """


class _Plaintext(bytes):
    """An extension's ready-made plaintext for the high lane (a file control message)."""


class Connection:
    """A socket and a finished handshake, with a sender and a receiver thread.

    *keepalive* is our interval (seconds), announced in our hello; it is used only
    when the peer announced the extension too. *on_message* gets the peer's texts,
    acks, done and bye, in the receiver thread; *on_lost* gets at most one error
    when the connection fails (never for a connection :meth:`close` is ending).
    """

    def __init__(
        self,
        sock: socket.socket,
        session: Session,
        keepalive: float,
        send_timeout: float = SEND_STALL_TIMEOUT,
    ) -> None:
        sock.settimeout(None)  # blocking; every wait below has its own deadline
        self._sock = sock
        self._session = session
        features = session.features
        peer = session.peer_hello
        self.keepalive = keepalive if KEEPALIVE in features else None
        self.silence_limit = (
            SILENCE_INTERVALS * peer.keepalive
            if self.keepalive is not None and peer is not None and peer.keepalive is not None
            else None
        )
        self.resumable = RESUME in features
        # An ack covers every text before it: with resume, and with binary (its ack is "up to").
        self.cumulative_acks = self.resumable or BINARY in features
        self.half_close = DONE in features
        self.files = filewire.FEATURE in features  # both sides speak extension files
        self._low_lane: LowLane | None = None
        self._frame: memoryview | None = None  # the one buffer every low-lane record is sealed into
        self._send_timeout = send_timeout
        _tune(sock, keepalive, self.silence_limit or send_timeout)
        self._on_message: Callable[[Event], None] = lambda event: None
        self._on_lost: Callable[[P2PChatError], None] = lambda error: None
        self._outgoing: queue.SimpleQueue[Outgoing | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._ack_room = threading.Condition(self._lock)
        self._acks: deque[int] = deque()  # acks due, in order (cumulative with resume: only the last counts)
        self._acks_signalled = False
        self._closing = False
        self._bye_queued = False
        self._ended = False  # the receiver saw the end of the link
        self._failed = False
        self._deferred: tuple[P2PChatError, BaseException] | None = None  # a failure a caller's thread saw
        self._last_send = time.monotonic()
        self._writable = select.poll()
        self._writable.register(sock, select.POLLOUT)
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        # Fewer wake-ups: a caller seals and writes its message itself when nothing is queued before
        # it, and the receiver writes the acks of each receive batch; one write lock keeps frames in
        # the order they were sealed. What a non-blocking write leaves goes to the sender thread.
        self._write_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._queued = 0  # items put in _outgoing and not yet written: a caller writes inline only at 0
        self._batch_acks: list[int] = []  # acks of the receive batch being dispatched (receiver thread only)
        self._buffer = bytearray(RECV_SIZE)  # recv_into() target, reused for every read
        self._sender = threading.Thread(target=self._send_loop, name="p2pchat-sender", daemon=True)
        self._receiver = threading.Thread(target=self._receive_loop, name="p2pchat-receiver", daemon=True)

    @property
    def peer_hello(self) -> Hello:
        assert self._session.peer_hello is not None
        return self._session.peer_hello

    def start(
        self,
        on_message: Callable[[Event], None],
        on_lost: Callable[[P2PChatError], None],
        already_received: Sequence[Event] = (),
    ) -> None:
        """Start both threads; *already_received* came in right behind the handshake."""
        self._on_message = on_message
        self._on_lost = on_lost
        self._sender.start()
        try:
            for event in already_received:
                self._dispatch(event)
        except P2PChatError as exc:
            self._fail(exc, exc)
        except Exception as exc:  # a bug in what gets the messages: one line, as in the receiver thread
            self._fail(InternalError(f"internal error: {type(exc).__name__} (run with -v for details)"), exc)
        self._receiver.start()

    # -- called by the owner ----------------------------------------------------

    def send(self, message: Outgoing) -> None:
        """Send *message*: from this thread when nothing is queued before it, else through the sender thread."""
        if isinstance(message, Text) and self._write_lock.acquire(blocking=False):
            try:
                if self._queued == 0 and self._sender.is_alive() and not self._closing:
                    try:
                        self._write_inline(self._session.send(message))
                    except P2PChatError as exc:  # as the sender thread would: the connection fails
                        self._fail(exc, exc)
                    return
            finally:
                self._write_lock.release()
        self._put(message)

    def pieces(self, text: str) -> list[tuple[str, bytes | None]]:
        """*text* cut to fit one text message each in the encoding this connection uses."""
        return self._session.pieces(text)

    def send_plaintext(self, plaintext: bytes) -> None:
        """Queue an extension's control plaintext on the high lane (ahead of file data)."""
        self._put(_Plaintext(plaintext))

    def use_low_lane(self, lane: LowLane | None) -> None:
        """Send *lane*'s records whenever nothing else is queued (None: stop, the lane moved on)."""
        if lane is not None and self._frame is None:
            self._frame = memoryview(bytearray(2 + MAX_FRAME_LEN))
            if _TCP_NOTSENT_LOWAT is not None:
                with contextlib.suppress(OSError):  # not TCP (tests use socketpairs), or an older kernel
                    self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)
        self._low_lane = lane
        self.wake()

    def wake(self) -> None:
        """The low lane has data again: a sender thread waiting on its queue looks at it."""
        self._put(_WAKE)

    def _put(self, item: object) -> None:
        with self._count_lock:
            self._queued += 1
        self._outgoing.put(item)

    def _write_inline(self, data: bytes) -> None:
        """Write what the socket takes now, never blocking (write lock held); the sender writes the rest first."""
        try:
            sent = self._sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(ConnectionLost(f"connection lost: {exc.strerror or exc}"), exc)
            return
        self._last_send = time.monotonic()
        if sent < len(data):
            self._put(memoryview(data)[sent:])

    def send_ack(self, message_id: int) -> None:
        """Acknowledge text *message_id* (from the receiver thread, once it is shown).

        At most MAX_PENDING_ACKS wait to be sent: beyond that the receiver stops reading
        until the sender catches up, or the connection is lost after SEND_STALL_TIMEOUT.
        """
        if threading.current_thread() is self._receiver:  # in a receive batch: written once, after it
            if self.cumulative_acks:
                self._batch_acks.clear()
            self._batch_acks.append(message_id)
            return
        self._queue_ack(message_id)

    def _queue_ack(self, message_id: int) -> None:
        with self._ack_room:
            if self.cumulative_acks:  # the newest ack says it all
                self._acks.clear()
            elif len(self._acks) >= MAX_PENDING_ACKS:
                room = self._ack_room.wait_for(
                    lambda: len(self._acks) < MAX_PENDING_ACKS or self._ended or self._closing, self._send_timeout
                )
                if not room:
                    raise ConnectionLost(f"connection lost: the peer took no data for {self._send_timeout:g} s")
            self._acks.append(message_id)
            signal = not self._acks_signalled
            self._acks_signalled = True
        if signal:
            self._put(_ACKS)

    def _flush_batch_acks(self) -> None:
        """The acks of one receive batch (one, where acks are cumulative), written from the receiver thread."""
        acks, self._batch_acks = self._batch_acks, []
        if self._write_lock.acquire(blocking=False):
            try:
                if self._queued == 0:
                    self._write_inline(b"".join(self._session.send(Ack(message_id)) for message_id in acks))
                    return
            finally:
                self._write_lock.release()
        for message_id in acks:  # the sender thread is busy: it takes them with its next batch
            self._queue_ack(message_id)

    @property
    def ended(self) -> bool:
        with self._lock:
            return self._ended

    @property
    def in_own_thread(self) -> bool:
        """Called from this connection's sender or receiver thread (which close() cannot join)."""
        return threading.current_thread() in (self._sender, self._receiver)

    def close(self, say_bye: bool = True) -> None:
        """End the connection: bye (if it still works), then stop both threads and close.

        Every wait here has a deadline: a peer that reads nothing cannot hold us up.
        Safe to call again, even after a Ctrl-C interrupted an earlier call.
        """
        with self._lock:
            self._closing = True
            running = self._sender.is_alive() or self._sender.ident is None
            send_bye = say_bye and not self._ended and not self._bye_queued and running
            self._bye_queued |= send_bye
            self._ack_room.notify_all()
        if self._sender.ident is None:  # never started: say bye from here
            if send_bye:
                say_bye_quietly(self._sock, self._session)
            self._sock.close()
            return
        if send_bye:
            self._put(Bye())
        self._put(_STOP)
        self._sender.join(CLOSE_TIMEOUT)
        if self._sender.is_alive():  # stuck writing to a peer that does not read: cut the link
            log.debug("the sender did not finish within %g s; cutting the connection", CLOSE_TIMEOUT)
            self._shutdown()
            self._sender.join(CLOSE_TIMEOUT)
        if self._receiver.ident is not None:
            # Give the peer a moment to read our bye and hang up; then cut the link ourselves.
            self._receiver.join(CLOSE_LINGER if send_bye else 0)
            self._shutdown()
            self._receiver.join(CLOSE_TIMEOUT)
        if self._sender.is_alive() or self._receiver.is_alive():
            log.debug("a connection thread outlived its deadline; leaving its socket open")
            return  # never close a descriptor a thread may still use (it could be reused)
        self._sock.close()

    # -- the sender thread --------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            while True:
                item = self._next_item()
                with self._write_lock:  # callers and the receiver write inline only while we do not
                    if self._send_batch(item):
                        return
        except OSError as exc:
            self._fail(ConnectionLost(f"connection lost: {exc.strerror or exc}"), exc)
        except P2PChatError as exc:
            self._fail(exc, exc)
        except Exception as exc:  # a bug (here, in the file engine): the chat ends with one line, not a traceback
            self._fail(InternalError(f"internal error: {type(exc).__name__} (run with -v for details)"), exc)

    def _send_batch(self, item: object) -> bool:
        """Seal *item* and what is queued behind it, write it all in one call; True when the sender must stop."""
        session = self._session
        taken = 0 if isinstance(item, Keepalive) else 1  # a keepalive was never queued
        batch = bytearray()
        stop = bye = False
        try:
            while True:  # coalesce what is queued into one system call
                if item is _STOP:
                    stop = True
                    break
                if item is _ACKS:
                    for ack in self._take_acks():
                        batch += session.send(ack)
                elif item is _WAKE:
                    pass  # _next_item() looks at the low lane before it waits again
                elif isinstance(item, _Plaintext):
                    batch += session.send_plaintext(item)
                elif isinstance(item, memoryview):  # what an inline write left: it goes first
                    batch += item
                else:
                    assert isinstance(item, (Text, Done, Bye, Keepalive))
                    batch += session.send(item)
                    if isinstance(item, Bye):
                        bye = True
                        break
                if len(batch) >= SEND_BATCH:
                    break
                try:
                    item = self._outgoing.get_nowait()
                except queue.Empty:
                    break
                taken += 1
            if batch:
                self._send_all(batch)
        finally:
            with self._count_lock:
                self._queued -= taken
        if bye:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)  # bye said: we send nothing more
        return stop or bye

    def _next_item(self) -> object:
        """The next thing to send; while the queue is empty, low-lane records go out meanwhile.

        A keepalive once we have sent nothing for our interval.
        """
        while (lane := self._low_lane) is not None:
            with contextlib.suppress(queue.Empty):
                return self._outgoing.get_nowait()  # the high lane first, between every two records
            if not self._send_record(lane):
                break
        if self.keepalive is None:
            return self._outgoing.get()
        while True:
            wait = self._last_send + self.keepalive - time.monotonic()
            if wait <= 0:
                return Keepalive()
            with contextlib.suppress(queue.Empty):
                return self._outgoing.get(timeout=wait)

    def _send_record(self, lane: LowLane) -> bool:
        """Seal and write the lane's next record; False when it has none due."""
        with self._write_lock:
            if self._closing or self._low_lane is not lane:
                return False
            if self._queued:  # what a caller could not write inline waits in the queue: it goes first
                return True
            record = lane.next_record()
            if record is None:
                return False
            if record:
                assert self._frame is not None
                length, after = self._session.seal_into(record, self._frame)
                self._send_all(self._frame[:length])
                if after:  # a rekey, now and then
                    self._send_all(after)
        return True

    def _take_acks(self) -> list[Ack]:
        with self._ack_room:
            acks = [Ack(message_id) for message_id in self._acks]
            self._acks.clear()
            self._acks_signalled = False
            self._ack_room.notify_all()
        return acks

    def _send_all(self, data: bytes | bytearray | memoryview) -> None:
        """sendall() with a deadline: the peer must take some of our bytes every SEND_STALL_TIMEOUT."""
        view = memoryview(data)
        while view:
            try:
                sent = self._sock.send(view, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if not self._writable.poll(self._send_timeout * 1000):
                    raise ConnectionLost(
                        f"connection lost: the peer took no data for {self._send_timeout:g} s"
                    ) from None
                continue
            view = view[sent:]
        self._last_send = time.monotonic()

    # -- the receiver thread ----------------------------------------------------------

    def _receive_loop(self) -> None:
        session = self._session
        try:
            while True:
                size = self._recv()
                if not size:
                    session.receive_eof()  # raises unless the peer said bye
                    return
                for event in session.receive_data(memoryview(self._buffer)[:size]):
                    if self._batch_acks and not isinstance(event, (Text, Ack)):
                        self._flush_batch_acks()  # before a done or bye can end the chat: what was shown is acked
                    self._dispatch(event)
                if self._batch_acks:
                    self._flush_batch_acks()
                if session.bye_received:
                    return
        except P2PChatError as exc:
            self._fail(exc, exc)
        except OSError as exc:
            self._fail(ConnectionLost(f"connection lost: {exc.strerror or exc}"), exc)
        except Exception as exc:  # a bug (here, or in what gets the messages): one line, not a traceback
            self._fail(InternalError(f"internal error: {type(exc).__name__} (run with -v for details)"), exc)
        finally:
            with self._ack_room:
                self._ended = True
                self._ack_room.notify_all()
            self._put(_STOP)  # nothing more can be acknowledged or delivered

    def _recv(self) -> int:
        """Read into the receive buffer; return how many bytes came (0: the peer closed)."""
        if self.silence_limit is None:
            return self._sock.recv_into(self._buffer)  # a peer without keepalive may stay silent for ever
        while True:
            if not self._readable.poll(self.silence_limit * 1000):
                raise ConnectionLost(f"connection lost: nothing from the peer for {self.silence_limit:g} s")
            with contextlib.suppress(BlockingIOError):
                return self._sock.recv_into(self._buffer, 0, socket.MSG_DONTWAIT)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, (Text, Ack, Done, Bye, *filewire.SENT_BY_SENDER, *filewire.SENT_BY_RECEIVER)):
            self._on_message(event)
        # Keepalives only prove the link alive; a late hello cannot happen (the session refuses it).

    def _fail(self, error: P2PChatError, cause: BaseException) -> None:
        if not self.in_own_thread and self._receiver.is_alive():
            # A caller's thread (a text written inline) may hold its owner's lock, which on_lost takes:
            # the receiver thread, woken by the shutdown, reports the failure instead.
            with self._lock:
                self._deferred = self._deferred or (error, cause)
            self._shutdown()
            return
        with self._lock:
            if self._failed or self._closing:
                return  # the first failure is the one that counts; a connection we end is no news
            self._failed = True
            error, cause = self._deferred or (error, cause)
        log.debug("connection failed: %r", cause, exc_info=cause)
        self._shutdown()  # wakes the other thread
        self._on_lost(error)

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


def _tune(sock: socket.socket, keepalive: float, user_timeout: float) -> None:
    """TCP keepalive probes, and a limit on how long sent data may stay unacknowledged (where the OS has them).

    Without TCP_USER_TIMEOUT, data the network swallows keeps a socket hanging for the kernel's
    default of about 15 minutes.
    """
    idle = max(1, int(keepalive))
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None)), idle),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), idle),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), SILENCE_INTERVALS),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), int(user_timeout * 1000)),
    ]
    for level, option, value in options:
        if option is not None:
            with contextlib.suppress(OSError):  # not a TCP socket (tests use socketpairs), or refused
                sock.setsockopt(level, option, value)
