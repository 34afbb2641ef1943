"""One conversation across any number of connections: what to resend, what to drop (sans-IO).

A conversation outlives the connections under it. Each side keeps, per conversation:

* an **outbox**: its texts the peer has not acknowledged, by id, in order;
* **shown**: the highest id of the peer's texts it has shown, in order.

Each new connection starts with a fresh handshake; the hellos then carry each side's
conversation id, the peer conversation it knows, and its *shown* count (extension
``resume``, see SECURITY.md). :meth:`ConversationState.join` reads the peer's and says
what happens next:

* both sides know each other's conversation: **resume**. Texts the peer has received are
  dropped from the outbox, the rest are sent again in order; texts that arrive twice (ids
  up to *shown*) are dropped, so each is shown exactly once. Acks are cumulative.
* anything else: a **new conversation** with the peer (its program restarted, or this is the
  first connection). Texts of the old one that were never acknowledged are reported
  undelivered, and both sides count ids from 1 again.

The rule is symmetric: both sides reach the same decision from the same two hellos.
Half-close (extension ``done``) is tracked here too: the conversation is *finished* once
both sides said ``done`` and all of our texts are acknowledged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RemoteProtocolError
from .messages import Text

CONVERSATION_ID_BYTES = 16  # random bytes per conversation: two never collide


def new_conversation_id(randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh conversation id: 32 lowercase hex characters."""
    return randbytes(CONVERSATION_ID_BYTES).hex()


@dataclass(frozen=True)
class Resume:
    """What a hello says for extension ``resume``."""

    conversation: str  # the sender's conversation id
    peer_conversation: str  # the conversation id it knows of the receiver, or ""
    received: int  # the highest text id it has shown, in order, from that conversation


@dataclass(frozen=True)
class Joined:
    """What :meth:`ConversationState.join` decided for a new connection."""

    resumed: bool  # the same conversation goes on
    resend: tuple[Text, ...] = ()  # our unacknowledged texts, to send again first, in order
    restarted: bool = False  # the peer's conversation changed: the old one is over
    undelivered: tuple[tuple[int, str], ...] = ()  # the old conversation's texts never acknowledged


class ConversationState:
    """One side's bookkeeping for a conversation; not thread-safe (the link layer holds a lock)."""

    def __init__(self, conversation: str) -> None:
        self.conversation = conversation
        self.peer_conversation = ""
        self.shown = 0  # the peer's texts shown, in order (resume in use)
        self.done_sent = False
        self.done_received = False
        self._outbox: dict[int, Text] = {}
        self._outbox_chars = 0  # characters in the outbox: a budget keeps a bulk sender from queueing megabytes
        self._next_id = 1
        self._joined = False  # a first connection happened
        self._resuming = False  # the current peer conversation speaks resume: cumulative acks, no duplicates

    # -- a new connection ---------------------------------------------------------

    def hello_fields(self) -> Resume:
        """The ``resume`` fields for our hello on a new connection."""
        return Resume(self.conversation, self.peer_conversation, self.shown)

    def join(self, peer: Resume | None) -> Joined:
        """A new connection is up and *peer* is what its hello said (None: it does not resume).

        RemoteProtocolError if the peer claims to have received a text we never sent.
        """
        if (
            peer is not None
            and self._resuming
            and peer.conversation == self.peer_conversation
            and peer.peer_conversation == self.conversation
        ):
            if peer.received >= self._next_id:
                raise RemoteProtocolError("the peer claims to have received messages that were never sent")
            for message_id in [i for i in self._outbox if i <= peer.received]:
                self._outbox_chars -= len(self._outbox.pop(message_id).text)
            return Joined(resumed=True, resend=tuple(self._outbox.values()))
        restarted = self._joined
        undelivered = tuple((i, text.text) for i, text in self._outbox.items())
        self._outbox.clear()
        self._outbox_chars = 0
        self._next_id = 1
        self.shown = 0
        self.done_received = False
        self.peer_conversation = peer.conversation if peer is not None else ""
        self._resuming = peer is not None
        self._joined = True
        return Joined(resumed=False, restarted=restarted, undelivered=undelivered)

    # -- our texts ------------------------------------------------------------------

    def add_text(self, text: str, action: bool = False, json_text: bytes | None = None) -> Text:
        """Give *text* the next id and keep it until the peer acknowledges it."""
        message = Text(self._next_id, text, action, json_text)
        self._next_id += 1
        self._outbox[message.id] = message
        self._outbox_chars += len(text)
        return message

    def acknowledge(self, up_to: int) -> list[int]:
        """The peer acknowledged *up_to*; return the ids now known delivered, in order.

        With resume, acks are cumulative; a ``p2pchat/1`` peer acknowledges one text per ack,
        and an ack for an id we never sent (or twice) changes nothing, as before.
        """
        if not self._resuming:
            popped = self._outbox.pop(up_to, None)
            if popped is None:
                return []
            self._outbox_chars -= len(popped.text)
            return [up_to]
        if up_to >= self._next_id:
            raise RemoteProtocolError("the peer acknowledged a message that was never sent")
        done = [i for i in self._outbox if i <= up_to]
        for message_id in done:
            self._outbox_chars -= len(self._outbox.pop(message_id).text)
        return done

    def unacknowledged(self) -> dict[int, str]:
        return {i: text.text for i, text in self._outbox.items()}

    def unacknowledged_count(self) -> int:
        return len(self._outbox)

    def unacknowledged_chars(self) -> int:
        """Characters of text awaiting acks (what a bulk sender has in flight)."""
        return self._outbox_chars

    # -- the peer's texts ---------------------------------------------------------------

    def receive_text(self, message_id: int) -> bool:
        """True if text *message_id* is new and must be shown; False for one shown already.

        RemoteProtocolError if the peer skipped one (with resume, texts come in order).
        """
        if not self._resuming:
            return True  # a p2pchat/1 peer: every text is shown, as before
        if message_id <= self.shown:
            return False
        if self.done_received:
            raise RemoteProtocolError("the peer sent a message after saying its input had ended")
        if message_id != self.shown + 1:
            raise RemoteProtocolError("the peer skipped a message")
        self.shown = message_id
        return True

    def ack_for(self, message_id: int) -> int:
        """The id to acknowledge once text *message_id* is shown (or dropped as a duplicate)."""
        return self.shown if self._resuming else message_id

    # -- half-close -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Both sides said done and every text of ours is acknowledged: nothing more can happen."""
        return self.done_sent and self.done_received and not self._outbox
