"""What the network layer tells an interface, as plain data (no crypto, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import P2PChatError


@dataclass(frozen=True)
class Received:
    """The peer sent a text (already acknowledged to the peer)."""

    id: int
    text: str
    action: bool = False


@dataclass(frozen=True)
class Delivered:
    """The peer acknowledged our text *id*."""

    id: int


@dataclass(frozen=True)
class PeerLeft:
    """The peer ended the chat with bye."""


@dataclass(frozen=True)
class LinkFailed:
    """The connection ended badly; *error* says how (and carries the exit code)."""

    error: P2PChatError


@dataclass(frozen=True)
class PeerDone:
    """The peer has said all it will say (its input ended); it still receives and acknowledges."""


@dataclass(frozen=True)
class LinkDown:
    """The connection under the chat was lost; the chat waits to resume, nothing is lost yet.

    *reason* is one line for people ("no data for 45 s", "connection reset");
    *at* is the wall-clock time (time.time()) the loss was noticed.
    """

    reason: str
    at: float


@dataclass(frozen=True)
class Reconnecting:
    """The dialer will try attempt number *attempt* in *delay* seconds."""

    attempt: int
    delay: float


@dataclass(frozen=True)
class WaitingForPeer:
    """The listener keeps its port open and waits for the peer to call back, until *until* (time.time())."""

    until: float


@dataclass(frozen=True)
class LinkUp:
    """The chat resumed over a new connection: a fresh handshake that proved the same peer key.

    *resent* of our texts were sent again; *at* is the wall-clock time.
    """

    at: float
    resent: int


@dataclass(frozen=True)
class PeerRestarted:
    """The peer's program started a new chat (same key): our texts it had not acknowledged are lost.

    *undelivered* lists them (id, text) in order; the chat goes on with the new conversation.
    """

    undelivered: tuple[tuple[int, str], ...]


# What the link layer says about the connection under a chat that outlives connections.
LinkStateEvent = LinkDown | Reconnecting | WaitingForPeer | LinkUp | PeerRestarted


@dataclass(frozen=True)
class FileNotice:
    """A line about a file transfer (an offer, an outcome), shown as a line from p2pchat.

    An empty text shows nothing: the status bar's transfer progress changed.
    """

    text: str
    warning: bool = False


ChatEvent = Received | Delivered | PeerLeft | PeerDone | LinkFailed | LinkStateEvent | FileNotice


class Ending(Enum):
    """How an interface stopped."""

    QUIT = "quit"  # our side is done (/quit, Ctrl-D, end of stdin): wait for acks, then bye
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: bye at once
    LINK_ENDED = "link ended"  # the peer left or the link failed: nothing more to say
