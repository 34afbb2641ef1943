"""Benchmark row: the time to show one incoming message with 5,000 lines on screen.

:func:`render_5000_lines` builds the real interface on a fake 80x24 terminal
(output into memory, no pty), fills it with MAX_LINES lines, then times the
work one incoming message costs: adding it, and prompt_toolkit rendering the
whole screen. Returns the median in seconds. ``bench.py`` reports it as
``render_5000_lines_s``.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import time

from prompt_toolkit.application.current import create_app_session, set_app
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import DummyInput
from prompt_toolkit.output.vt100 import Vt100_Output

from ..events import Received
from .transcript import MAX_LINES
from .ui import ChatUI, Person

TEXT = "the quick brown fox jumps over the lazy dog, then some more words to wrap"


class _Link:
    def send_text(self, text: str, action: bool = False) -> list[int]:
        return []

    def unacknowledged(self) -> dict[int, str]:
        return {}

    def unacknowledged_count(self) -> int:
        return 0


def render_5000_lines(runs: int = 50, columns: int = 80, rows: int = 24, lines: int = MAX_LINES) -> float:
    """Median seconds to add one incoming message and redraw, with MAX_LINES lines held."""
    return asyncio.run(_measure(runs, columns, rows, lines))


async def _measure(runs: int, columns: int, rows: int, lines: int) -> float:
    output = Vt100_Output(io.StringIO(), lambda: Size(rows=rows, columns=columns), term="xterm-256color")
    with create_app_session(input=DummyInput(), output=output):
        ui = ChatUI(_Link(), Person("me", 0), Person("peer", 1), trust=lambda: "verified", bell=False)
        app = ui._app
        with set_app(app):
            for number in range(lines):
                ui._show_event(Received(number, f"{number} {TEXT}"))
            app.renderer.render(app, app.layout)
            times = []
            for number in range(runs):
                start = time.perf_counter()
                ui._show_event(Received(MAX_LINES + number, f"new {number} {TEXT}"))
                app.renderer.render(app, app.layout)
                times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    print(f"render_5000_lines_s {render_5000_lines():.6f}")
