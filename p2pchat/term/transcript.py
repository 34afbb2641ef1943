"""The conversation as the screen shows it: entries, their delivery marks, their rows at a width. Pure.

Our own lines carry a mark in a column of their own, which the peer's lines
leave blank, so the two can never be confused, even when both names are the
same and without colour: ``…`` pending, ``✓`` acknowledged, ``✗`` plus the words
``not delivered``. Our lines are labelled ``you``.

Memory is bounded: at most MAX_LINES lines (a message holding newlines counts
each), the oldest forgotten first. Rows are computed per entry and cached for
the current width, so a new message costs one entry's wrapping, not the whole
conversation's.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from .cells import unsure, width
from .wrap import Fragment, Row, wrap

MAX_LINES = 5000  # conversation lines kept; older ones are forgotten, never written anywhere
YOU = "you"  # how our own lines are labelled

PENDING, DELIVERED, FAILED = "…", "✓", "✗"
NOT_DELIVERED = "not delivered"


@dataclass(eq=False)
class Entry:
    """One message or one line from p2pchat itself."""

    stamp: str  # "HH:MM"
    text: str  # already cleaned for display, tabs expanded
    label: str = ""  # a message's sender as shown; "" for p2pchat's own lines
    label_style: str = ""
    mine: bool = False
    action: bool = False
    warning: bool = False
    waiting: set[int] = field(default_factory=set)  # our message ids not acknowledged yet
    failed: bool = False
    serial: int = 0
    _rows: tuple[int, list[Row]] | None = None  # (width, rows) cache

    @property
    def lines(self) -> int:
        return self.text.count("\n") + 1

    @property
    def mark(self) -> str:
        if not self.mine:
            return " "
        return FAILED if self.failed else PENDING if self.waiting else DELIVERED

    def fragments(self) -> tuple[list[Fragment], int]:
        """The entry as styled text, and the text column (cells) continuation rows are indented to."""
        time = ("class:time", self.stamp + " ")
        if not self.label:
            style = "class:warning" if self.warning else "class:system"
            return [time, (style, "-- " + self.text)], width(self.stamp) + 4
        pending = "class:pending " if self.mine and self.waiting else ""
        mark_style = "class:mark.failed" if self.failed else "class:mark"
        head: list[Fragment] = [time, (mark_style, self.mark), ("", " ")]
        if self.action:
            head += [("", "* "), (self.label_style, self.label), ("", " ")]
        else:
            head += [(self.label_style, self.label), ("", ": ")]
        column = sum(width(text) for _, text in head)
        body: list[Fragment] = [(pending, self.text)]
        if self.failed:
            body.append(("class:warning", f"  ({NOT_DELIVERED})"))
        return head + body, column

    def rows(self, width: int) -> list[Row]:
        if self._rows is None or self._rows[0] != width:
            fragments, column = self.fragments()
            # prompt_toolkit returns to the last column with "\r" and a move right: after an emoji
            # sequence the terminal measured differently, that would tear the row; keep clear of it.
            room = width - 1 if width > 20 and any(unsure(text) for _, text in fragments) else width
            self._rows = (width, wrap(fragments, room, column))
        return self._rows[1]

    def changed(self) -> None:
        self._rows = None

    def plain(self, width: int) -> list[str]:
        return ["".join(text for _, text in row).rstrip() for row in self.rows(width)]


class Transcript:
    """The entries on screen, newest last, with row counts kept for one width at a time."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.max_lines = max_lines
        self.entries: deque[Entry] = deque()
        self._lines = 0
        self._by_id: dict[int, Entry] = {}
        self._serials = itertools.count(1)
        self.printed = 0  # serial of the newest entry written to the terminal's scrollback
        self._width = 0
        self._total = 0  # rows at self._width

    def add(self, entry: Entry) -> int:
        """Append *entry*; return how many rows were dropped from the top to stay bounded."""
        entry.serial = next(self._serials)
        self.entries.append(entry)
        self._lines += entry.lines
        for message_id in entry.waiting:
            self._by_id[message_id] = entry
        if self._width:
            self._total += len(entry.rows(self._width))
        dropped = 0
        while self._lines > self.max_lines and len(self.entries) > 1:
            old = self.entries.popleft()
            self._lines -= old.lines
            for message_id in old.waiting:
                self._by_id.pop(message_id, None)
            if self._width:
                rows = len(old.rows(self._width))
                self._total -= rows
                dropped += rows
        return dropped

    def delivered(self, message_id: int) -> Entry | None:
        """The peer acknowledged *message_id*: the entry, if its mark changed."""
        entry = self._by_id.pop(message_id, None)
        if entry is None:
            return None
        entry.waiting.discard(message_id)
        if entry.waiting:
            return None
        self._changed(entry)
        return entry

    def undelivered(self, message_ids: set[int]) -> list[Entry]:
        """These ids will never be acknowledged: their entries say so."""
        out = []
        for message_id in message_ids:
            entry = self._by_id.pop(message_id, None)
            if entry is not None and not entry.failed:
                entry.failed = True
                self._changed(entry)
                out.append(entry)
        return out

    def _changed(self, entry: Entry) -> None:
        before = len(entry.rows(self._width)) if self._width else 0
        entry.changed()
        if self._width:
            self._total += len(entry.rows(self._width)) - before

    def total(self, width: int) -> int:
        """Rows of the whole conversation at *width*."""
        if width != self._width:
            self._width = width
            self._total = sum(len(entry.rows(width)) for entry in self.entries)
        return self._total

    def rows(self, width: int, start: int, end: int) -> list[Row]:
        """Rows [start, end) at *width*, walking from the newest entry (the usual view is near it)."""
        total = self.total(width)
        out: list[Row] = []
        position = total
        for entry in reversed(self.entries):
            if position <= start:
                break
            rows = entry.rows(width)
            top = position - len(rows)
            if top < end:
                out[:0] = rows[max(0, start - top) : min(len(rows), end - top)]
            position = top
        return out

    def to_print(self, width: int, screenful: int) -> list[str]:
        """Plain rows to write to the scrollback: every entry not printed yet, and at least a screenful.

        Marks them printed.
        """
        chosen: list[Entry] = []
        rows = 0
        for entry in reversed(self.entries):
            if entry.serial <= self.printed and rows >= screenful:
                break
            chosen.append(entry)
            rows += len(entry.rows(width))
        if self.entries:
            self.printed = self.entries[-1].serial
        return [line for entry in reversed(chosen) for line in entry.plain(width)]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)
