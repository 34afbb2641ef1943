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


ChatEvent = Received | Delivered | PeerLeft | LinkFailed


class Ending(Enum):
    """How an interface stopped."""

    QUIT = "quit"  # our side is done (/quit, Ctrl-D, end of stdin): wait for acks, then bye
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: bye at once
    LINK_ENDED = "link ended"  # the peer left or the link failed: nothing more to say
