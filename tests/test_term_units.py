"""The interface's pure pieces, no terminal: cells, wrapping, status bar, commands, scrolling, transcript."""

from __future__ import annotations

import io
import random
import re
import time
from collections.abc import Iterator

import pytest
from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import DummyInput
from prompt_toolkit.output.vt100 import Vt100_Output

from p2pchat.errors import ConnectionLost
from p2pchat.events import (
    Delivered,
    FileNotice,
    LinkDown,
    LinkFailed,
    LinkUp,
    PeerDone,
    PeerLeft,
    PeerRestarted,
    Received,
    Reconnecting,
    WaitingForPeer,
)
from p2pchat.term import commands
from p2pchat.term.cells import cut, graphemes, unsure, width
from p2pchat.term.render_bench import render_5000_lines
from p2pchat.term.scroll import Scroll
from p2pchat.term.status import LinkState, Segment, advance, layout, state_words
from p2pchat.term.transcript import Entry, Transcript
from p2pchat.term.ui import ChatUI, Person
from p2pchat.term.wrap import wrap

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl
FLAG = "\U0001f1eb\U0001f1f7"  # FR
THUMB = "\U0001f44d\U0001f3fd"  # thumbs up, skin tone
E_ACUTE = "e\u0301"  # e + combining acute


def plain(rows: list[list[tuple[str, str]]]) -> list[str]:
    return ["".join(text for _, text in row) for row in rows]


# -- cells ---------------------------------------------------------------------


def test_graphemes_keep_sequences_whole() -> None:
    text = f"a{FAMILY}{FLAG}{FLAG}{THUMB}{E_ACUTE}\u2764\ufe0fz"
    assert graphemes(text) == ["a", FAMILY, FLAG, FLAG, THUMB, E_ACUTE, "\u2764\ufe0f", "z"]


def test_width_counts_cells_as_prompt_toolkit_draws_them() -> None:
    assert width("abc") == 3
    assert width("中文") == 4
    assert width(E_ACUTE) == 1
    assert width("\u200b") == 0 or width("\u200b") == 1  # whatever get_cwidth says, never negative


def test_unsure_finds_sequences_terminals_disagree_on() -> None:
    for text in (FAMILY, FLAG, THUMB, "\u2764\ufe0f"):
        assert unsure(f"name {text}")
    for text in ("plain", E_ACUTE, "中文", "\U0001f44d"):
        assert not unsure(text)


def test_cut_never_splits_a_cluster() -> None:
    assert cut("hello", 10) == "hello"
    assert cut("hello world", 6) == "hello…"
    cutted = cut(FAMILY * 3, 5)
    assert cutted.endswith("…") and graphemes(cutted[:-1]) == [FAMILY] * (len(graphemes(cutted[:-1])))
    assert width(cutted) <= 5


# -- wrapping --------------------------------------------------------------------


def test_wrap_breaks_at_spaces_and_indents_to_the_text_column() -> None:
    rows = plain(wrap([("x", "12:00   bob: "), ("", "the quick brown fox jumps over the lazy dog")], 30, 13))
    assert rows == ["12:00   bob: the quick brown", " " * 13 + "fox jumps over", " " * 13 + "the lazy dog"]


def test_wrap_cuts_only_words_longer_than_a_row() -> None:
    url = "https://example.org/" + "a" * 40
    rows = plain(wrap([("", "see " + url + " ok")], 20, 0))
    assert rows[0] == "see https://example."  # the long word starts where there is room
    assert "".join(rows).replace(" ", "") == ("see" + url + "ok")
    assert all(width(row) <= 20 for row in rows)
    assert rows[-1].endswith(" ok") or rows[-1] == "ok"


def test_wrap_newlines_start_indented_rows_and_styles_survive() -> None:
    rows = wrap([("h", "hi: "), ("t", "one\ntwo")], 40, 4)
    assert rows == [[("h", "hi: "), ("t", "one")], [("", "    "), ("t", "two")]]


def test_wrap_keeps_clusters_whole_at_the_edge() -> None:
    rows = plain(wrap([("", "x" + FAMILY * 4)], 7, 0))
    for row in rows:
        assert width(row) <= 7
        assert "".join(graphemes(row)) == row and row.replace("x", "").replace(FAMILY, "") == ""


def test_wrap_never_loses_text_and_never_overflows() -> None:
    rng = random.Random(13)  # seeded: the same texts every run
    alphabet = ["a", "b", " ", "中", FLAG, E_ACUTE, "\n", FAMILY]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        rows = plain(wrap([("", text)], 9, 2))
        for row in rows:
            assert width(row) <= 9
        joined = "".join(row[2:] if number else row for number, row in enumerate(rows)).replace(" ", "")
        assert joined == text.replace(" ", "").replace("\n", ""), (text, rows)


# -- status bar ----------------------------------------------------------------------


def test_state_follows_the_link_events() -> None:
    state = LinkState()
    assert state_words(state, "alice") == ("connected",)
    state = advance(state, LinkDown("no data for 45 s", 100.0), now=100.0)
    assert state_words(state, "alice", now=100.0)[0] == "connection lost"
    state = advance(state, Reconnecting(3, 4.0), now=100.0)
    assert state_words(state, "alice", now=100.2)[0] == "connection lost, reconnecting in 4 s (attempt 3)"
    assert state_words(state, "alice", now=103.5)[0] == "connection lost, reconnecting in 1 s (attempt 3)"
    state = advance(state, WaitingForPeer(200.0))
    assert state_words(state, "alice")[0] == "waiting for alice to come back"
    state = advance(state, LinkUp(150.0, 2))
    assert state_words(state, "alice") == ("connected",)
    state = advance(state, PeerRestarted(((1, "lost"),)))
    assert state.kind == "connected"
    state = advance(state, PeerDone())
    assert state_words(state, "alice")[0] == "connected, alice has finished"
    assert advance(state, Delivered(1)) is state
    left = advance(state, PeerLeft())
    assert state_words(left, "alice")[0] == "alice left" and left.ended
    assert advance(left, LinkUp(1.0, 0)) is left  # an ended chat stays ended
    failed = advance(LinkState(), LinkFailed(ConnectionLost()))
    assert state_words(failed, "alice") == ("disconnected",) and failed.ended


def bar(cells: int, name: str = "alice", state: tuple[str, ...] = ("connected",)) -> str:
    segments = [
        Segment(1, state),
        Segment(2, (name,), cuttable=True),
        Segment(3, ("2 pending",)),
        Segment(4, ("unverified",)),
    ]
    out = "".join(text for _, text in layout(segments, cells, right=Segment(5, ("/help",))))
    assert width(out) == cells
    return out


def test_status_bar_degrades_by_priority() -> None:
    assert bar(60).rstrip() == " connected · alice · 2 pending · unverified           /help"
    assert bar(45).rstrip() == " connected · alice · 2 pending · unverified"
    assert bar(32).rstrip() == " connected · alice · 2 pending"
    assert bar(22).rstrip() == " connected · alice"
    assert bar(18).rstrip() == " connected · ali…"
    assert bar(16).rstrip() == " connected"
    assert bar(12).rstrip() == " connected"
    assert bar(8).rstrip() == " conne…"


def test_status_bar_measures_cells_not_code_points() -> None:
    name = f"ann{FAMILY}{FLAG}"
    for cells in range(8, 60):
        assert width(bar(cells, name)) == cells
    assert name in bar(40, name)


def test_status_bar_takes_the_longest_state_that_fits() -> None:
    words = state_words(advance(LinkState(), Reconnecting(3, 4.0), now=0.0), "alice", now=0.0)
    assert bar(80, state=words).startswith(" connection lost, reconnecting in 4 s (attempt 3) · alice")
    assert bar(40, state=words).startswith(" reconnecting in 4 s (attempt 3) · ali…")
    assert bar(30, state=words).startswith(" reconnecting in 4 s · alice")


# -- commands -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("hello", commands.Send("hello")),
        ("//etc/passwd", commands.Send("/etc/passwd")),
        ("/me waves", commands.Send("waves", action=True)),
        ("/ME waves", commands.Send("waves", action=True)),
        ("/QUIT", commands.Run("/quit", "")),
        ("/Exit", commands.Run("/quit", "")),
        ("/help", commands.Run("/help", "")),
        ("/verify", commands.Run("/verify", "")),
        ("/verify Confirm", commands.Run("/verify", "confirm")),
        ("   ", None),
    ],
)
def test_parse(line: str, parsed: commands.Parsed) -> None:
    assert commands.parse(line) == parsed


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("/me", "/me needs text: /me ACTION"),
        ("/me   ", "/me needs text"),
        ("/verify bogus", "/verify takes no argument or confirm, not 'bogus'"),
        ("/quit now", "/quit takes no argument"),
        ("/frobnicate", "unknown command /frobnicate: /help lists them"),
    ],
)
def test_parse_explains_mistakes_in_one_line(line: str, says: str) -> None:
    parsed = commands.parse(line)
    assert isinstance(parsed, commands.Problem) and says in parsed.message and "\n" not in parsed.message


def test_extra_commands_are_run_by_the_caller() -> None:
    assert commands.parse("/send file.txt", extra=["/send"]) == commands.Run("/send", "file.txt")
    assert "/send" in commands.names(["/send"])


def test_tab_completion() -> None:
    assert commands.complete("/q") == ("/quit ", [])
    assert commands.complete("/Ve") == ("/verify ", [])
    assert commands.complete("/")[1] == commands.names()
    assert commands.complete("/e") == ("/exit ", [])
    _, candidates = commands.complete("/", extra=["/mesh"])
    assert "/mesh" in candidates
    assert commands.complete("/me", extra=["/mesh"]) == ("/me", ["/me", "/mesh"])
    assert commands.complete("hello") == ("hello", [])
    assert commands.complete("/me wav") == ("/me wav", [])


def test_help_lists_every_command_and_key() -> None:
    text = "\n".join(commands.help_lines(["/extra"]))
    for word in ["/me", "/verify", "/verify confirm", "/help", "/quit", "/exit", "//text", "/extra"]:
        assert word in text
    for key in [
        "Enter",
        "Alt+Enter",
        "Ctrl-J",
        "Tab",
        "PageUp",
        "PageDown",
        "Home",
        "End",
        "Ctrl-Z",
        "Ctrl-C",
        "Ctrl-D",
    ]:
        assert key in text
    assert "mouse wheel" in text


# -- scrolling --------------------------------------------------------------------


def test_page_up_moves_a_page_from_the_first_press() -> None:
    scroll = Scroll()
    assert scroll.window(100, 20) == (80, 100)
    scroll.page_up(100, 20)
    assert scroll.offset == 18  # a page of 19 rows, one kept for context
    assert scroll.window(100, 20) == (63, 82)  # one row less: the marker takes the bottom row
    scroll.page_up(100, 20)
    scroll.page_up(100, 20)
    scroll.page_up(100, 20)
    scroll.page_up(100, 20)
    scroll.page_up(100, 20)
    assert scroll.window(100, 20) == (0, 19)  # the top, and no further
    scroll.page_down(100, 20)
    assert scroll.window(100, 20)[0] == 18
    scroll.end()
    assert scroll.window(100, 20) == (80, 100)


def test_home_end_and_a_short_conversation() -> None:
    scroll = Scroll()
    scroll.page_up(10, 20)
    assert scroll.offset == 0 and scroll.window(10, 20) == (0, 10)
    scroll.home(100, 20)
    assert scroll.window(100, 20) == (0, 19)
    scroll.end()
    assert not scroll.scrolled


def test_new_rows_do_not_move_a_scrolled_view_and_are_counted() -> None:
    scroll = Scroll()
    scroll.added(3, 1)
    assert scroll.unseen == 0  # at the bottom: nothing to count
    scroll.page_up(100, 20)
    view = scroll.window(100, 20)
    scroll.added(4, 2)
    assert scroll.window(104, 20) == view
    assert scroll.marker() == "↓ 2 new (End)"
    scroll.end()
    assert scroll.unseen == 0 and scroll.marker() == "↓ more below (End)"


def test_page_down_to_the_bottom_clears_the_count_and_wheel_scrolls() -> None:
    scroll = Scroll()
    scroll.wheel(3, 100, 20)
    assert scroll.offset == 3
    scroll.added(1, 1)
    scroll.page_down(101, 20)
    assert scroll.offset == 0 and scroll.unseen == 0
    scroll.wheel(-3, 100, 20)
    assert scroll.offset == 0


# -- transcript ----------------------------------------------------------------------


def mine(text: str, ids: set[int]) -> Entry:
    return Entry("12:00", text, label="you", mine=True, waiting=set(ids))


def test_marks_follow_delivery_without_colour() -> None:
    transcript = Transcript()
    entry = mine("hello", {1, 2})
    transcript.add(entry)
    theirs = Entry("12:00", "hello", label="you")  # a peer who calls themselves "you"
    transcript.add(theirs)
    assert entry.plain(80) == ["12:00 … you: hello"]
    assert theirs.plain(80) == ["12:00   you: hello"]  # told apart by the mark column alone
    assert transcript.delivered(1) is None  # one of two pieces: still pending
    assert transcript.delivered(2) is entry
    assert entry.plain(80) == ["12:00 ✓ you: hello"]
    lost = mine("lost one", {3})
    transcript.add(lost)
    assert transcript.undelivered({3}) == [lost]
    assert lost.plain(80) == ["12:00 ✗ you: lost one  (not delivered)"]


def test_rows_and_totals_by_width() -> None:
    transcript = Transcript()
    transcript.add(Entry("12:00", "joined", label=""))
    transcript.add(Entry("12:01", "word " * 30, label="bob"))
    total = transcript.total(40)
    assert total == len(transcript.entries[0].rows(40)) + len(transcript.entries[1].rows(40))
    rows = ["".join(t for _, t in row) for row in transcript.rows(40, 0, total)]
    assert rows[0] == "12:00 -- joined"
    assert all(row.startswith(" " * 13) for row in rows[2:])
    assert ["".join(t for _, t in row) for row in transcript.rows(40, 1, 3)] == rows[1:3]
    transcript.add(Entry("12:02", "x", label="bob"))
    assert transcript.total(40) == total + 1


def test_memory_is_bounded_by_lines(ui) -> None:
    transcript = Transcript(max_lines=10)
    transcript.total(80)
    transcript.add(mine("a\nb\nc", {1}))
    for number in range(10):
        transcript.add(Entry("12:00", f"line {number}", label="bob"))
    assert sum(entry.lines for entry in transcript) == 10
    assert transcript.total(80) == 10
    assert transcript.delivered(1) is None  # forgotten with its entry


def test_to_print_gives_a_screenful_and_everything_new() -> None:
    transcript = Transcript()
    for number in range(30):
        transcript.add(Entry("12:00", f"line {number}", label="bob"))
    printed = transcript.to_print(80, 5)
    assert len(printed) == 30  # never printed: all of it
    transcript.add(Entry("12:00", "after", label="bob"))
    assert transcript.to_print(80, 5) == [f"12:00   bob: line {n}" for n in range(26, 30)] + ["12:00   bob: after"]


# -- the interface's reactions, on a fake terminal ------------------------------------


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.pending: dict[int, str] = {}

    def send_text(self, text: str, action: bool = False) -> list[int]:
        self.sent.append(text)
        self.pending[len(self.sent)] = text
        return [len(self.sent)]

    def unacknowledged(self) -> dict[int, str]:
        return dict(self.pending)

    def unacknowledged_count(self) -> int:
        return len(self.pending)


@pytest.fixture
def ui() -> Iterator[ChatUI]:
    """The real interface on a fake 80x24 terminal (output into memory): its reactions, not its drawing."""
    output = Vt100_Output(io.StringIO(), lambda: Size(rows=24, columns=80), term="xterm")
    with create_app_session(input=DummyInput(), output=output):
        yield ChatUI(FakeLink(), Person("me", 0), Person("alice", 1), trust=lambda: "unverified", bell=False)


def lines(ui: ChatUI) -> list[str]:
    return [line for entry in ui.transcript for line in entry.plain(80)]


def status(ui: ChatUI) -> str:
    return "".join(text for _, text in ui._status())


def test_link_state_events_make_one_line_each_and_the_status_bar(ui: ChatUI) -> None:
    lost_at = time.mktime((2026, 1, 2, 9, 41, 0, 0, 0, -1))
    ui._send("first", action=False)
    ui._show_event(LinkDown("no data for 45 s", lost_at))
    ui._show_event(Reconnecting(3, 4.0))
    assert lines(ui)[-1] == "09:41 -- connection lost: no data for 45 s; your messages wait"
    assert status(ui).startswith(" connection lost, reconnecting in 4 s (attempt 3) · alice · 1 pending")
    ui._show_event(WaitingForPeer(lost_at + 60))
    assert "waiting for alice to come back" in status(ui)
    ui._show_event(LinkUp(lost_at + 5, 1))
    assert lines(ui)[-1] == "09:41 -- connection resumed; 1 of your messages sent again"
    assert status(ui).startswith(" connected · alice")
    ui._show_event(PeerRestarted(((1, "first"),)))
    assert re.fullmatch(r"\d\d:\d\d ✗ you: first  \(not delivered\)", lines(ui)[0])
    assert lines(ui)[-1].endswith("-- not delivered: first")


def test_peer_leaving_keeps_the_draft_and_marks_what_was_lost(ui: ChatUI) -> None:
    ui._send("unanswered", action=False)
    ui._input.text = "half typed"
    ui._show_event(PeerLeft())
    assert re.fullmatch(r"\d\d:\d\d ✗ you: unanswered  \(not delivered\)", lines(ui)[0])
    assert "-- Your draft stays in the input; Enter or Ctrl-D closes" in " ".join(lines(ui))
    assert ui._input.text == "half typed"
    assert status(ui).startswith(" alice left")


def test_unread_count_in_the_title(ui: ChatUI) -> None:
    assert ui.title() == "p2pchat — alice"
    for number in range(30):
        ui._show_event(Received(number, f"line {number}"))
    ui.scroll.page_up(*ui._extent())
    ui._show_event(Received(99, "below"))
    assert ui.title() == "p2pchat — alice (1 new)"
    ui._end()
    assert ui.title() == "p2pchat — alice"
    ui._focused = False
    ui._show_event(Received(100, "while away"))
    assert ui.title() == "p2pchat — alice (1 new)"


def test_render_benchmark_runs() -> None:
    assert 0 < render_5000_lines(runs=2, lines=50) < 5


def test_rows_holding_an_emoji_sequence_keep_clear_of_the_last_column() -> None:
    entry = Entry("12:00", "abc " * 30 + FLAG, label="bob")
    assert all(width(row) <= 39 for row in entry.plain(40))
    plain_entry = Entry("12:00", "abc " * 30, label="bob")
    assert any(width(row) == 40 for row in plain_entry.plain(40))


def test_system_lines_and_file_lines_are_escaped(ui: ChatUI) -> None:
    """Every line from p2pchat is escaped too: a local file's name can hold what a peer's can."""
    ui.system("offered \x1b[2Jevil\u202etxt.exe (10 bytes)")
    ui._show_event(FileNotice("saved \x07bell.txt, SHA-256 verified"))
    assert "\x1b" not in " ".join(lines(ui)) and "\u202e" not in " ".join(lines(ui))
    assert lines(ui)[-2].endswith("offered \\x1b[2Jevil\\u202etxt.exe (10 bytes)")
    assert lines(ui)[-1].endswith("saved \\x07bell.txt, SHA-256 verified")
