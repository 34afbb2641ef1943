"""The resume bookkeeping (sans-IO): two conversations joined by a fake link that breaks at random."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.core.conversation import ConversationState, Joined, Resume, new_conversation_id
from p2pchat.core.messages import Ack, Done, Text
from p2pchat.errors import RemoteProtocolError

Wire = Ack | Done | Text


@dataclass
class Side:
    state: ConversationState
    typed: list[str] = field(default_factory=list)  # everything this side's user typed, in order
    shown: list[str] = field(default_factory=list)  # the peer's texts this side showed, in order
    undelivered: list[tuple[int, str]] = field(default_factory=list)

    def receive(self, message: Wire, out: deque[Wire]) -> None:
        if isinstance(message, Text):
            if self.state.receive_text(message.id):
                self.shown.append(message.text)
            out.append(Ack(self.state.ack_for(message.id)))
        elif isinstance(message, Ack):
            self.state.acknowledge(message.id)
        else:
            self.state.done_received = True


class Pair:
    """Two sides and a link made of two in-order queues, which can break and come back."""

    def __init__(self) -> None:
        self.a = Side(ConversationState(new_conversation_id()))
        self.b = Side(ConversationState(new_conversation_id()))
        self.to_b: deque[Wire] = deque()
        self.to_a: deque[Wire] = deque()
        self.up = False

    def connect(self, late_to_b: int = 0, late_to_a: int = 0) -> tuple[Joined, Joined]:
        """A new connection: both hellos are made first; then up to *late_* messages of the dead link
        still arrive (a listener's old receiver racing the new handshake); then both sides join."""
        hello_a, hello_b = self.a.state.hello_fields(), self.b.state.hello_fields()
        old_to_b, old_to_a = list(self.to_b)[:late_to_b], list(self.to_a)[:late_to_a]
        dead: deque[Wire] = deque()  # acks for late arrivals go nowhere: that link is gone
        for message in old_to_b:
            self.b.receive(message, dead)
        for message in old_to_a:
            self.a.receive(message, dead)
        self.to_b, self.to_a = deque(), deque()
        joined_a = self.a.state.join(hello_b)
        joined_b = self.b.state.join(hello_a)
        self.to_b.extend(joined_a.resend)
        self.to_a.extend(joined_b.resend)
        self.a.undelivered += joined_a.undelivered
        self.b.undelivered += joined_b.undelivered
        self.up = True
        return joined_a, joined_b

    def type(self, side: Side, text: str) -> None:
        side.typed.append(text)
        message = side.state.add_text(text)
        if self.up:  # typed during an outage: queued, sent on resume
            (self.to_b if side is self.a else self.to_a).append(message)

    def step(self, towards_b: bool) -> bool:
        queue, receiver, back = (self.to_b, self.b, self.to_a) if towards_b else (self.to_a, self.a, self.to_b)
        if not queue:
            return False
        receiver.receive(queue.popleft(), back)
        return True

    def settle(self) -> None:
        while self.step(True) or self.step(False):
            pass


def test_a_first_connection_is_a_new_conversation() -> None:
    pair = Pair()
    joined_a, joined_b = pair.connect()
    assert joined_a == joined_b == Joined(resumed=False)
    pair.type(pair.a, "hi")
    pair.settle()
    assert pair.b.shown == ["hi"] and pair.a.state.unacknowledged() == {}


def test_resume_resends_exactly_what_was_not_received() -> None:
    pair = Pair()
    pair.connect()
    for text in ("one", "two", "three"):
        pair.type(pair.a, text)
    pair.step(True)  # "one" arrives; its ack and the rest are lost with the link
    joined_a, _ = pair.connect()
    assert joined_a.resumed and [t.text for t in joined_a.resend] == ["two", "three"]
    pair.settle()
    assert pair.b.shown == ["one", "two", "three"]
    assert pair.a.state.unacknowledged() == {}


def test_a_duplicate_is_dropped_and_a_gap_is_a_protocol_error() -> None:
    state = ConversationState(new_conversation_id())
    state.join(Resume(new_conversation_id(), "", 0))
    assert state.receive_text(1) and not state.receive_text(1)
    assert state.ack_for(1) == 1
    with pytest.raises(RemoteProtocolError, match="skipped"):
        state.receive_text(3)


def test_a_text_after_done_is_a_protocol_error_but_a_duplicate_is_not() -> None:
    state = ConversationState(new_conversation_id())
    state.join(Resume(new_conversation_id(), "", 0))
    assert state.receive_text(1)
    state.done_received = True
    assert not state.receive_text(1)  # sent again after a resume: dropped, as any duplicate
    with pytest.raises(RemoteProtocolError, match="input had ended"):
        state.receive_text(2)


def test_the_peer_cannot_claim_or_acknowledge_what_was_never_sent() -> None:
    pair = Pair()
    pair.connect()
    pair.type(pair.a, "only one")
    with pytest.raises(RemoteProtocolError, match="never sent"):
        pair.a.state.acknowledge(2)
    forged = Resume(pair.b.state.conversation, pair.a.state.conversation, 5)
    with pytest.raises(RemoteProtocolError, match="never sent"):
        pair.a.state.join(forged)


def test_a_restarted_peer_ends_the_old_conversation_and_reports_what_it_lost() -> None:
    pair = Pair()
    pair.connect()
    pair.type(pair.a, "seen")
    pair.settle()
    pair.type(pair.a, "lost 1")
    pair.type(pair.a, "lost 2")
    pair.b = Side(ConversationState(new_conversation_id()))  # b's program died and started again
    joined_a, joined_b = pair.connect()
    assert joined_a == Joined(resumed=False, restarted=True, undelivered=((2, "lost 1"), (3, "lost 2")))
    assert joined_b == Joined(resumed=False)
    pair.type(pair.a, "fresh")
    pair.settle()
    assert pair.b.shown == ["fresh"]
    assert pair.a.state.add_text("x").id == 2  # ids count from 1 again: "fresh" was 1
    assert pair.a.state.unacknowledged() == {2: "x"}


def test_a_peer_without_resume_is_served_as_before() -> None:
    state = ConversationState(new_conversation_id())
    assert state.join(None) == Joined(resumed=False)
    first, second = state.add_text("a"), state.add_text("b")
    assert state.acknowledge(second.id) == [second.id]  # one text per ack, not cumulative
    assert state.acknowledge(99) == []  # unknown ids change nothing
    assert state.unacknowledged() == {first.id: "a"}
    assert state.receive_text(7) and state.receive_text(7)  # shown as before, without id rules
    assert state.ack_for(7) == 7


def test_half_close_finishes_when_both_are_done_and_all_is_acknowledged() -> None:
    pair = Pair()
    pair.connect()
    pair.type(pair.a, "last words")
    pair.a.state.done_sent = True
    pair.to_b.append(Done())
    pair.b.state.done_sent = True
    pair.to_a.append(Done())
    assert not pair.a.state.finished
    pair.settle()
    assert pair.a.state.finished and pair.b.state.finished


# An action: (kind, argument). Kinds: type on a or b, deliver towards b or a, break and reconnect
# (the argument says how many old messages still arrive late, and how many are lost).
_actions = st.lists(
    st.tuples(st.sampled_from(["type_a", "type_b", "to_b", "to_a", "break"]), st.integers(0, 5)),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(_actions)
def test_exactly_once_in_order_across_any_breaks(actions: list[tuple[str, int]]) -> None:
    pair = Pair()
    pair.connect()
    count = 0
    for kind, argument in actions:
        if kind in ("type_a", "type_b"):
            count += 1
            pair.type(pair.a if kind == "type_a" else pair.b, f"{kind[-1]}{count}")
        elif kind in ("to_b", "to_a"):
            for _ in range(argument + 1):
                pair.step(kind == "to_b")
        else:
            pair.up = False
            joined_a, joined_b = pair.connect(late_to_b=argument, late_to_a=argument // 2)
            assert joined_a.resumed and joined_b.resumed
        for side in (pair.a, pair.b):  # the back-pressure budget counts exactly what awaits acks
            assert side.state.unacknowledged_chars() == sum(map(len, side.state.unacknowledged().values()))
    pair.settle()
    assert pair.b.shown == pair.a.typed  # each text once, in order, none missing
    assert pair.a.shown == pair.b.typed
    assert pair.a.state.unacknowledged() == {} and pair.b.state.unacknowledged() == {}
    assert pair.a.state.unacknowledged_chars() == pair.b.state.unacknowledged_chars() == 0
    assert pair.a.undelivered == [] and pair.b.undelivered == []


@settings(max_examples=100, deadline=None)
@given(_actions, st.integers(0, 120))
def test_a_restart_loses_nothing_silently(actions: list[tuple[str, int]], restart_at: int) -> None:
    pair = Pair()
    pair.connect()
    old_b_shown: list[str] = []
    for number, (kind, argument) in enumerate(actions):
        if number == restart_at:
            old_b_shown = pair.b.shown
            pair.b = Side(ConversationState(new_conversation_id()))
            pair.up = False
            pair.connect()
        if kind == "type_a":
            pair.type(pair.a, f"a{number}")
        elif kind in ("to_b", "to_a"):
            pair.step(kind == "to_b")
        elif kind == "break":
            pair.up = False
            pair.connect(late_to_b=argument)
    pair.settle()
    # Every text a typed was shown once by the old b or the new one, in order, or reported undelivered.
    lost = [text for _, text in pair.a.undelivered]
    shown = old_b_shown + pair.b.shown
    assert len(shown) == len(set(shown))
    assert sorted(shown + [t for t in lost if t not in old_b_shown]) == sorted(pair.a.typed)
    assert [t for t in pair.a.typed if t in shown] == shown
