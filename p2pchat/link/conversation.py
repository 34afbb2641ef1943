"""The chat the interface talks to: one conversation that outlives the connections under it.

The interface (terminal or pipe) calls :class:`Conversation`, never a connection.
The conversation keeps what was typed until the peer acknowledges it (the
bookkeeping is :class:`p2pchat.core.conversation.ConversationState`), takes each
new connection the dialer or listener brings (:meth:`Conversation.adopt`), sends
the unacknowledged texts again after a resume, and gives up after
``resume_for`` seconds without a link.

Events reach the interface in the order they happened, one at a time, and never
under the conversation's lock: a slow interface cannot stall the link's bookkeeping.

File transfers (extension ``files``) belong to the conversation too: its
:class:`~p2pchat.link.filetransfer.FileEngine` is attached to each connection on which
both sides announced ``files`` (its data as that connection's low lane) and detached
when the connection is lost, so a resumed link continues the transfers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..core import filewire
from ..core.conversation import ConversationState, Resume, new_conversation_id
from ..core.messages import Ack, Bye, Done, Text, pieces
from ..core.session import Event
from ..errors import ConnectionLost, NetworkError, P2PChatError
from ..events import (
    ChatEvent,
    Delivered,
    LinkDown,
    LinkFailed,
    LinkUp,
    PeerDone,
    PeerLeft,
    PeerRestarted,
    Received,
    WaitingForPeer,
)
from .connection import Connection
from .filetransfer import FileEngine

log = logging.getLogger("p2pchat")

MAX_IN_FLIGHT = 1000  # unacknowledged texts before a pipe stops reading stdin: bounds memory
# ...and characters: without it 1000 maximum-size texts (65 MB) could queue ahead of a typed line.
# 1 MiB keeps a gigabit link busy (a few ms of data) while a text typed during a bulk send waits ms.
MAX_CHARS_IN_FLIGHT = 1 << 20
FILE_MESSAGES = (*filewire.SENT_BY_SENDER, *filewire.SENT_BY_RECEIVER)
RESUME_FOR = 600.0  # seconds without a link before a conversation gives up (--resume-for)
ACK_STALL = 30.0  # seconds a full window may go without any ack before the chat gives up (--wait)


class Conversation:
    """A chat with one peer across connections; thread-safe.

    *resume_for* is how long to wait for a new connection after a loss (0: never);
    *ack_wait* how long back-pressure may wait with no ack at all.
    """

    def __init__(
        self,
        *,
        resume_for: float = RESUME_FOR,
        ack_wait: float = ACK_STALL,
        conversation_id: str | None = None,
    ) -> None:
        self._state = ConversationState(conversation_id or new_conversation_id())
        self._resume_for = resume_for
        self._ack_wait = ack_wait
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._emit_lock = threading.Lock()  # one event at a time, in order, outside _lock
        self._events: deque[ChatEvent] = deque()
        self._on_event: Callable[[ChatEvent], None] | None = None
        self._current: Connection | None = None
        self._connections = 0  # adopted so far
        self._half_close = False  # the last connection spoke extension done
        self._resumable = False  # the last connection spoke extension resume
        self._down_since: float | None = None  # monotonic time the link was lost, while it is
        self._last_progress = time.monotonic()  # the last ack, for the back-pressure deadline
        self._give_up: threading.Timer | None = None
        self._closing = False
        self.ended: ChatEvent | None = None  # PeerLeft or LinkFailed, once the conversation is over
        self.lost: list[tuple[int, str]] = []  # our texts a restarted peer never acknowledged (reported)
        self._retired: list[Connection] = []  # lost connections, closed (joined) from another thread
        self._unstarted: tuple[Connection, Sequence[Event]] | None = None  # adopted before start()
        self.on_link_down: Callable[[], None] = lambda: None  # the dialer starts redialing here
        self._files: FileEngine | None = None  # the file transfers, once the interface made them
        self._files_on: Connection | None = None  # the connection carrying them
        self._files_lock = threading.Lock()  # attach and detach, outside _lock (the engine has its own)
        self.files_in_use = False  # the last connection spoke extension files: offers may be made

    # -- the link side --------------------------------------------------------------

    def hello_fields(self) -> Resume:
        """The resume fields for the hello of a connection being made now."""
        with self._lock:
            return self._state.hello_fields()

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._current is not None

    def adopt(self, connection: Connection, early: Sequence[Event] = ()) -> None:
        """Carry on over *connection*: a fresh handshake that proved the peer's key.

        A connection still current (a ghost the listener did not notice dying) is closed first.
        """
        with self._lock:
            old, self._current = self._current, None
        if old is not None:
            self._detach_files(old)
            self._retire(old)
        self._close_retired()
        peer = connection.peer_hello
        resume = (
            Resume(peer.conversation, peer.peer_conversation, peer.received)
            if connection.resumable and peer.conversation is not None
            else None
        )
        with self._lock:
            if self.ended is not None or self._closing:
                connection.close(say_bye=True)
                return
            try:
                joined = self._state.join(resume)
            except P2PChatError as exc:
                connection.close(say_bye=False)
                self._end_locked(LinkFailed(exc))
                joined = None
            if joined is not None:
                self._connections += 1
                self._current = connection
                self._half_close = connection.half_close
                self._resumable = connection.resumable
                self.files_in_use = connection.files
                self._down_since = None
                self._last_progress = time.monotonic()
                if self._give_up is not None:
                    self._give_up.cancel()
                    self._give_up = None
                for text in joined.resend:
                    connection.send(text)
                if self._state.done_sent and connection.half_close:
                    connection.send(Done())
                if joined.restarted:
                    self.lost += joined.undelivered
                    self._events.append(PeerRestarted(joined.undelivered))
                if self._connections > 1:
                    self._events.append(LinkUp(time.time(), len(joined.resend)))
                self._changed.notify_all()
                if self._on_event is None:  # nobody to show texts to yet: an ack means "shown"
                    self._unstarted = (connection, early)
                    return
        if joined is not None:
            if joined.restarted and self._files is not None:
                self._files.peer_restarted()  # its old offers are void, and their ids free again
            self._start_connection(connection, early)
        self._emit()

    def _start_connection(self, connection: Connection, early: Sequence[Event]) -> None:
        self._attach_files(connection)  # before the early messages: they may be file messages
        connection.start(
            lambda event: self._on_message(connection, event),
            lambda error: self._on_lost(connection, error),
            early,
        )

    def _on_message(self, connection: Connection, event: Event) -> None:
        """A message from *connection*, in its receiver thread."""
        ack: int | None = None
        files: FileEngine | None = None
        with self._lock:
            if connection is not self._current:
                return  # a connection we replaced: what it says no longer counts
            if isinstance(event, FILE_MESSAGES):
                files = self._files
            elif isinstance(event, Text):
                if self._state.receive_text(event.id):  # raises on a gap: the connection fails
                    self._events.append(Received(event.id, event.text, event.action))
                ack = self._state.ack_for(event.id)
            elif isinstance(event, Ack):
                for message_id in self._state.acknowledge(event.id):
                    self._events.append(Delivered(message_id))
                self._last_progress = time.monotonic()
            elif isinstance(event, Done):
                if not self._state.done_received:
                    self._state.done_received = True
                    self._events.append(PeerDone())
            elif isinstance(event, Bye) and not self._closing:
                self._end_locked(PeerLeft())
            self._changed.notify_all()
        if isinstance(event, FILE_MESSAGES):
            if files is not None:  # outside our lock; a message breaking the protocol ends the connection
                files.handle(event)
            return
        self._emit()  # a text is shown before it is acknowledged: an ack means "shown"
        if ack is not None and self.ended is None:
            connection.send_ack(ack)

    def _on_lost(self, connection: Connection, error: P2PChatError) -> None:
        with self._lock:
            if connection is not self._current:
                return
            self._current = None
            resume = (
                isinstance(error, NetworkError)
                and self._resumable
                and self._resume_for > 0
                and not self._closing
                and self.ended is None
            )
            if resume:
                self._down_since = time.monotonic()
                self._events.append(LinkDown(_reason(error), time.time()))
                self._give_up = threading.Timer(self._resume_for, self._resume_expired)
                self._give_up.daemon = True
                self._give_up.start()
            else:
                self._end_locked(LinkFailed(error))
            self._changed.notify_all()
        self._detach_files(connection)
        self._retire(connection)
        self._emit()
        if resume:
            self.on_link_down()

    def waiting_for_peer(self) -> None:
        """The listener says it keeps its port open for the peer to call back."""
        with self._lock:
            if self._down_since is None or self.ended is not None:
                return
            until = time.time() + self._resume_for - (time.monotonic() - self._down_since)
            self._events.append(WaitingForPeer(until))
        self._emit()

    def report(self, event: ChatEvent) -> None:
        """An event from the reconnecting side (Reconnecting), in order with the rest."""
        with self._lock:
            if self.ended is not None:
                return
            self._events.append(event)
        self._emit()

    def fail(self, error: P2PChatError) -> None:
        """End the conversation with *error* (a reconnect that cannot succeed, a wrong key)."""
        with self._lock:
            self._end_locked(LinkFailed(error))
            current, self._current = self._current, None
        if current is not None:
            self._retire(current, say_bye=True)
        self._emit()

    # -- file transfers -------------------------------------------------------------------

    def use_files(self, engine: FileEngine) -> None:
        """Carry *engine*'s transfers on every connection that speaks ``files`` (call before start())."""
        self._files = engine

    def _attach_files(self, connection: Connection) -> None:
        engine = self._files
        if engine is None or not connection.files:
            return
        with self._files_lock:
            if connection is not self._current or self.ended is not None:
                return
            if self._files_on is not None:  # the old link's loss is not processed yet: it is now
                self._files_on.use_low_lane(None)
                engine.detach()
            self._files_on = connection
            connection.use_low_lane(engine)
            engine.attach(connection.send_plaintext, connection.wake)

    def _detach_files(self, connection: Connection | None = None) -> None:
        """The connection carrying the transfers (*connection*, or whichever) is gone: they pause."""
        engine = self._files
        with self._files_lock:
            carrier = self._files_on
            if engine is None or carrier is None or (connection is not None and carrier is not connection):
                return
            self._files_on = None
            carrier.use_low_lane(None)
            engine.detach()

    def _retire(self, connection: Connection, say_bye: bool = False) -> None:
        """Close *connection* now, or later from another thread if this is one of its own."""
        if connection.in_own_thread:
            if say_bye:
                connection.send(Bye())
            with self._lock:
                self._retired.append(connection)
        else:
            connection.close(say_bye=say_bye)

    def _close_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for connection in retired:
            connection.close(say_bye=False)

    def _resume_expired(self) -> None:
        with self._lock:
            if self._current is not None or self.ended is not None:
                return
            self._end_locked(
                LinkFailed(ConnectionLost(f"connection lost, and not back within {self._resume_for:g} s; giving up"))
            )
        self._emit()

    def _end_locked(self, event: PeerLeft | LinkFailed) -> None:
        if self.ended is not None:
            return
        self.ended = event
        self._events.append(event)
        if self._give_up is not None:
            self._give_up.cancel()
        self._changed.notify_all()

    # -- events, in order, outside the lock ------------------------------------------------

    def start(self, on_event: Callable[[ChatEvent], None]) -> None:
        """Deliver events to *on_event* from now on (those already queued first)."""
        with self._lock:
            self._on_event = on_event
            unstarted, self._unstarted = self._unstarted, None
        if unstarted is not None and unstarted[0] is self._current:
            self._start_connection(*unstarted)
        self._emit()

    def _emit(self) -> None:
        """Deliver every queued event; when this returns, all queued before the call were delivered."""
        failure: P2PChatError | None = None
        with self._emit_lock:
            while True:
                with self._lock:
                    if self._on_event is None or not self._events:
                        break
                    event = self._events.popleft()
                    sink = self._on_event
                try:
                    sink(event)
                except P2PChatError as exc:  # stdout closed: the chat cannot go on
                    failure = failure or exc
        if failure is not None:
            self.fail(failure)
        if self.ended is not None:
            self._detach_files()  # the chat is over: transfers stop, and a wait for them ends
            if self._files is not None:
                self._files.wake_waiters()  # (also when no link carried them any more)

    # -- the interface side ----------------------------------------------------------------

    def send_text(self, text: str, action: bool = False) -> list[int]:
        """Queue *text* (split if longer than one message can carry); return the ids used.

        While the link is down the texts wait, and go out when it is back.
        """
        ids = []
        current = self._current
        # Outside the lock: measuring a long text takes a while. Cut for the connection's encoding
        # (binary needs no JSON-escape scan); texts typed while the link is down fit JSON too.
        split = current.pieces(text) if current is not None else pieces(text)
        with self._lock:
            for piece, json_text in split:
                message = self._state.add_text(piece, action, json_text)
                if self._current is not None:
                    self._current.send(message)
                ids.append(message.id)
        log.debug("queued text %s", ", ".join(map(str, ids)))
        return ids

    def unacknowledged(self) -> dict[int, str]:
        """Our texts the peer has not acknowledged yet, by id, in order."""
        with self._lock:
            return self._state.unacknowledged()

    def unacknowledged_count(self) -> int:
        with self._lock:
            return self._state.unacknowledged_count()

    def _full(self) -> bool:
        state = self._state
        return state.unacknowledged_count() >= MAX_IN_FLIGHT or state.unacknowledged_chars() >= MAX_CHARS_IN_FLIGHT

    def wait_for_room(self) -> None:
        """Block while MAX_IN_FLIGHT texts, or MAX_CHARS_IN_FLIGHT characters, await acks (back-pressure).

        Connected, the peer must acknowledge something every *ack_wait* seconds or the chat
        gives up; while the link is down, the resume deadline ends the wait.
        """
        with self._changed:
            while self._full() and self.ended is None:
                now = time.monotonic()
                if self._down_since is not None:
                    self._changed.wait(max(0.0, self._down_since + self._resume_for - now) + 1.0)
                    continue
                remaining = self._last_progress + self._ack_wait - now
                if remaining > 0:
                    self._changed.wait(remaining)
                    continue
                stalled = ConnectionLost(f"the peer acknowledged nothing for {self._ack_wait:g} s")
                break
            else:
                return
        self.fail(stalled)

    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait until every text is acknowledged or the chat ends; True if all were."""
        budget = timeout  # counts only while connected: during an outage the resume deadline rules
        with self._changed:
            while self._state.unacknowledged_count() and self.ended is None:
                start = time.monotonic()
                if self._down_since is not None:
                    self._changed.wait(max(0.0, self._down_since + self._resume_for - start) + 1.0)
                    continue
                if budget <= 0:
                    break
                self._changed.wait(budget)
                budget -= time.monotonic() - start
            return not self._state.unacknowledged_count()

    @property
    def half_close(self) -> bool:
        """The peer speaks extension done: our input can end while we keep receiving."""
        with self._lock:
            return self._half_close

    def input_ended(self) -> bool:
        """Our input ended: tell the peer (done) if it understands; True if it does."""
        with self._lock:
            if not self._half_close:
                return False
            if not self._state.done_sent:
                self._state.done_sent = True
                if self._current is not None:
                    self._current.send(Done())
            return True

    def wait_finished(self) -> bool:
        """After input_ended(): wait until the peer is done too and has everything; True if so.

        No deadline of its own: a live link may stay open as long as the peer has more to say,
        and a dead one ends by keepalive and resume deadlines, which wake this wait.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._state.finished or self.ended is not None)
            return self._state.finished

    @property
    def is_ended(self) -> bool:
        with self._lock:
            return self.ended is not None

    def close(self, say_bye: bool = True) -> None:
        """End the chat: bye over the current connection (if any), stop waiting for another."""
        with self._lock:
            self._closing = True
            current, self._current = self._current, None
            if self._give_up is not None:
                self._give_up.cancel()
            self._changed.notify_all()
        self._detach_files()
        if current is not None:
            self._retire(current, say_bye=say_bye)
        self._close_retired()


def _reason(error: P2PChatError) -> str:
    return str(error).removeprefix("connection lost: ") or "connection lost"
