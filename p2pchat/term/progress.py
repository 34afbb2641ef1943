"""A transfer's progress in words: percent, size, rate and time left (pure: the caller gives the clock)."""

from __future__ import annotations

from ..link.filetransfer import human_size

SETTLE = 0.5  # seconds of a transfer before its rate means anything


class Meter:
    """Turns the progress events of numbered transfers into lines; remembers when each started."""

    def __init__(self) -> None:
        self._start: dict[int, tuple[float, int]] = {}  # number -> (time, bytes) when the count began
        self._last: dict[int, int] = {}  # number -> bytes done at the last call

    def line(self, number: int, done: int, size: int, now: float) -> str:
        """``45% of 2.3 MB, 12.3 MB/s, 8 s left`` (rate and time left once they mean something)."""
        if done < self._last.get(number, 0):  # continued from an earlier offset after a lost link: count afresh
            del self._start[number]
        self._last[number] = done
        start_time, start_bytes = self._start.setdefault(number, (now, done))
        percent = 100 * done // size if size else 100
        words = f"{percent}% of {human_size(size)}"
        elapsed = now - start_time
        if elapsed >= SETTLE and done > start_bytes:
            rate = (done - start_bytes) / elapsed
            words += f", {human_size(int(rate))}/s, {duration((size - done) / rate)} left"
        return words

    def forget(self, number: int) -> None:
        self._start.pop(number, None)
        self._last.pop(number, None)


def duration(seconds: float) -> str:
    """``8 s``, ``3 min``, ``1 h 05 min``: as precise as a person needs."""
    whole = int(seconds + 0.5)
    if whole < 100:
        return f"{whole} s"
    minutes = (whole + 30) // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
