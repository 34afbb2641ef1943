"""File transfers of one conversation: the sender's and the receiver's state machines (sans-IO).

The protocol (SECURITY.md, "Extension `files`"), for a file going from S to R::

    S: file_offer {id, name, size}
    R: file_accept {id, offset}          (or file_decline: nothing more happens)
    S: data records from offset on, never more than WINDOW bytes past R's last file_ack
    R: file_ack {id, offset}             (every ACK_EVERY bytes written, and at the end)
    S: file_end {id, sha256}             (the hash of the whole file)
    R: file_result {id, ok}              (ok: the hashes match and the file has its final name)

Either side may stop a transfer at any time (S: file_cancel, R: file_decline); data already
on its way for a stopped transfer is ignored. After a link loss and resume, S offers every
unfinished transfer again; R answers a repeated offer with its state: file_accept from the
offset it has received (the transfer continues there), file_result, file_decline, or nothing
while the person has not decided yet.

No disk and no hashing here: the I/O layer reads and writes the file, keeps the SHA-256,
and tells these objects what happened. Every check of the peer's messages is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..errors import MessageError
from .filewire import (
    CANCELLED,
    DECLINED,
    MAX_DATA,
    MAX_SIZE,
    MAX_TRANSFER_ID,
    Control,
    FileAccept,
    FileAck,
    FileCancel,
    FileData,
    FileDecline,
    FileEnd,
    FileMessage,
    FileOffer,
    FileResult,
)

WINDOW = 4 * 1024 * 1024  # unacknowledged bytes per transfer: bounds the receiver's buffers
ACK_EVERY = WINDOW // 8  # the receiver acknowledges after writing this much: keeps the window open
MAX_TRANSFERS = 10_000  # offers remembered per direction: a peer cannot grow our memory without end


class State(Enum):
    OFFERED = "offered"  # waiting for the receiver (the person) to decide
    ACTIVE = "active"  # data flowing (sender: may send; receiver: accepted, receiving)
    PAUSED = "paused"  # sender: the link went down; waiting for file_accept on the next link
    ENDED = "ended"  # all data sent (sender) or received (receiver); waiting for the verdict
    DONE = "done"  # verified and saved
    FAILED = "failed"  # the hashes differ, or the file could not be written
    STOPPED = "stopped"  # declined or cancelled by either side


FINAL = frozenset({State.DONE, State.FAILED, State.STOPPED})


@dataclass(eq=False)  # one transfer is one object: the I/O layer keys its files by it
class Outgoing:
    """A file this side offered."""

    id: int
    name: str
    size: int
    state: State = State.OFFERED
    next_offset: int = 0  # the next byte to send
    acked: int = 0  # the receiver has written everything before this
    start_offset: int = 0  # where the last file_accept asked the data to start
    reason: str = ""  # why it stopped
    stopped_by_peer: bool = False

    def next_chunk(self) -> tuple[int, int] | None:
        """(offset, length) of the next data record to send now, or None (window full, or all sent)."""
        if self.state is not State.ACTIVE or self.next_offset >= self.size:
            return None
        room = self.acked + WINDOW - self.next_offset
        if room <= 0:
            return None
        return self.next_offset, min(MAX_DATA, self.size - self.next_offset, room)

    def sent(self, offset: int, length: int) -> None:
        """The I/O layer sent the record next_chunk() named."""
        if self.state is not State.ACTIVE or offset != self.next_offset or offset + length > self.size:
            raise ValueError("sent a chunk that was not due")
        self.next_offset += length

    @property
    def all_sent(self) -> bool:
        """Every byte is sent: time for file_end."""
        return self.state is State.ACTIVE and self.next_offset == self.size

    def end(self, sha256: bytes) -> FileEnd:
        """file_end with the SHA-256 of the whole file, once all_sent."""
        if not self.all_sent:
            raise ValueError("file_end before all data was sent")
        self.state = State.ENDED
        return FileEnd(self.id, sha256)

    def cancel(self, reason: str = CANCELLED) -> FileCancel | None:
        """This side stops the transfer: the message to send, or None if it is over or too late.

        Too late: file_end is sent, so the receiver's verdict decides.
        """
        if self.state in FINAL or self.state is State.ENDED:
            return None
        self._stop(reason, by_peer=False)
        return FileCancel(self.id, reason)

    def _stop(self, reason: str, *, by_peer: bool) -> None:
        self.state = State.STOPPED
        self.reason = reason
        self.stopped_by_peer = by_peer


@dataclass(eq=False)
class Incoming:
    """A file the peer offered to this side."""

    id: int
    name: str  # as offered: hostile; filenames.safe_name() makes the name to save under
    size: int
    state: State = State.OFFERED
    received: int = 0  # the next byte expected
    acked: int = 0  # the last offset this side acknowledged (or accepted from)
    reason: str = ""
    stopped_by_peer: bool = False
    sha256: bytes = b""  # the sender's hash, from file_end
    resuming: bool = False  # offered again on this link, not answered yet: the sender must wait

    def accept(self, offset: int = 0) -> FileAccept:
        """The person accepted; *offset* is the length of a kept partial file to continue."""
        if self.state is not State.OFFERED:
            raise ValueError("only an offered transfer can be accepted")
        if not 0 <= offset <= self.size:
            raise ValueError("offset beyond the end of the file")
        self.state = State.ACTIVE
        self.received = self.acked = offset
        return FileAccept(self.id, offset)

    def decline(self, reason: str = DECLINED) -> FileDecline | None:
        """This side refuses or stops the transfer: the message to send, or None if over or too late.

        Too late: all data arrived and is being verified.
        """
        if self.state in FINAL or self.state is State.ENDED:
            return None
        self.state = State.STOPPED
        self.reason = reason
        self.stopped_by_peer = False
        return FileDecline(self.id, reason)

    def written(self, offset: int) -> FileAck | None:
        """The I/O layer has written the file up to *offset*: a file_ack when one is due."""
        if self.state not in (State.ACTIVE, State.ENDED) or offset > self.received:
            return None
        if offset - self.acked >= ACK_EVERY or (offset == self.size and offset > self.acked):
            self.acked = offset
            return FileAck(self.id, offset)
        return None

    def verified(self, ok: bool, reason: str = "") -> FileResult:
        """The I/O layer compared the hashes (and renamed the file when ok): the verdict to send."""
        if self.state is not State.ENDED:
            raise ValueError("verdict before file_end")
        self.state = State.DONE if ok else State.FAILED
        self.reason = reason
        return FileResult(self.id, ok)

    def resume_at(self, written: int) -> FileAccept:
        """The answer to a repeated offer while receiving: continue from *written*, all of it on disk.

        The window then counts from what is written, so a sender that resumes again and again
        never has more than WINDOW bytes waiting for the disk.
        """
        if self.state is not State.ACTIVE or not self.acked <= written <= self.received:
            raise ValueError("resume_at() needs an active transfer and an offset it has written")
        self.received = self.acked = written
        self.resuming = False
        return FileAccept(self.id, written)

    def current(self) -> Control | None:
        """The answer to a repeated offer, except while receiving (see resume_at()): where this side stands."""
        if self.state in (State.DONE, State.FAILED):
            return FileResult(self.id, self.state is State.DONE)
        if self.state is State.STOPPED and not self.stopped_by_peer:
            return FileDecline(self.id, self.reason)
        return None  # undecided, or the sender itself stopped it, or ended and being verified


# Events for the I/O layer and the interface ----------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send this control message to the peer."""

    message: Control


@dataclass(frozen=True)
class Reoffered:
    """The peer offered again a file this side is receiving (a resume): answer with resume_at()
    once everything received so far is written."""

    transfer: Incoming


@dataclass(frozen=True)
class Offered:
    """The peer offers a file: ask the person (or decide by the command line's options)."""

    transfer: Incoming


@dataclass(frozen=True)
class Accepted:
    """The peer accepted one of our offers (again, after a resume): read and hash from transfer.next_offset."""

    transfer: Outgoing


@dataclass(frozen=True)
class DataReceived:
    """File bytes at *offset* for an accepted transfer: write them."""

    transfer: Incoming
    offset: int
    data: memoryview


@dataclass(frozen=True)
class Ended:
    """All data received; compare the hashes, then call transfer.verified()."""

    transfer: Incoming


@dataclass(frozen=True)
class Progress:
    """The peer acknowledged writing more of our file."""

    transfer: Outgoing


@dataclass(frozen=True)
class Finished:
    """A transfer is over: see transfer.state (DONE, FAILED, STOPPED) and transfer.reason."""

    transfer: Outgoing | Incoming


Event = Send | Offered | Reoffered | Accepted | DataReceived | Ended | Progress | Finished


class Transfers:
    """Every transfer of one conversation, both directions; survives link losses."""

    def __init__(self) -> None:
        self.outgoing: dict[int, Outgoing] = {}
        self.incoming: dict[int, Incoming] = {}
        self._next_id = 1

    # -- this side's actions ------------------------------------------------------------

    def offer(self, name: str, size: int) -> tuple[Outgoing, FileOffer]:
        """A new outgoing transfer and its file_offer."""
        if not 0 <= size <= MAX_SIZE:
            raise ValueError("file too large")
        if self._next_id > MAX_TRANSFER_ID or len(self.outgoing) >= MAX_TRANSFERS:
            raise ValueError("too many transfers in one conversation")
        transfer = Outgoing(self._next_id, name, size)
        self._next_id += 1
        self.outgoing[transfer.id] = transfer
        return transfer, FileOffer(transfer.id, name, size)

    def link_lost(self) -> None:
        """The connection dropped: senders pause until the receiver confirms an offset again."""
        for transfer in self.outgoing.values():
            if transfer.state in (State.ACTIVE, State.ENDED):
                transfer.state = State.PAUSED
        for incoming in self.incoming.values():
            incoming.resuming = False  # the next link's repeated offer gets its own answer

    def link_up(self) -> list[FileOffer]:
        """A (resumed) connection is up: every unfinished offer goes out again."""
        return [
            FileOffer(transfer.id, transfer.name, transfer.size)
            for transfer in self.outgoing.values()
            if transfer.state not in FINAL
        ]

    def sending(self) -> Outgoing | None:
        """The transfer whose data goes next: the oldest that may send (one at a time, in order)."""
        for transfer in self.outgoing.values():
            if transfer.next_chunk() is not None or transfer.all_sent:
                return transfer
        return None

    @property
    def busy(self) -> bool:
        """Some transfer is not over yet."""
        states = [t.state for t in self.outgoing.values()] + [t.state for t in self.incoming.values()]
        return any(state not in FINAL for state in states)

    def forget_incoming(self) -> list[Incoming]:
        """The peer restarted (a new conversation): its offers are void, its ids free again."""
        old = list(self.incoming.values())
        self.incoming = {}
        return old

    # -- the peer's messages ------------------------------------------------------------

    def receive(self, message: FileMessage) -> list[Event]:
        """What a file message from the peer means. MessageError if it breaks the protocol."""
        if isinstance(message, FileData):
            return self._data(message)
        if isinstance(message, FileOffer):
            return self._offer(message)
        if isinstance(message, FileCancel):
            incoming = self._incoming(message.id, message)
            if incoming.state in FINAL or incoming.state is State.ENDED:
                return []  # over, or too late: the verdict is on its way
            incoming.state = State.STOPPED
            incoming.reason = message.reason
            incoming.stopped_by_peer = True
            return [Finished(incoming)]
        if isinstance(message, FileEnd):
            return self._end(message)
        transfer = self._outgoing(message.id, message)
        if isinstance(message, FileAccept):
            return self._accept(transfer, message)
        if isinstance(message, FileAck):
            if transfer.state in FINAL:
                return []
            if not transfer.acked <= message.offset <= transfer.next_offset:
                raise MessageError("the peer acknowledged file data that was not sent")
            transfer.acked = message.offset
            return [Progress(transfer)]
        if isinstance(message, FileDecline):
            if transfer.state in FINAL:
                return []
            transfer._stop(message.reason, by_peer=True)
            return [Finished(transfer)]
        assert isinstance(message, FileResult)
        if transfer.state in FINAL:
            return []
        if transfer.state not in (State.ENDED, State.PAUSED) or transfer.next_offset != transfer.size:
            raise MessageError("the peer sent a file_result before the file was sent")
        transfer.state = State.DONE if message.ok else State.FAILED
        transfer.acked = transfer.size if message.ok else transfer.acked
        return [Finished(transfer)]

    def _outgoing(self, transfer_id: int, message: FileMessage) -> Outgoing:
        transfer = self.outgoing.get(transfer_id)
        if transfer is None:
            raise MessageError(f"the peer sent {type(message).__name__} for a file this side never offered")
        return transfer

    def _incoming(self, transfer_id: int, message: FileMessage) -> Incoming:
        transfer = self.incoming.get(transfer_id)
        if transfer is None:
            raise MessageError(f"the peer sent {type(message).__name__} for a file it never offered")
        return transfer

    def _offer(self, message: FileOffer) -> list[Event]:
        known = self.incoming.get(message.id)
        if known is not None:
            if (known.name, known.size) != (message.name, message.size):
                raise MessageError("the peer offered a different file under a transfer id already in use")
            if known.state is State.ACTIVE:
                if known.resuming:
                    return []  # offered again on this link already: one answer is on its way
                known.resuming = True
                return [Reoffered(known)]  # a repeated offer after a resume, in the middle of the file
            answer = known.current()  # a repeated offer after a resume
            return [Send(answer)] if answer is not None else []
        if len(self.incoming) >= MAX_TRANSFERS:
            raise MessageError("the peer offered too many files")
        transfer = Incoming(message.id, message.name, message.size)
        self.incoming[message.id] = transfer
        return [Offered(transfer)]

    def _accept(self, transfer: Outgoing, message: FileAccept) -> list[Event]:
        if transfer.state in FINAL:
            return []
        if message.offset > transfer.size:
            raise MessageError("the peer asked for file data beyond the end of the file")
        if transfer.state is State.ACTIVE:
            raise MessageError("the peer accepted a file twice")
        transfer.state = State.ACTIVE
        transfer.next_offset = transfer.acked = transfer.start_offset = message.offset
        return [Accepted(transfer)]

    def _data(self, message: FileData) -> list[Event]:
        transfer = self._incoming(message.id, message)
        if transfer.state is State.STOPPED:
            return []  # stopped by this side while the data was on its way
        if transfer.state is not State.ACTIVE:
            raise MessageError("the peer sent file data for a transfer not accepted or already ended")
        if transfer.resuming:
            raise MessageError("the peer sent file data before its repeated offer was answered")
        length = len(message.data)
        if message.offset != transfer.received:
            raise MessageError("the peer sent file data out of order")
        if message.offset + length > transfer.size:
            raise MessageError("the peer sent more file data than it offered")
        if message.offset + length - transfer.acked > WINDOW:
            raise MessageError("the peer sent file data beyond the flow-control window")
        transfer.received += length
        return [DataReceived(transfer, message.offset, message.data)]

    def _end(self, message: FileEnd) -> list[Event]:
        transfer = self._incoming(message.id, message)
        if transfer.state is not State.ACTIVE:
            if transfer.state is State.OFFERED:
                raise MessageError("the peer ended a file transfer that was not accepted")
            return []  # stopped, or a repeat after a resume
        if transfer.resuming:
            raise MessageError("the peer ended a file transfer before its repeated offer was answered")
        if transfer.received != transfer.size:
            raise MessageError("the peer ended a file transfer before sending all of it")
        transfer.state = State.ENDED
        transfer.sha256 = message.sha256
        return [Ended(transfer)]
