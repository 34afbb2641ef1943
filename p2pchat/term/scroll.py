"""Scrolling the conversation by screen rows, and counting what arrived below the view. Pure.

The view is described by *offset*: how many rows lie between its bottom and
the newest row (0: following the conversation). While scrolled up the bottom
row of the view is a marker (``↓ 3 new``), so the view shows one row less.
New rows do not move a scrolled view: the offset grows with them.
"""

from __future__ import annotations

from dataclasses import dataclass

WHEEL_ROWS = 3  # rows per mouse-wheel step, as most terminals scroll


@dataclass
class Scroll:
    offset: int = 0  # rows below the view
    unseen: int = 0  # messages that arrived below the view since it left the bottom

    @property
    def scrolled(self) -> bool:
        return self.offset > 0

    @staticmethod
    def _room(height: int) -> int:
        return max(1, height - 1)  # rows of conversation while the marker takes the bottom row

    def _limit(self, total: int, height: int) -> int:
        return 0 if total <= height else max(0, total - self._room(height))

    def _set(self, offset: int, total: int, height: int) -> None:
        self.offset = max(0, min(offset, self._limit(total, height)))
        if not self.offset:
            self.unseen = 0

    def page_up(self, total: int, height: int) -> None:
        """Up by a page of rows (keeping one row of the old view for context), from the first press."""
        self._set(self.offset + max(1, self._room(height) - 1), total, height)

    def page_down(self, total: int, height: int) -> None:
        self._set(self.offset - max(1, self._room(height) - 1), total, height)

    def wheel(self, rows: int, total: int, height: int) -> None:
        """Positive *rows* scroll up (back in time)."""
        self._set(self.offset + rows, total, height)

    def home(self, total: int, height: int) -> None:
        self._set(self._limit(total, height), total, height)

    def end(self) -> None:
        self.offset = 0
        self.unseen = 0

    def added(self, rows: int, messages: int) -> None:
        """*rows* new rows at the bottom, holding *messages* messages from the peer."""
        if self.offset:
            self.offset += rows
            self.unseen += messages

    def resized(self, total: int, height: int) -> None:
        """The total or the height changed (old lines dropped, window resized): stay in range."""
        if self.offset:
            self._set(self.offset, total, height)

    def window(self, total: int, height: int) -> tuple[int, int]:
        """Rows [start, end) of the conversation to show in *height* rows (the marker not counted)."""
        end = max(0, total - self.offset)
        room = self._room(height) if self.offset else height
        return max(0, end - room), end

    def marker(self) -> str:
        """The bottom row's text while scrolled up."""
        if self.unseen:
            return f"↓ {self.unseen} new (End)"
        return "↓ more below (End)"
