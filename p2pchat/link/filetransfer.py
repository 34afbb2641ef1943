"""File transfers with the disk and threads: what the chat's interfaces and its link call.

:class:`FileEngine` holds a conversation's :class:`~p2pchat.core.transfer.Transfers` and
outlives its connections. Who calls what:

* the interface: :meth:`offer`, :meth:`accept`, :meth:`decline`, :meth:`cancel`, :meth:`listing`;
* the receiver thread: :meth:`handle` with every file message; it never touches the disk, so a
  slow disk never holds back a text (the data goes to the writer thread, at most a window of it);
* the sender thread: :meth:`next_record` when no text or ack is waiting (file data is the low
  lane); control messages go out through the *send* callback, on the high lane;
* the link: :meth:`attach` when a connection with the ``files`` extension is up, :meth:`detach`
  when it is lost.

The writer thread does every disk operation of received files (create or resume the ``.part``,
write, verify, rename, delete), in order.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core import filewire
from ..core.filenames import PART_SUFFIX, safe_name, shown
from ..core.filewire import DATA_HEADER, MAX_DATA, Control, FileCancel, FileMessage, FileOffer
from ..core.transfer import (
    FINAL,
    Accepted,
    DataReceived,
    Ended,
    Finished,
    Incoming,
    Offered,
    Outgoing,
    Progress,
    Reoffered,
    Send,
    State,
    Transfers,
)
from ..errors import LocalError
from .files import NoSpace, PartFile, Source

log = logging.getLogger("p2pchat")

CATCH_UP_STEP = 8 * 1024 * 1024  # bytes hashed per step when a resume starts past what was hashed
PROGRESS_INTERVAL = 0.25  # seconds between progress events of one transfer: a live bar, no flood
WRITER_JOIN = 10.0  # seconds to let the writer finish what it holds at the end
RECORD_BUFFER = DATA_HEADER.size + MAX_DATA  # one full data record
# Files received at once; more accepted ones wait their turn. With the window this bounds the
# data buffered for the disk (2 x 4 MiB), whatever a sender offers and --save-to accepts.
MAX_RECEIVING = 2


@dataclass(frozen=True)
class FileOffered:
    """The peer offers a file: *number* is what /accept and /decline take."""

    number: int
    name: str  # safe and escaped: ready to show
    size: int
    kept: int | None  # bytes of a NAME.part from an earlier run that an accept would continue


@dataclass(frozen=True)
class FileProgress:
    number: int
    name: str
    sending: bool
    done: int
    size: int


@dataclass(frozen=True)
class FileOutcome:
    """A transfer is over: one line to show; *ok* when the file arrived (either direction).

    *wanted*: a file this side sent, or accepted; one of those that did not arrive is a failure
    (the exit status says so), a declined offer is not.
    """

    number: int
    sending: bool
    ok: bool
    line: str
    wanted: bool = True


@dataclass(frozen=True)
class FileContinued:
    """After a lost link, the peer accepted our file again from *offset*: one line to show."""

    number: int
    line: str


FileEvent = FileOffered | FileProgress | FileOutcome | FileContinued


def human_size(size: int) -> str:
    """``2.3 MB``: decimal units, as file managers show them."""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


Transfer = Outgoing | Incoming
# A task for the writer thread: (what, transfer, offset, data); None ends it.
_Task = tuple[str, Incoming, int, memoryview] | None


class FileEngine:
    """Every file transfer of one conversation, with the disk.

    Transfers are keyed by their objects, not by their wire ids: a peer whose program restarted
    numbers its offers from 1 again, and its old transfers must not be confused with the new.
    """

    def __init__(
        self, on_event: Callable[[FileEvent], None], peer: str = "the peer", directory: Path | None = None
    ) -> None:
        self.transfers = Transfers()
        self.directory = directory  # where files go by default (a kept NAME.part there is offered to resume)
        self._on_event = on_event
        self._peer = peer
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._send: Callable[[bytes], None] | None = None
        self._wake: Callable[[], None] = lambda: None
        self._sources: dict[Outgoing, Source] = {}
        self._sent_paths: dict[Outgoing, Path] = {}
        self._announced: set[Outgoing] = set()  # offers the peer has seen: a cancel of one must reach it
        self._parts: dict[Incoming, PartFile] = {}
        self._saved: dict[Incoming, Path] = {}  # accepted: the directory; once saved: the file
        self._numbers: dict[Transfer, int] = {}  # the numbers people use in /accept, /cancel
        self._by_number: dict[int, Transfer] = {}
        self._last_progress: dict[int, float] = {}
        self._held: dict[int, tuple[Transfer, int]] = {}  # progress held back by the interval, by number
        self._progress_timer: threading.Timer | None = None  # sends what was held back
        self._buffer = bytearray(RECORD_BUFFER)
        self._view = memoryview(self._buffer)
        self._seeking: set[Outgoing] = set()  # outgoing transfers whose hash must catch up before sending
        self._writes: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._receiving: set[Incoming] = set()  # incoming transfers opened (or opening) and not over
        self._waiting: list[Incoming] = []  # accepted, waiting for a free place in _receiving
        self._link = 0  # counts attach(): an answer meant for one link is never sent on the next
        self._answered: dict[Incoming, int] = {}  # the link each accept (or repeated accept) went out on
        self._void: set[Incoming] = set()  # a restarted peer's transfers: never answered again
        self.outcomes: list[FileOutcome] = []

    # -- the link ---------------------------------------------------------------------

    def attach(self, send: Callable[[bytes], None], wake: Callable[[], None]) -> None:
        """A connection speaking ``files`` is up: *send* queues a control plaintext, *wake* the sender."""
        with self._lock:
            self._send, self._wake = send, wake
            self._link += 1
            for offer in self.transfers.link_up():
                send(filewire.encode(offer))
                self._announced.add(self.transfers.outgoing[offer.id])
            for transfer in self._announced:  # a cancel made while no link carried it (repeats are harmless)
                if transfer.state is State.STOPPED and not transfer.stopped_by_peer:
                    # The offer too: it may have been lost with the last link, and a cancel for an
                    # offer the peer never saw would be a protocol error.
                    send(filewire.encode(FileOffer(transfer.id, transfer.name, transfer.size)))
                    send(filewire.encode(FileCancel(transfer.id, transfer.reason)))
        wake()

    def detach(self) -> None:
        """The connection is gone: sending pauses until the receiver confirms an offset again."""
        with self._lock:
            self._send, self._wake = None, lambda: None
            self.transfers.link_lost()
            self._changed.notify_all()

    def wake_waiters(self) -> None:
        """The conversation ended: a wait_idle() waiting for the link to come back stops waiting."""
        with self._changed:
            self._changed.notify_all()

    def peer_restarted(self) -> None:
        """The peer's program started again (a new conversation): its offers are void, ours go again.

        Incoming transfers stop (a partial file is kept, for the peer to offer again and continue);
        outgoing ones are offered afresh on the next link, as if for the first time.
        """
        stopped = []
        with self._lock:
            for transfer in self.transfers.forget_incoming():
                self._void.add(transfer)  # no message about it goes to the new peer
                if transfer.state is State.ENDED:
                    continue  # all of it arrived, with its hash: the writer verifies and saves it
                if transfer.state not in FINAL:
                    transfer.state, transfer.reason, transfer.stopped_by_peer = State.STOPPED, "restarted", True
                    stopped.append(transfer)
                    if transfer in self._parts:
                        self._writes.put(("keep", transfer, 0, _NOTHING))
            self._announced.clear()
        for transfer in stopped:
            kept = "; the partial file is kept" if transfer in self._parts else ""
            self._finished(transfer, f"{self._peer}'s p2pchat restarted{kept}")

    # -- the interface ----------------------------------------------------------------

    def offer(self, path: Path, name: str | None = None) -> int:
        """Offer the file at *path* (as *name*, by default its own): its number. LocalError if unreadable."""
        source = Source(path)
        with self._lock:
            try:
                transfer, message = self.transfers.offer(name or path.name or "file", source.size)
            except ValueError as exc:
                source.close()
                raise LocalError(f"cannot offer {path}: {exc}") from exc
            self._sources[transfer] = source
            self._sent_paths[transfer] = path
            number = self._number(transfer)
            if self._send is not None:
                self._announced.add(transfer)
            self._control(message)
        return number

    def accept(self, number: int, directory: Path) -> None:
        """Accept offer *number* into *directory* (the writer creates or continues NAME.part, then accepts)."""
        with self._lock:
            transfer = self._incoming(number)
            if transfer.state is not State.OFFERED or transfer in self._saved:
                raise LocalError(f"transfer {number} is not waiting for an answer")
            self._saved[transfer] = directory
            self._waiting.append(transfer)
        self._start_writer()
        self._open_next()

    def _open_next(self) -> None:
        """Start accepted transfers while fewer than MAX_RECEIVING are under way."""
        with self._lock:
            while self._waiting and len(self._receiving) < MAX_RECEIVING:
                transfer = self._waiting.pop(0)
                if transfer.state is State.OFFERED:
                    self._receiving.add(transfer)
                    self._writes.put(("open", transfer, 0, _NOTHING))

    def decline(self, number: int) -> None:
        with self._lock:
            transfer = self._incoming(number)
            message = transfer.decline()
            if message is None:
                raise LocalError(f"transfer {number} is already over")
            self._control(message)
        self._finished(transfer)

    def cancel(self, number: int) -> None:
        """Stop transfer *number*, either direction; LocalError if it is over (or too far along)."""
        with self._lock:
            transfer = self._transfer(number)
            message = transfer.cancel() if isinstance(transfer, Outgoing) else transfer.decline(filewire.CANCELLED)
            if message is None:
                raise LocalError(f"transfer {number} is over, or too far along to stop")
            self._control(message)
            if isinstance(transfer, Incoming):
                self._writes.put(("drop", transfer, 0, _NOTHING))
        self._finished(transfer)

    def pending_offers(self) -> list[int]:
        """Numbers of the peer's offers still waiting for an answer, oldest first."""
        with self._lock:
            return [
                number
                for number, transfer in self._by_number.items()
                if isinstance(transfer, Incoming) and transfer.state is State.OFFERED and transfer not in self._saved
            ]

    def active(self) -> list[int]:
        """Numbers of transfers not over yet, oldest first."""
        with self._lock:
            return [number for number, transfer in self._by_number.items() if transfer.state not in FINAL]

    def listing(self) -> list[str]:
        """One line per transfer, for /transfers."""
        lines = []
        with self._lock:
            for number, transfer in self._by_number.items():
                sending = isinstance(transfer, Outgoing)
                done = transfer.acked if isinstance(transfer, Outgoing) else transfer.received
                state = transfer.state.value
                if transfer.state is State.ACTIVE and transfer.size:
                    state = f"{100 * done // transfer.size}%"
                elif transfer.state is State.OFFERED and transfer in self._saved:
                    state = "accepted, waiting its turn"
                lines.append(
                    f"#{number} {self._shown(transfer)} ({human_size(transfer.size)}) "
                    f"{'to' if sending else 'from'} {self._peer}: {state}"
                )
        return lines or ["no transfers"]

    def awaiting_answer(self) -> list[str]:
        """Names of our offers the peer has not answered yet (shown, escaped)."""
        with self._lock:
            return [self._shown(t) for t in self.transfers.outgoing.values() if t.state is State.OFFERED]

    @property
    def busy(self) -> bool:
        with self._lock:
            return self.transfers.busy

    def wait_idle(self, timeout: float, gone: Callable[[], bool] = lambda: True) -> bool:
        """Wait up to *timeout* seconds until every transfer is over; True then.

        Also True when no link carries them and *gone()* says none will again (with resume, a
        lost link may come back: *gone* is "the conversation is over"; detach() wakes this wait).
        """
        with self._changed:
            return self._changed.wait_for(lambda: not self.transfers.busy or (self._send is None and gone()), timeout)

    def close(self) -> list[str]:
        """Stop: let the writer finish what it holds, then report what did not arrive (a .part is kept)."""
        self.detach()
        with self._lock:
            if self._progress_timer is not None:
                self._progress_timer.cancel()
        writer_busy = False
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join(WRITER_JOIN)  # a file verified meanwhile is saved, and not reported lost
            writer_busy = self._writer.is_alive()
        lines = []
        with self._lock:
            for transfer in self._numbers:
                name = self._shown(transfer)
                if isinstance(transfer, Outgoing):
                    if transfer.state not in FINAL:
                        lines.append(f"not sent: {name}")
                elif transfer.state in (State.ACTIVE, State.ENDED):
                    part = self._parts.get(transfer)
                    kept = part.written if part is not None else 0
                    lines.append(f"incomplete: {name} ({human_size(kept)} kept, to continue later)")
                elif transfer.state is State.OFFERED and transfer in self._saved:
                    lines.append(f"not received: {name} (accepted, it was waiting its turn)")
            for source in self._sources.values():
                source.close()
            if not writer_busy:  # never close a descriptor the writer may still use (it could be reused)
                for part in self._parts.values():
                    part.keep()
                self._parts.clear()
        return lines

    # -- the receiver thread ----------------------------------------------------------

    def handle(self, message: FileMessage) -> None:
        """A file message from the peer. MessageError if it breaks the protocol; never blocks on the disk."""
        with self._lock:
            events = self.transfers.receive(message)
            for event in events:
                if isinstance(event, Send):
                    self._control(event.message)
                elif isinstance(event, DataReceived):
                    # The writer gets it later: a view into a buffer the link reuses must be copied first.
                    data = event.data if event.data.readonly else memoryview(bytes(event.data))
                    self._writes.put(("data", event.transfer, event.offset, data))
                elif isinstance(event, Ended):
                    self._writes.put(("end", event.transfer, 0, _NOTHING))
                elif isinstance(event, Reoffered):
                    if self._answered.get(event.transfer) == self._link:
                        event.transfer.resuming = False  # our accept on this link crossed the offer
                    else:  # answered once everything received is written: the window counts new data only
                        self._writes.put(("reaccept", event.transfer, self._link, _NOTHING))
                elif isinstance(event, Accepted):
                    self._seeking.add(event.transfer)
                    self._wake()
                elif isinstance(event, Progress):
                    self._wake()  # the window opened
        for event in events:
            if isinstance(event, Offered):
                self._offered(event.transfer)
            elif isinstance(event, Accepted) and event.transfer.next_offset > 0:
                self._continued(event.transfer)
            elif isinstance(event, Progress):
                self._progress(event.transfer, event.transfer.acked)
            elif isinstance(event, Finished):
                if isinstance(event.transfer, Incoming):
                    self._writes.put(("drop", event.transfer, 0, _NOTHING))
                self._finished(event.transfer)

    def _offered(self, transfer: Incoming) -> None:
        with self._lock:
            number = self._number(transfer)
            kept = None if self.directory is None else self._resumable(self.directory, transfer)
        self._on_event(FileOffered(number, shown(safe_name(transfer.name)), transfer.size, kept))

    def _resumable(self, directory: Path, transfer: Incoming) -> int | None:
        """The length of a NAME.part an earlier run left for *transfer*; never one of ours in use now."""
        in_use = {part.part for part in self._parts.values()}
        if directory / (safe_name(transfer.name) + PART_SUFFIX) in in_use:
            return None
        return PartFile.resumable(directory, transfer.name, transfer.size)

    def _continued(self, transfer: Outgoing) -> None:
        with self._lock:
            number = self._numbers[transfer]
            name = self._shown(transfer)
        offset, size = transfer.next_offset, transfer.size
        line = f"continuing {name} from {human_size(offset)} of {human_size(size)} ({100 * offset // size}%)"
        self._on_event(FileContinued(number, line))

    # -- the sender thread ------------------------------------------------------------

    def next_record(self) -> memoryview | None:
        """The next plaintext of the low lane (a data record or file_end), or None when none is due.

        An empty view means "work done, nothing to send yet" (a resume hashing the part already
        sent, a step at a time, so texts still go in between). The view is into a buffer reused
        by the next call: encrypt it before calling again.
        """
        with self._lock:
            for transfer in list(self._seeking):
                self._seeking.discard(transfer)
                if transfer.state is not State.ACTIVE:
                    continue
                try:
                    if not self._sources[transfer].catch_up(transfer.next_offset, CATCH_UP_STEP):
                        self._seeking.add(transfer)
                except LocalError as exc:
                    return self._read_failed(transfer, exc)
                return _NOTHING
            due = self.transfers.sending()
            if due is None:
                return None
            transfer = due
            source = self._sources[transfer]
            chunk = transfer.next_chunk()
            if chunk is None:
                return memoryview(filewire.encode(transfer.end(source.digest())))
            offset, length = chunk
            filewire.pack_data_header(self._buffer, transfer.id, offset)
            try:
                read = source.read_into(self._view[DATA_HEADER.size : DATA_HEADER.size + length], offset)
            except LocalError as exc:
                return self._read_failed(transfer, exc)
            if read != length:
                return self._read_failed(transfer, LocalError(f"{source.path} shrank while being sent"))
            transfer.sent(offset, length)
            return self._view[: DATA_HEADER.size + length]

    def _read_failed(self, transfer: Outgoing, error: LocalError) -> memoryview | None:
        log.debug("reading a file failed: %s", error)
        message = transfer.cancel(filewire.DISK_ERROR)
        # Reported from another thread: the sender thread holds the link's write lock here.
        threading.Thread(target=self._finished, args=(transfer, str(error)), daemon=True).start()
        return memoryview(filewire.encode(message)) if message is not None else None

    # -- the writer thread ------------------------------------------------------------

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="p2pchat-files", daemon=True)
                self._writer.start()

    def _write_loop(self) -> None:
        while (task := self._writes.get()) is not None:
            kind, transfer, offset, data = task
            with self._lock:
                part = self._parts.get(transfer)
            try:
                if kind == "open":
                    self._open(transfer)
                elif kind == "data" and part is not None and transfer.state in (State.ACTIVE, State.ENDED):
                    part.write(offset, data)
                    with self._lock:
                        ack = transfer.written(part.written)
                        if ack is not None:
                            log.debug("file %d: %d of %d bytes written", transfer.id, part.written, transfer.size)
                            self._control(ack)
                    self._progress(transfer, part.written)
                elif kind == "reaccept" and part is not None:
                    with self._lock:
                        # *offset* holds the link the repeated offer came on: if that link is gone,
                        # the offer repeated on the next one gets its own answer (one per link).
                        current = offset == self._link and self._send is not None
                        if transfer.state is State.ACTIVE and current and part.written <= transfer.received:
                            self._answered[transfer] = self._link
                            self._control(transfer.resume_at(part.written))
                elif kind == "end" and part is not None and transfer.state is State.ENDED:
                    self._verify(transfer, part)
                elif kind in ("drop", "keep") and part is not None:
                    with self._lock:
                        self._parts.pop(transfer, None)
                    part.discard() if kind == "drop" else part.keep()
            except LocalError as exc:
                self._write_failed(transfer, exc)
            except Exception as exc:  # a bug: this transfer fails, the chat and the other transfers go on
                log.debug("the file writer failed", exc_info=exc)
                self._write_failed(transfer, LocalError(f"internal error while saving: {type(exc).__name__}"))

    def _open(self, transfer: Incoming) -> None:
        directory = self._saved[transfer]
        with self._lock:
            kept = self._resumable(directory, transfer)
        part = (
            PartFile.resume(directory, transfer.name, transfer.size)
            if kept is not None
            else PartFile.create(directory, transfer.name, transfer.size)
        )
        with self._lock:
            if transfer.state is not State.OFFERED:  # stopped meanwhile
                part.discard() if kept is None else part.keep()
                return
            self._parts[transfer] = part
            if self._send is not None:
                self._answered[transfer] = self._link
            self._control(transfer.accept(part.written))

    def _verify(self, transfer: Incoming, part: PartFile) -> None:
        saved = part.finish(transfer.sha256)
        with self._lock:
            self._parts.pop(transfer, None)
            if saved is not None:
                self._saved[transfer] = saved
                verdict = transfer.verified(True)
            else:
                verdict = transfer.verified(False, "hash_mismatch")
            if transfer not in self._void:
                self._control(verdict)
        self._finished(transfer)

    def _write_failed(self, transfer: Incoming, error: LocalError) -> None:
        reason = filewire.NO_SPACE if isinstance(error, NoSpace) else filewire.DISK_ERROR
        with self._lock:
            part = self._parts.pop(transfer, None)
            ended = transfer.state is State.ENDED
            message: Control | None = transfer.verified(False, reason) if ended else transfer.decline(reason)
            if message is not None and transfer not in self._void:
                self._control(message)
        if part is not None:
            with contextlib.suppress(LocalError):
                part.discard()
        if message is not None:  # (a transfer already over stays as it ended)
            self._finished(transfer, str(error))

    # -- shared -----------------------------------------------------------------------

    def _control(self, message: Control) -> None:
        """Queue a control message on the link, if there is one (a lost one is repeated after a resume)."""
        if self._send is not None:
            self._send(filewire.encode(message))
        self._changed.notify_all()

    def _number(self, transfer: Transfer) -> int:
        if transfer not in self._numbers:
            self._numbers[transfer] = len(self._numbers) + 1
            self._by_number[self._numbers[transfer]] = transfer
        return self._numbers[transfer]

    def _transfer(self, number: int) -> Transfer:
        if number not in self._by_number:
            raise LocalError(f"no transfer #{number}: /transfers lists them")
        return self._by_number[number]

    def _incoming(self, number: int) -> Incoming:
        transfer = self._transfer(number)
        if isinstance(transfer, Outgoing):
            raise LocalError(f"transfer #{number} is one you are sending")
        return transfer

    def _shown(self, transfer: Transfer) -> str:
        if isinstance(transfer, Outgoing):
            return shown(self._sent_paths[transfer].name)
        path = self._saved.get(transfer)
        if transfer.state is State.DONE and path is not None:
            return shown(str(path))
        return shown(safe_name(transfer.name))

    def _progress(self, transfer: Transfer, done: int) -> None:
        """A progress event, at most one per PROGRESS_INTERVAL per transfer, and always the last one.

        A figure held back is sent by a timer at the end of the interval: a transfer that stalls
        shows where it stopped, not where it was a moment before.
        """
        now = time.monotonic()
        with self._lock:
            if transfer.state in FINAL:
                return  # its outcome line said it all
            number = self._numbers[transfer]
            wait = self._last_progress.get(number, 0.0) + PROGRESS_INTERVAL - now
            if done < transfer.size and wait > 0:
                self._held[number] = (transfer, done)
                if self._progress_timer is None:
                    self._progress_timer = threading.Timer(wait, self._held_progress)
                    self._progress_timer.daemon = True
                    self._progress_timer.start()
                return
            self._held.pop(number, None)
            self._last_progress[number] = now
            name = self._shown(transfer)
        self._on_event(FileProgress(number, name, isinstance(transfer, Outgoing), done, transfer.size))

    def _held_progress(self) -> None:
        with self._lock:
            held, self._held = self._held, {}
            self._progress_timer = None
        for transfer, done in held.values():
            self._progress(transfer, done)

    def _finished(self, transfer: Transfer, detail: str = "") -> None:
        sending = isinstance(transfer, Outgoing)
        with self._lock:
            number = self._number(transfer)
            name = self._shown(transfer)
            if isinstance(transfer, Outgoing):
                source = self._sources.pop(transfer, None)
                if source is not None:
                    source.close()
            else:
                self._receiving.discard(transfer)
            self._changed.notify_all()
        if not sending:
            self._open_next()
        ok = transfer.state is State.DONE
        own_cancel = transfer.state is State.STOPPED and not transfer.stopped_by_peer
        wanted = (sending or transfer in self._saved) and not (own_cancel and transfer.reason == filewire.CANCELLED)
        outcome = FileOutcome(number, sending, ok, self._line(transfer, name, detail), wanted)
        with self._lock:
            self.outcomes.append(outcome)
        self._on_event(outcome)

    def _line(self, transfer: Transfer, name: str, detail: str) -> str:
        peer = self._peer
        sending = isinstance(transfer, Outgoing)
        if transfer.state is State.DONE:
            return f"sent {name} to {peer}, SHA-256 verified" if sending else f"saved {name}, SHA-256 verified"
        if transfer.state is State.FAILED:
            if detail:
                return f"{name}: {detail}; the partial file is deleted"
            if sending:
                return f"{name}: {peer} got different data (SHA-256 mismatch); not saved"
            return f"{name}: the data does not match its SHA-256; the partial file is deleted"
        reason = transfer.reason.replace("_", " ")
        if detail:
            return f"{name} stopped: {detail}"
        if transfer.stopped_by_peer:
            if transfer.reason == filewire.DECLINED and sending:
                return f"{peer} declined {name}"
            return f"{peer} stopped {name} ({reason})"
        if transfer.reason == filewire.DECLINED:
            return f"declined {name}"
        return f"you stopped {name}"


_NOTHING = memoryview(b"")
