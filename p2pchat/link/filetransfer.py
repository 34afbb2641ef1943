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
from ..core.filenames import safe_name, shown
from ..core.filewire import DATA_HEADER, MAX_DATA, Control, FileMessage
from ..core.transfer import (
    Accepted,
    DataReceived,
    Ended,
    Finished,
    Incoming,
    Offered,
    Outgoing,
    Progress,
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
    """A transfer is over: one line to show; *ok* when the file arrived (either direction)."""

    number: int
    sending: bool
    ok: bool
    line: str


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


class FileEngine:
    """Every file transfer of one conversation, with the disk."""

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
        self._sources: dict[int, Source] = {}
        self._parts: dict[int, PartFile] = {}
        self._paths: dict[int, Path] = {}  # where an incoming file goes (a directory) or went
        self._numbers: dict[tuple[bool, int], int] = {}  # (sending, id) -> the number people use
        self._keys: dict[int, tuple[bool, int]] = {}
        self._last_progress: dict[int, float] = {}
        self._buffer = bytearray(RECORD_BUFFER)
        self._view = memoryview(self._buffer)
        self._seeking: set[int] = set()  # outgoing transfers whose hash must catch up before sending
        self._writes: queue.SimpleQueue[tuple[str, int, int, memoryview] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._receiving: set[int] = set()  # incoming transfers opened (or opening) and not over
        self._queued: list[int] = []  # accepted, waiting for a free place in _receiving
        self.outcomes: list[FileOutcome] = []

    # -- the link ---------------------------------------------------------------------

    def attach(self, send: Callable[[bytes], None], wake: Callable[[], None]) -> None:
        """A connection speaking ``files`` is up: *send* queues a control plaintext, *wake* the sender."""
        with self._lock:
            self._send, self._wake = send, wake
            for offer in self.transfers.link_up():
                send(filewire.encode(offer))
        wake()

    def detach(self) -> None:
        """The connection is gone: sending pauses until the receiver confirms an offset again."""
        with self._lock:
            self._send, self._wake = None, lambda: None
            self.transfers.link_lost()
            self._changed.notify_all()

    @property
    def attached(self) -> bool:
        return self._send is not None

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
            self._sources[transfer.id] = source
            self._paths[transfer.id] = path
            number = self._number(True, transfer.id)
            self._control(message)
        return number

    def accept(self, number: int, directory: Path) -> None:
        """Accept offer *number* into *directory* (the writer creates or continues NAME.part, then accepts)."""
        with self._lock:
            transfer = self._incoming(number)
            if transfer.state is not State.OFFERED or transfer.id in self._paths:
                raise LocalError(f"transfer {number} is not waiting for an answer")
            self._paths[transfer.id] = directory
            self._queued.append(transfer.id)
        self._start_writer()
        self._open_next()

    def _open_next(self) -> None:
        """Start accepted transfers while fewer than MAX_RECEIVING are under way."""
        with self._lock:
            while self._queued and len(self._receiving) < MAX_RECEIVING:
                transfer_id = self._queued.pop(0)
                if self.transfers.incoming[transfer_id].state is State.OFFERED:
                    self._receiving.add(transfer_id)
                    self._writes.put(("open", transfer_id, 0, memoryview(b"")))

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
            sending, transfer_id = self._key(number)
            transfer: Outgoing | Incoming
            if sending:
                transfer = self.transfers.outgoing[transfer_id]
                message: Control | None = transfer.cancel()
            else:
                transfer = self.transfers.incoming[transfer_id]
                message = transfer.decline(filewire.CANCELLED)
            if message is None:
                raise LocalError(f"transfer {number} is over, or too far along to stop")
            self._control(message)
            if not sending:
                self._writes.put(("drop", transfer_id, 0, memoryview(b"")))
        self._finished(transfer)

    def pending_offers(self) -> list[int]:
        """Numbers of the peer's offers still waiting for an answer, oldest first."""
        with self._lock:
            return [
                self._numbers[(False, t.id)]
                for t in self.transfers.incoming.values()
                if t.state is State.OFFERED and t.id not in self._paths
            ]

    def active(self) -> list[int]:
        """Numbers of transfers not over yet, oldest first."""
        with self._lock:
            return [n for n, key in self._keys.items() if self._transfer(key).state not in _OVER]

    def listing(self) -> list[str]:
        """One line per transfer, for /transfers."""
        lines = []
        with self._lock:
            for number, key in self._keys.items():
                transfer = self._transfer(key)
                done = transfer.acked if isinstance(transfer, Outgoing) else transfer.received
                arrow = "to" if key[0] else "from"
                state = transfer.state.value
                if transfer.state is State.ACTIVE and transfer.size:
                    state = f"{100 * done // transfer.size}%"
                lines.append(
                    f"#{number} {self._shown(key)} ({human_size(transfer.size)}) {arrow} {self._peer}: {state}"
                )
        return lines or ["no transfers"]

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
        """Stop: finish the writer's work; unfinished transfers stop (a .part is kept). Lines to report."""
        lines = []
        with self._lock:
            self.detach()
            for transfer in self.transfers.incoming.values():
                if transfer.state in (State.ACTIVE, State.ENDED):
                    lines.append(f"incomplete: {self._shown((False, transfer.id))} ({transfer.received} bytes kept)")
            for outgoing in self.transfers.outgoing.values():
                if outgoing.state not in _OVER:
                    lines.append(f"not sent: {self._shown((True, outgoing.id))}")
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join(WRITER_JOIN)
        with self._lock:
            for source in self._sources.values():
                source.close()
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
                    self._writes.put(("data", event.transfer.id, event.offset, data))
                elif isinstance(event, Ended):
                    self._writes.put(("end", event.transfer.id, 0, memoryview(b"")))
                elif isinstance(event, Accepted):
                    self._seeking.add(event.transfer.id)
                    self._wake()
                elif isinstance(event, Progress):
                    self._wake()  # the window opened
        for event in events:
            if isinstance(event, Offered):
                self._offered(event.transfer)
            elif isinstance(event, Accepted) and event.transfer.next_offset > 0:
                self._continued(event.transfer)
            elif isinstance(event, Progress):
                self._progress(True, event.transfer.id, event.transfer.acked, event.transfer.size)
            elif isinstance(event, Finished):
                if isinstance(event.transfer, Incoming):
                    self._writes.put(("drop", event.transfer.id, 0, memoryview(b"")))
                self._finished(event.transfer)

    def _offered(self, transfer: Incoming) -> None:
        with self._lock:
            number = self._number(False, transfer.id)
        kept = None if self.directory is None else PartFile.resumable(self.directory, transfer.name, transfer.size)
        self._on_event(FileOffered(number, shown(safe_name(transfer.name)), transfer.size, kept))

    def _continued(self, transfer: Outgoing) -> None:
        with self._lock:
            number = self._numbers[(True, transfer.id)]
            name = self._shown((True, transfer.id))
        offset, size = transfer.next_offset, transfer.size
        line = f"continuing {name} from {human_size(offset)} of {human_size(size)} ({100 * offset // size}%)"
        self._on_event(FileContinued(number, line))

    # -- the sender thread ------------------------------------------------------------

    def has_data(self) -> bool:
        """A data record (or a file_end) is due: the sender thread should call next_record()."""
        with self._lock:
            return bool(self._seeking) or self.transfers.sending() is not None

    def next_record(self) -> memoryview | None:
        """The next plaintext of the low lane (a data record or file_end), or None when none is due.

        An empty view means "work done, nothing to send yet" (a resume hashing the part already
        sent, a step at a time, so texts still go in between). The view is into a buffer reused
        by the next call: encrypt it before calling again.
        """
        with self._lock:
            for transfer_id in list(self._seeking):
                transfer = self.transfers.outgoing[transfer_id]
                if transfer.state is not State.ACTIVE:
                    self._seeking.discard(transfer_id)
                    continue
                try:
                    if self._sources[transfer_id].catch_up(transfer.next_offset, CATCH_UP_STEP):
                        self._seeking.discard(transfer_id)
                except LocalError as exc:
                    self._seeking.discard(transfer_id)
                    return self._read_failed(transfer, exc)
                return _NOTHING
            due = self.transfers.sending()
            if due is None or due.id in self._seeking:
                return None
            transfer = due
            source = self._sources[transfer.id]
            chunk = transfer.next_chunk()
            if chunk is None:
                return memoryview(filewire.encode(transfer.end(source.digest())))
            offset, length = chunk
            filewire.pack_data_header(self._buffer, transfer.id, offset)
            try:
                read = source.read_into(self._view[DATA_HEADER.size : DATA_HEADER.size + length], offset)
            except OSError as exc:
                return self._read_failed(transfer, LocalError(f"cannot read {source.path}: {exc.strerror}"))
            if read != length:
                return self._read_failed(transfer, LocalError(f"{source.path} shrank while being sent"))
            transfer.sent(offset, length)
            return self._view[: DATA_HEADER.size + length]

    def _read_failed(self, transfer: Outgoing, error: LocalError) -> memoryview | None:
        log.debug("reading a file failed: %s", error)
        message = transfer.cancel(filewire.DISK_ERROR)
        self._finished(transfer, str(error))
        return memoryview(filewire.encode(message)) if message is not None else None

    # -- the writer thread ------------------------------------------------------------

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="p2pchat-files", daemon=True)
                self._writer.start()

    def _write_loop(self) -> None:
        while (task := self._writes.get()) is not None:
            kind, transfer_id, offset, data = task
            with self._lock:
                transfer = self.transfers.incoming[transfer_id]
                part = self._parts.get(transfer_id)
            try:
                if kind == "open":
                    self._open(transfer)
                elif kind == "data" and part is not None and transfer.state in (State.ACTIVE, State.ENDED):
                    part.write(offset, data)
                    with self._lock:
                        ack = transfer.written(part.written)
                        if ack is not None:
                            log.debug(
                                "file transfer %d: %d of %d bytes written", transfer_id, part.written, transfer.size
                            )
                            self._control(ack)
                    self._progress(False, transfer_id, part.written, transfer.size)
                elif kind == "end" and part is not None and transfer.state is State.ENDED:
                    self._verify(transfer, part)
                elif kind == "drop" and part is not None:
                    with self._lock:
                        self._parts.pop(transfer_id, None)
                    part.discard()
            except LocalError as exc:
                self._write_failed(transfer, exc)
            except Exception as exc:  # a bug: this transfer fails, the chat and the other transfers go on
                log.debug("the file writer failed", exc_info=exc)
                self._write_failed(transfer, LocalError(f"internal error while saving: {exc!r}"))

    def _open(self, transfer: Incoming) -> None:
        directory = self._paths[transfer.id]
        kept = PartFile.resumable(directory, transfer.name, transfer.size)
        part = (
            PartFile.resume(directory, transfer.name, transfer.size)
            if kept
            else PartFile.create(directory, transfer.name, transfer.size)
        )
        with self._lock:
            if transfer.state is not State.OFFERED:  # stopped meanwhile
                part.discard() if not kept else part.keep()
                return
            self._parts[transfer.id] = part
            self._control(transfer.accept(part.written))

    def _verify(self, transfer: Incoming, part: PartFile) -> None:
        saved = part.finish(transfer.sha256)
        with self._lock:
            self._parts.pop(transfer.id, None)
            if saved is not None:
                self._paths[transfer.id] = saved
                self._control(transfer.verified(True))
            else:
                self._control(transfer.verified(False, "hash_mismatch"))
        self._finished(transfer)

    def _write_failed(self, transfer: Incoming, error: LocalError) -> None:
        reason = filewire.NO_SPACE if isinstance(error, NoSpace) else filewire.DISK_ERROR
        with self._lock:
            part = self._parts.pop(transfer.id, None)
            ended = transfer.state is State.ENDED
            message: Control | None = transfer.verified(False, reason) if ended else transfer.decline(reason)
            if message is not None:
                self._control(message)
        if part is not None:
            with contextlib.suppress(LocalError):
                part.discard()
        self._finished(transfer, str(error))

    # -- shared -----------------------------------------------------------------------

    def _control(self, message: Control) -> None:
        """Queue a control message on the link, if there is one (a lost one is repeated after a resume)."""
        if self._send is not None:
            self._send(filewire.encode(message))
        self._changed.notify_all()

    def _number(self, sending: bool, transfer_id: int) -> int:
        key = (sending, transfer_id)
        if key not in self._numbers:
            self._numbers[key] = len(self._numbers) + 1
            self._keys[self._numbers[key]] = key
        return self._numbers[key]

    def _key(self, number: int) -> tuple[bool, int]:
        if number not in self._keys:
            raise LocalError(f"no transfer #{number}: /transfers lists them")
        return self._keys[number]

    def _incoming(self, number: int) -> Incoming:
        sending, transfer_id = self._key(number)
        if sending:
            raise LocalError(f"transfer #{number} is one you are sending")
        return self.transfers.incoming[transfer_id]

    def _transfer(self, key: tuple[bool, int]) -> Outgoing | Incoming:
        return self.transfers.outgoing[key[1]] if key[0] else self.transfers.incoming[key[1]]

    def _shown(self, key: tuple[bool, int]) -> str:
        if key[0]:
            return shown(self._paths[key[1]].name)
        path = self._paths.get(key[1])
        transfer = self.transfers.incoming[key[1]]
        if transfer.state is State.DONE and path is not None:
            return shown(str(path))
        return shown(safe_name(transfer.name))

    def _progress(self, sending: bool, transfer_id: int, done: int, size: int) -> None:
        now = time.monotonic()
        with self._lock:
            number = self._numbers[(sending, transfer_id)]
            if done < size and now - self._last_progress.get(number, 0.0) < PROGRESS_INTERVAL:
                return
            self._last_progress[number] = now
            name = self._shown((sending, transfer_id))
        self._on_event(FileProgress(number, name, sending, done, size))

    def _finished(self, transfer: Outgoing | Incoming, detail: str = "") -> None:
        sending = isinstance(transfer, Outgoing)
        with self._lock:
            number = self._numbers[(sending, transfer.id)]
            name = self._shown((sending, transfer.id))
            if sending:
                self._sources.pop(transfer.id).close() if transfer.id in self._sources else None
            else:
                self._receiving.discard(transfer.id)
            self._changed.notify_all()
        if not sending:
            self._open_next()
        ok = transfer.state is State.DONE
        outcome = FileOutcome(number, sending, ok, self._line(transfer, name, detail))
        with self._lock:
            self.outcomes.append(outcome)
        self._on_event(outcome)

    def _line(self, transfer: Outgoing | Incoming, name: str, detail: str) -> str:
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


_OVER = frozenset({State.DONE, State.FAILED, State.STOPPED})
_NOTHING = memoryview(b"")
