"""The interactive interface (stdin is a terminal), with prompt_toolkit. No crypto here.

Layout, top to bottom: a status bar; the conversation, newest line last; the
input line, always on the bottom row. Messages arrive from the receiver thread
through :meth:`ChatUI.on_event`, which hands them to the interface's event loop
(``call_soon_threadsafe``), so a half-typed line is never disturbed.
The conversation lives in memory only, and only its last MAX_LINES lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.data_structures import Point
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import Dimension, HSplit, Layout, Window
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.output.color_depth import ColorDepth
from prompt_toolkit.styles import Style

from ..events import ChatEvent, Delivered, Ending, LinkFailed, PeerLeft, Received
from .sanitize import clean_text, preview

MAX_LINES = 5000  # conversation lines kept on screen; older ones are forgotten, never written anywhere
INPUT_MAX_ROWS = 8  # the input grows with Alt+Enter up to this many rows, then scrolls

# Names get one of these, chosen from their key, so a colour means the same person every run.
COLOURS = (
    "ansired",
    "ansigreen",
    "ansiyellow",
    "ansiblue",
    "ansimagenta",
    "ansicyan",
    "ansibrightred",
    "ansibrightgreen",
    "ansibrightyellow",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
)

STYLE = Style.from_dict(
    {
        "status": "reverse",
        "status.warn": "reverse bold",
        "time": "ansibrightblack",
        "system": "italic",
        "warning": "bold ansired",
        "pending": "ansibrightblack",
        "prompt": "bold",
    }
)

HELP = [
    "/me ACTION      say what you do: * name ACTION",
    "/quit, /exit    leave the chat (Ctrl-D on an empty line does too)",
    "/help           this list",
    "//text          send a line that starts with /",
    "Alt+Enter adds a line; Up and Down recall what you typed; PageUp and PageDown scroll.",
]


class ChatLink(Protocol):
    def send_text(self, text: str, action: bool = False) -> list[int]: ...
    def unacknowledged(self) -> dict[int, str]: ...
    def unacknowledged_count(self) -> int: ...


@dataclass(frozen=True)
class Person:
    name: str  # already cleaned for display
    colour: int  # index into COLOURS


@dataclass
class _Line:
    fragments: StyleAndTextTuples
    pending: bool = False  # one of our texts the peer has not acknowledged yet


@dataclass
class ChatUI:
    """The full-screen chat; :meth:`run` returns how it ended."""

    link: ChatLink
    me: Person
    peer: Person
    trust: Callable[[], str]  # "verified", "unverified" or "new", shown in the status bar
    commands: dict[str, Callable[[str], list[str]]] = field(default_factory=dict)  # e.g. /verify
    ended: ChatEvent | None = None
    _lines: deque[_Line] = field(default_factory=lambda: deque(maxlen=MAX_LINES))
    _by_id: dict[int, list[_Line]] = field(default_factory=dict)
    _inbox: list[ChatEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _scroll_back: int = 0

    def __post_init__(self) -> None:
        self._input = Buffer(history=InMemoryHistory(), multiline=True)
        self._app: Application[Ending] = Application(
            layout=Layout(
                HSplit(
                    [
                        Window(FormattedTextControl(self._status), height=1, style="class:status"),
                        Window(),  # an empty filler: the conversation sits on the input line, as in chat apps
                        Window(
                            FormattedTextControl(self._conversation, get_cursor_position=self._last_line),
                            wrap_lines=True,
                            always_hide_cursor=True,
                            dont_extend_height=True,
                        ),
                        Window(
                            BufferControl(self._input, input_processors=[BeforeInput("> ", style="class:prompt")]),
                            height=Dimension(min=1, max=INPUT_MAX_ROWS),
                            dont_extend_height=True,
                            wrap_lines=True,
                        ),
                    ]
                ),
                focused_element=self._input,
            ),
            key_bindings=self._key_bindings(),
            style=STYLE,
            full_screen=True,
            color_depth=ColorDepth.DEPTH_1_BIT if os.environ.get("NO_COLOR") else None,
        )

    # -- the receiver thread's door --------------------------------------------

    def on_event(self, event: ChatEvent) -> None:
        """Called from the receiver thread: queue *event* for the interface's loop."""
        with self._lock:
            self._inbox.append(event)
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: the interface is gone
                loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            events, self._inbox = self._inbox, []
        for event in events:
            self._show_event(event)
        self._app.invalidate()

    def _show_event(self, event: ChatEvent) -> None:
        if isinstance(event, Received):
            self._add_message(self.peer, event.text, event.action)
        elif isinstance(event, Delivered):
            for line in self._by_id.pop(event.id, []):
                line.pending = False
        elif isinstance(event, (PeerLeft, LinkFailed)) and self.ended is None:
            self.ended = event
            if isinstance(event, PeerLeft):
                self.system(f"{self.peer.name} left the chat.")
            else:
                self.system(str(event.error), warning=True)
            undelivered = self.link.unacknowledged()
            for text in undelivered.values():
                self.system(f"not delivered: {preview(text, 60)}", warning=True)
            self.system("Press Enter to close.")

    # -- what the conversation shows ---------------------------------------------

    def system(self, text: str, warning: bool = False) -> None:
        """A line from p2pchat itself (joins, safety codes, warnings)."""
        style = "class:warning" if warning else "class:system"
        for part in text.split("\n"):
            self._lines.append(_Line([("class:time", time.strftime("%H:%M ")), (style, f"-- {part}")]))
        self._app.invalidate()

    def _add_message(self, who: Person, text: str, action: bool, ids: list[int] | None = None) -> None:
        stamp = time.strftime("%H:%M ")
        name_style = f"bold {COLOURS[who.colour % len(COLOURS)]}"
        head: StyleAndTextTuples = [("class:time", stamp)]
        head += [("", "* "), (name_style, who.name), ("", " ")] if action else [(name_style, who.name), ("", ": ")]
        indent = " " * sum(len(t) for _, t, *_ in head)
        new_lines = []
        for number, part in enumerate(clean_text(text).expandtabs(4).split("\n")):
            start: StyleAndTextTuples = head if number == 0 else [("", indent)]
            line = _Line([*start, ("", part)], pending=ids is not None)
            self._lines.append(line)
            new_lines.append(line)
        for message_id in ids or []:
            self._by_id.setdefault(message_id, []).extend(new_lines)

    def _conversation(self) -> StyleAndTextTuples:
        out: StyleAndTextTuples = []
        for number, line in enumerate(self._lines):
            if number:
                out.append(("", "\n"))
            if line.pending:
                out.extend(("class:pending " + style, text) for style, text, *_ in line.fragments)
            else:
                out.extend(line.fragments)
        return out

    def _last_line(self) -> Point:
        # The window scrolls to keep this "cursor" in view: the end of the newest line, or
        # further up while the reader has scrolled back.
        if not self._lines:
            return Point(0, 0)
        row = max(0, len(self._lines) - 1 - self._scroll_back)
        # The last character, not one past it: a line that fills the width exactly would show a blank row.
        return Point(max(0, sum(len(t) for _, t, *_ in self._lines[row].fragments) - 1), row)

    def _status(self) -> StyleAndTextTuples:
        if self.ended is None:
            state = "connected"
        elif isinstance(self.ended, PeerLeft):
            state = "left"
        else:
            state = "disconnected"
        waiting = self.link.unacknowledged_count()
        parts = [f" {self.peer.name}", state, self.trust(), f"{waiting} unacknowledged"]
        if self._scroll_back:
            parts.append("scrolled back (PageDown)")
        text = " · ".join(parts)
        style = "class:status.warn" if self.ended is not None else "class:status"
        return [(style, text), ("class:status", "  /help ")]

    # -- keys and commands --------------------------------------------------------

    def _key_bindings(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("enter")
        def _(event: KeyPressEvent) -> None:
            self._submit()

        @keys.add("escape", "enter")  # Alt+Enter
        def _(event: KeyPressEvent) -> None:
            self._input.insert_text("\n")

        @keys.add("c-d")
        def _(event: KeyPressEvent) -> None:
            if self.ended is not None or not self._input.text:
                self._app.exit(result=Ending.LINK_ENDED if self.ended is not None else Ending.QUIT)
            else:
                self._input.delete()

        @keys.add("c-c")
        def _(event: KeyPressEvent) -> None:
            self._app.exit(result=Ending.LINK_ENDED if self.ended is not None else Ending.INTERRUPTED)

        @keys.add("pageup")
        def _(event: KeyPressEvent) -> None:
            self._scroll_back = min(len(self._lines) - 1, self._scroll_back + self._page())

        @keys.add("pagedown")
        def _(event: KeyPressEvent) -> None:
            self._scroll_back = max(0, self._scroll_back - self._page())

        return keys

    def _page(self) -> int:
        return max(1, self._app.output.get_size().rows - 3)

    def _submit(self) -> None:
        if self.ended is not None:
            self._app.exit(result=Ending.LINK_ENDED)
            return
        text = self._input.text
        if not text.strip():
            return
        self._input.reset(append_to_history=True)
        self._scroll_back = 0
        if text.startswith("/") and not text.startswith("//"):
            self._command(text)
        else:
            self._send(text.removeprefix("/"), action=False)

    def _command(self, line: str) -> None:
        command, _, argument = line.partition(" ")
        if command in ("/quit", "/exit"):
            self._app.exit(result=Ending.QUIT)
        elif command == "/help":
            for entry in HELP + [f"{name}" for name in sorted(self.commands)]:
                self.system(entry)
        elif command == "/me" and argument.strip():
            self._send(argument.strip(), action=True)
        elif command in self.commands:
            for reply in self.commands[command](argument.strip()):
                self.system(reply)
        else:
            self.system(f"unknown command {command}: /help lists them", warning=True)

    def _send(self, text: str, action: bool) -> None:
        ids = self.link.send_text(text, action)
        self._add_message(self.me, text, action, ids)

    # -- running ---------------------------------------------------------------------

    def run(self) -> Ending:
        """Show the chat until the user leaves or the link ends and the user closes it."""

        def started() -> None:
            with self._lock:
                self._loop = asyncio.get_running_loop()
            self._drain()

        try:
            return self._app.run(pre_run=started)
        finally:
            with self._lock:
                self._loop = None
