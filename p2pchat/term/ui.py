"""The interactive interface (stdin and stdout are terminals), with prompt_toolkit. No crypto here.

Layout, top to bottom: a status bar; the conversation, newest line last; the
input line, always on the bottom rows. Messages arrive from the receiver thread
through :meth:`ChatUI.on_event`, which hands them to the interface's event loop
(``call_soon_threadsafe``), so a half-typed line is never disturbed.

The pieces with rules in them are pure modules of their own: :mod:`.transcript`
(entries, marks, rows), :mod:`.wrap`, :mod:`.scroll`, :mod:`.status`,
:mod:`.commands`. This module only wires them to prompt_toolkit. When the
interface closes, for any reason, the conversation's last screenful and every
line not printed before go to the terminal's normal scrollback, then a draft
left in the input line (``not sent: ...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prompt_toolkit.application import Application, run_in_terminal
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input.ansi_escape_sequences import ANSI_SEQUENCES
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import Dimension, HSplit, Layout, Window
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl, UIContent, UIControl
from prompt_toolkit.layout.processors import TabsProcessor
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType
from prompt_toolkit.output.color_depth import ColorDepth
from prompt_toolkit.styles import Style

from ..events import (
    ChatEvent,
    Delivered,
    Ending,
    FileNotice,
    LinkDown,
    LinkFailed,
    LinkUp,
    PeerDone,
    PeerLeft,
    PeerRestarted,
    Received,
    Reconnecting,
)
from . import cells, commands
from .sanitize import clean_text, preview
from .scroll import WHEEL_ROWS, Scroll
from .status import LinkState, Segment, advance, layout, state_words
from .transcript import MAX_LINES, YOU, Entry, Transcript

if TYPE_CHECKING:
    from prompt_toolkit.key_binding.key_bindings import NotImplementedOrNone

__all__ = ["COLOURS", "MAX_LINES", "ChatUI", "Person"]

INPUT_MAX_ROWS = 8  # the input grows with Alt+Enter up to this many rows, then scrolls
TITLE = "p2pchat — {peer}"

# Focus reports (xterm's mode 1004): prompt_toolkit has no key for them, so they borrow two keys
# no keyboard sends. Terminals without focus reports never send them: focus then stays unknown.
FOCUS_IN, FOCUS_OUT = Keys.ControlF23, Keys.ControlF24
ANSI_SEQUENCES.setdefault("\x1b[I", FOCUS_IN)
ANSI_SEQUENCES.setdefault("\x1b[O", FOCUS_OUT)

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
        "mark": "bold",
        "mark.failed": "bold ansired",
        "me": "bold underline",
        "marker": "reverse",
        "prompt": "bold",
    }
)


class ChatLink(Protocol):
    def send_text(self, text: str, action: bool = False) -> list[int]: ...
    def unacknowledged(self) -> dict[int, str]: ...
    def unacknowledged_count(self) -> int: ...


@dataclass(frozen=True)
class Person:
    name: str  # already cleaned for display
    colour: int  # index into COLOURS


class _Conversation(UIControl):
    """The conversation's visible rows, computed for the window's width and height only."""

    def __init__(self, transcript: Transcript, scroll: Scroll) -> None:
        self.transcript = transcript
        self.scroll = scroll
        self.width = 80
        self.height = 20

    def preferred_height(self, width: int, max_available_height: int, *_: object) -> int:
        # Only as tall as the conversation: until the screen fills, it sits right on the input line.
        return min(max_available_height, self.transcript.total(width) + (1 if self.scroll.scrolled else 0))

    def create_content(self, width: int, height: int) -> UIContent:
        self.width, self.height = width, height
        total = self.transcript.total(width)
        self.scroll.resized(total, height)
        start, end = self.scroll.window(total, height)
        rows: list[StyleAndTextTuples] = list(self.transcript.rows(width, start, end))  # type: ignore[arg-type]
        if self.scroll.scrolled:
            marker = self.scroll.marker()
            rows.append([("class:marker", marker + " " * max(0, width - cells.width(marker)))])
        return UIContent(get_line=lambda i: rows[i], line_count=len(rows), show_cursor=False)

    def mouse_handler(self, mouse_event: MouseEvent) -> NotImplementedOrNone:
        total = self.transcript.total(self.width)
        if mouse_event.event_type == MouseEventType.SCROLL_UP:
            self.scroll.wheel(WHEEL_ROWS, total, self.height)
        elif mouse_event.event_type == MouseEventType.SCROLL_DOWN:
            self.scroll.wheel(-WHEEL_ROWS, total, self.height)
        else:
            return NotImplemented
        return None


@dataclass
class ChatUI:
    """The full-screen chat; :meth:`run` returns how it ended."""

    link: ChatLink
    me: Person
    peer: Person
    trust: Callable[[], str]  # "verified", "unverified" or "new", shown in the status bar
    commands: dict[str, Callable[[str], list[str]]] = field(default_factory=dict)  # e.g. /verify
    bell: bool = True
    # Tab after "/command ": candidates for the argument typed so far (e.g. /send completes paths).
    completers: dict[str, Callable[[str], list[str]]] = field(default_factory=dict)
    activity: Callable[[], str] = lambda: ""  # a short status-bar segment (file transfer progress)
    ended: ChatEvent | None = None
    state: LinkState = field(default_factory=LinkState)
    _inbox: list[ChatEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _focused: bool | None = None  # None: the terminal never said
    _unread: int = 0  # messages that came in while unfocused
    _title: str = ""
    _tick: asyncio.TimerHandle | None = None
    _was_unsure: bool = False

    def __post_init__(self) -> None:
        self.transcript = Transcript()
        self.scroll = Scroll()
        self._view = _Conversation(self.transcript, self.scroll)
        self._input = Buffer(history=InMemoryHistory(), multiline=True)
        self._app: Application[Ending] = Application(
            layout=Layout(
                HSplit(
                    [
                        Window(FormattedTextControl(self._status), height=1, style="class:status"),
                        Window(),  # an empty filler: the conversation sits on the input line, as in chat apps
                        Window(self._view, dont_extend_height=True, always_hide_cursor=True),
                        Window(
                            BufferControl(self._input, input_processors=[TabsProcessor()]),
                            get_line_prefix=_prompt,
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
            mouse_support=True,
            before_render=lambda app: self._before_render(),
            after_render=lambda app: self._after_render(),
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
        self.state = advance(self.state, event)
        if isinstance(event, Received):
            self._add(
                Entry(_stamp(), _display(event.text), self.peer.name, _name_style(self.peer), action=event.action)
            )
            if self._focused is False:
                self._unread += 1
            if self.bell and self._focused is not True:
                self._app.output.bell()
        elif isinstance(event, FileNotice) and event.text:  # an empty one only redraws (progress)
            self.system(event.text, event.warning)
        elif isinstance(event, Delivered):
            self.transcript.delivered(event.id)
        elif isinstance(event, LinkDown):
            self.system(f"connection lost: {event.reason}; your messages wait", warning=True, at=event.at)
        elif isinstance(event, LinkUp):
            again = f"; {event.resent} of your messages sent again" if event.resent else ""
            self.system(f"connection resumed{again}", at=event.at)
        elif isinstance(event, PeerRestarted):
            self.transcript.undelivered({message_id for message_id, _ in event.undelivered})
            self.system(f"{self.peer.name}'s program restarted; a new conversation begins", warning=True)
            for _, text in event.undelivered:
                self.system(f"not delivered: {preview(text, 60)}", warning=True)
        elif isinstance(event, PeerDone):
            self.system(f"{self.peer.name} has finished typing (their input ended); they still receive")
        elif isinstance(event, (PeerLeft, LinkFailed)) and self.ended is None:
            self.ended = event
            if isinstance(event, PeerLeft):
                self.system(f"{self.peer.name} left the chat.")
            else:
                self.system(str(event.error), warning=True)
            undelivered = self.link.unacknowledged()
            self.transcript.undelivered(set(undelivered))
            for text in undelivered.values():
                self.system(f"not delivered: {preview(text, 60)}", warning=True)
            if self._input.text.strip():
                self.system("Your draft stays in the input; Enter or Ctrl-D closes and prints it as not sent.")
            else:
                self.system("Press Enter to close.")
        elif isinstance(event, Reconnecting):
            pass  # the status bar counts down

    # -- what the conversation shows ---------------------------------------------

    def system(self, text: str, warning: bool = False, at: float | None = None) -> None:
        """A line from p2pchat itself (joins, safety codes, warnings); escaped like everything shown."""
        for part in clean_text(text).split("\n"):
            self._add(Entry(_stamp(at), part, warning=warning), peer_message=False)
        self._app.invalidate()

    def _add(self, entry: Entry, peer_message: bool = True) -> None:
        dropped = self.transcript.add(entry)
        rows = len(entry.rows(self._view.width))
        self.scroll.added(rows, 1 if peer_message and not entry.mine else 0)
        if dropped:
            self.scroll.resized(self.transcript.total(self._view.width), self._view.height)

    def _send(self, text: str, action: bool) -> None:
        ids = self.link.send_text(text, action)
        self.scroll.end()  # what you send, you see
        self._add(Entry(_stamp(), _display(text), YOU, "class:me", mine=True, action=action, waiting=set(ids)))

    # -- status bar and title --------------------------------------------------------

    def _status(self) -> StyleAndTextTuples:
        columns = self._app.output.get_size().columns
        warn = "class:status.warn" if self.state.kind != "connected" else "class:status"
        segments = [Segment(1, state_words(self.state, self.peer.name), warn)]
        segments.append(Segment(2, (self.peer.name,), cuttable=True))
        waiting = self.link.unacknowledged_count()
        if waiting:
            segments.append(Segment(3, (f"{waiting} pending",)))
        activity = self.activity()
        if activity:
            segments.append(Segment(3, (activity,), cuttable=True))
        trust = self.trust()
        segments.append(Segment(4, ("new key, not verified", "new key") if trust == "new" else (trust,)))
        fragments = layout(segments, columns, right=Segment(5, ("/help",)))
        return [(f"class:status {style}".strip(), text) for style, text in fragments]

    def title(self) -> str:
        unread = self.scroll.unseen if self.scroll.scrolled else 0
        unread = max(unread, self._unread)
        title = TITLE.format(peer=self.peer.name)
        return f"{title} ({unread} new)" if unread else title

    def _before_render(self) -> None:
        # An emoji sequence (ZWJ family, flag, skin tone) may take fewer or more cells on the terminal
        # than prompt_toolkit counts, and a screen diff drawn over it leaves debris. While one is on
        # screen, and once after, every frame is drawn whole: each row starts at a known column.
        unsure = self._unsure_on_screen()
        if unsure or self._was_unsure:
            self._app.renderer._last_screen = None
        self._was_unsure = unsure

    def _unsure_on_screen(self) -> bool:
        if cells.unsure(self.peer.name) or cells.unsure(self._input.text):
            return True
        total = self.transcript.total(self._view.width)
        start, end = self.scroll.window(total, self._view.height)
        return any(cells.unsure(text) for row in self.transcript.rows(self._view.width, start, end) for _, text in row)

    def _after_render(self) -> None:
        title = self.title()
        if title != self._title:
            self._title = title
            self._app.output.set_title(title)
            self._app.output.flush()
        if self.state.kind == "reconnecting" and self._tick is None and self._loop is not None:
            # The countdown: one wake-up a second while it shows, none otherwise.
            def tick() -> None:
                self._tick = None
                self._app.invalidate()

            self._tick = self._loop.call_later(1.0 - time.time() % 1.0, tick)

    # -- keys and commands --------------------------------------------------------

    def _key_bindings(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("enter")
        def _(event: KeyPressEvent) -> None:
            self._submit()

        @keys.add("escape", "enter")  # Alt+Enter
        @keys.add("c-j")
        def _(event: KeyPressEvent) -> None:
            self._input.insert_text("\n")

        @keys.add(Keys.BracketedPaste)
        def _(event: KeyPressEvent) -> None:
            # A pasted block is inserted, newlines and all, and waits for Enter: never sent by the paste.
            self._input.insert_text(event.data.replace("\r\n", "\n").replace("\r", "\n"))

        @keys.add("tab")
        def _(event: KeyPressEvent) -> None:
            text = self._input.text
            word, space, argument = text.partition(" ")
            if space and word.lower() in self.completers:
                completed, candidates = _complete_argument(text, self.completers[word.lower()](argument))
            else:
                completed, candidates = commands.complete(text, self.commands)
            if completed != text:
                self._input.text = completed
                self._input.cursor_position = len(completed)
            elif candidates:
                self.system("  ".join(candidates))
            elif not text.startswith("/"):
                self._input.insert_text("\t")

        @keys.add("c-z")
        def _(event: KeyPressEvent) -> None:
            run_in_terminal(self._suspend)

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
            self.scroll.page_up(*self._extent())

        @keys.add("pagedown")
        def _(event: KeyPressEvent) -> None:
            self.scroll.page_down(*self._extent())

        # Home and End move in the input line while it is being edited; otherwise (and always
        # with Ctrl) they go to the conversation's top and bottom.
        @keys.add("c-home")
        def _(event: KeyPressEvent) -> None:
            self.scroll.home(*self._extent())

        @keys.add("c-end")
        def _(event: KeyPressEvent) -> None:
            self._end()

        @keys.add("home")
        def _(event: KeyPressEvent) -> None:
            if self._input.text and not self.scroll.scrolled:
                self._input.cursor_position += self._input.document.get_start_of_line_position()
            else:
                self.scroll.home(*self._extent())

        @keys.add("end")
        def _(event: KeyPressEvent) -> None:
            if self.scroll.scrolled or not self._input.text:
                self._end()
            else:
                self._input.cursor_position += self._input.document.get_end_of_line_position()

        @keys.add(FOCUS_IN)
        def _(event: KeyPressEvent) -> None:
            self._focused = True
            self._unread = 0

        @keys.add(FOCUS_OUT)
        def _(event: KeyPressEvent) -> None:
            self._focused = False

        return keys

    def _extent(self) -> tuple[int, int]:
        return self.transcript.total(self._view.width), self._view.height

    def _end(self) -> None:
        self.scroll.end()
        if self._focused is not False:
            self._unread = 0

    def _submit(self) -> None:
        text = self._input.text
        if self.ended is not None:
            self._app.exit(result=Ending.LINK_ENDED)  # a draft is printed as not sent
            return
        parsed = commands.parse(text, self.commands)
        if parsed is None:
            return
        if isinstance(parsed, commands.Problem):
            self.system(parsed.message, warning=True)  # the line stays in the input, to be fixed
            return
        self._input.reset(append_to_history=True)
        if isinstance(parsed, commands.Send):
            self._send(parsed.text, parsed.action)
        elif parsed.name == "/quit":
            self._app.exit(result=Ending.QUIT)
        elif parsed.name == "/help":
            for line in commands.help_lines(self.commands):
                self.system(line)
        elif parsed.name in self.commands:
            for reply in self.commands[parsed.name](parsed.argument):
                self.system(reply)

    # -- running ---------------------------------------------------------------------

    def _focus_reports(self, on: bool) -> None:
        self._app.output.write_raw("\x1b[?1004h" if on else "\x1b[?1004l")
        self._app.output.flush()

    def _suspend(self) -> None:
        """Ctrl-Z: the conversation so far to the scrollback, then stop until the shell's fg."""
        self._focus_reports(False)
        self._print_transcript()
        sys.stdout.flush()
        os.kill(0, signal.SIGTSTP)  # the whole process group, as the shell expects; returns on SIGCONT
        self._focus_reports(True)
        self._title = ""  # the shell may have changed the title meanwhile

    def _print_transcript(self) -> None:
        size = self._app.output.get_size()
        for line in self.transcript.to_print(size.columns, max(1, size.rows - 1)):
            print(line)

    def run(self) -> Ending:
        """Show the chat until the user leaves or the link ends and the user closes it."""

        def started() -> None:
            with self._lock:
                self._loop = asyncio.get_running_loop()
            self._focus_reports(True)
            self._drain()

        ending: Ending | None = None
        try:
            ending = self._app.run(pre_run=started)
            return ending
        finally:
            with self._lock:
                self._loop = None
            try:
                self._focus_reports(False)
                self._app.output.clear_title()
                self._print_transcript()
                self._report(ending)
            except OSError:  # the terminal is gone (hang-up): nobody is left to read it
                pass

    def _report(self, ending: Ending | None) -> None:
        """After the screen closes: what happened on our side, and a draft never sent."""
        sys.stdout.flush()
        if ending is Ending.QUIT:
            print("p2pchat: you left the chat", file=sys.stderr)
        elif ending is Ending.INTERRUPTED or (ending is None and self.ended is None):
            print("p2pchat: you interrupted the chat", file=sys.stderr)
        draft = self._input.text
        if draft.strip():  # whole, never cut: it may be all that is left of what was typed
            print("p2pchat: not sent: " + clean_text(draft).replace("\n", "\n    "), file=sys.stderr)
        sys.stderr.flush()


def _prompt(line: int, wrap_count: int) -> StyleAndTextTuples:
    # "> " before the input's first row; its other rows line up under the text.
    return [("class:prompt", "> " if line == 0 and wrap_count == 0 else "  ")]


def _stamp(at: float | None = None) -> str:
    return time.strftime("%H:%M", time.localtime(at))


def _display(text: str) -> str:
    return clean_text(text).expandtabs(4)


def _name_style(person: Person) -> str:
    return f"bold {COLOURS[person.colour % len(COLOURS)]}"


def _complete_argument(text: str, candidates: list[str]) -> tuple[str, list[str]]:
    """Tab on "/command ARG" given ARG's completions: the longest common completion, or the choices."""
    word, _, argument = text.partition(" ")
    if len(candidates) == 1:
        return f"{word} {candidates[0]}", []
    common = candidates[0] if candidates else ""
    for candidate in candidates[1:]:  # the longest prefix all candidates share
        while not candidate.startswith(common):
            common = common[:-1]
    if len(common) > len(argument):
        return f"{word} {common}", []
    return text, [c.rstrip("/").rsplit("/", 1)[-1] + ("/" if c.endswith("/") else "") for c in candidates]
