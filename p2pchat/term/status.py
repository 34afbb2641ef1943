"""The status bar: the connection's state from the link's events, and a layout that degrades by priority.

Both pure. :func:`advance` folds the link layer's events into a
:class:`LinkState`; :func:`state_words` says it in words, long and short;
:func:`layout` fits segments into a width measured in display cells, dropping
the least important first (connection state, then the peer's name, then the
pending count and verification, then the /help hint).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..events import (
    ChatEvent,
    LinkDown,
    LinkFailed,
    LinkUp,
    PeerDone,
    PeerLeft,
    PeerRestarted,
    Reconnecting,
    WaitingForPeer,
)
from .cells import cut, width

SEPARATOR = " · "
MIN_NAME_CELLS = 4  # a name cut shorter than this says nothing: leave it out


@dataclass(frozen=True)
class LinkState:
    """Where the connection under the chat stands."""

    kind: str = "connected"  # connected | lost | reconnecting | waiting | left | failed
    reason: str = ""  # why it was lost, or how it failed
    attempt: int = 0  # reconnecting: the attempt coming next
    retry_at: float = 0.0  # reconnecting: when (time.time())
    until: float = 0.0  # waiting: how long the listener waits (time.time())
    peer_done: bool = False  # the peer's input ended; it still receives

    @property
    def ended(self) -> bool:
        return self.kind in ("left", "failed")


def advance(state: LinkState, event: ChatEvent, now: float | None = None) -> LinkState:
    """The state after *event*; events that say nothing about the link leave it as it is."""
    now = time.time() if now is None else now
    if state.ended:
        return state  # an ended chat stays ended
    if isinstance(event, LinkDown):
        return replace(state, kind="lost", reason=event.reason)
    if isinstance(event, Reconnecting):
        return replace(state, kind="reconnecting", attempt=event.attempt, retry_at=now + event.delay)
    if isinstance(event, WaitingForPeer):
        return replace(state, kind="waiting", until=event.until)
    if isinstance(event, (LinkUp, PeerRestarted)):
        return replace(state, kind="connected", reason="")
    if isinstance(event, PeerDone):
        return replace(state, peer_done=True)
    if isinstance(event, PeerLeft):
        return replace(state, kind="left")
    if isinstance(event, LinkFailed):
        return replace(state, kind="failed", reason=str(event.error))
    return state


def state_words(state: LinkState, peer: str, now: float | None = None) -> tuple[str, ...]:
    """The state in words, longest first; the layout takes the longest that fits."""
    now = time.time() if now is None else now
    if state.kind == "reconnecting":
        left = math.ceil(state.retry_at - now)
        when = f"in {left} s" if left > 0 else "now"
        return (
            f"connection lost, reconnecting {when} (attempt {state.attempt})",
            f"reconnecting {when} (attempt {state.attempt})",
            f"reconnecting {when}",
            "reconnecting",
        )
    if state.kind == "lost":
        return ("connection lost", "lost")
    if state.kind == "waiting":
        return (f"waiting for {peer} to come back", "waiting for peer", "waiting")
    if state.kind == "left":
        return (f"{peer} left", "peer left", "left")
    if state.kind == "failed":
        return ("disconnected",)
    if state.peer_done:
        return (f"connected, {peer} has finished", "connected, peer done", "connected")
    return ("connected",)


@dataclass(frozen=True)
class Segment:
    """One piece of the bar: its importance (1 first), its texts longest first, its style."""

    priority: int
    texts: tuple[str, ...]
    style: str = ""
    cuttable: bool = False  # may be cut with "…" when no text fits whole


def layout(segments: Sequence[Segment], cells: int, right: Segment | None = None) -> list[tuple[str, str]]:
    """Fragments filling exactly *cells* cells: the segments that fit, by priority, in their order.

    *right* (a hint) is right-aligned, and shown only if room is left after all the others.
    """
    budget = cells - 2  # one space of margin on each side
    chosen: dict[int, str] = {}
    for index in sorted(range(len(segments)), key=lambda i: segments[i].priority):
        segment = segments[index]
        gap = width(SEPARATOR) if chosen else 0
        room = budget - gap
        text = next((t for t in segment.texts if t and width(t) <= room), None)
        if text is None and segment.texts and (segment.cuttable or not chosen):
            # The most important segment is always shown, cut if it must be; a cuttable one when useful.
            shortest = min(segment.texts, key=width)
            if not chosen or room >= MIN_NAME_CELLS:
                text = cut(shortest, max(0, room)) or None
        if text is not None:
            chosen[index] = text
            budget -= gap + width(text)
    out: list[tuple[str, str]] = [("", " ")]
    for number, index in enumerate(sorted(chosen)):
        if number:
            out.append(("", SEPARATOR))
        out.append((segments[index].style, chosen[index]))
    used = sum(width(text) for _, text in out)
    if right is not None and right.texts and used + 2 + width(right.texts[0]) + 1 <= cells:
        out.append(("", " " * (cells - used - width(right.texts[0]) - 1)))
        out.append((right.style, right.texts[0]))
        out.append(("", " "))
    elif cells > used:
        out.append(("", " " * (cells - used)))
    return out
