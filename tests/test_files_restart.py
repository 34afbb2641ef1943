"""A peer whose program restarted (same key, a new conversation) numbers its offers from 1 again:
its old offers are void (said in one line each), and its new ones are offers like any other."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

from p2pchat.core import filewire
from p2pchat.core.filewire import FileOffer
from p2pchat.core.messages import RESUME, Hello
from p2pchat.core.session import Session
from p2pchat.events import LinkDown, PeerRestarted
from p2pchat.link import handshake
from p2pchat.link.connection import Connection
from p2pchat.link.conversation import Conversation
from p2pchat.link.filetransfer import FileEngine, FileOffered, FileOutcome

from .helpers import key

KEEPALIVE = 30
DEADLINE = 10.0
FEATURES = (RESUME, filewire.FEATURE)


def connect(conversation: Conversation, peer_conversation: str) -> tuple[socket.socket, Session]:
    """A new connection from the peer (whose conversation id is *peer_conversation*), adopted."""
    ours_sock, theirs_sock = socket.socketpair()
    fields = conversation.hello_fields()
    ours = Session(
        initiator=False,
        static_key=key(2),
        hello=Hello(
            "me",
            "t",
            FEATURES,
            keepalive=KEEPALIVE,
            conversation=fields.conversation,
            peer_conversation=fields.peer_conversation,
            received=fields.received,
        ),
    )
    theirs = Session(
        initiator=True,
        static_key=key(1),
        hello=Hello("peer", "t", FEATURES, keepalive=KEEPALIVE, conversation=peer_conversation),
    )
    result: dict[str, list] = {}
    thread = threading.Thread(target=lambda: result.setdefault("early", handshake.handshake(ours_sock, ours)[1]))
    thread.start()
    handshake.handshake(theirs_sock, theirs)
    thread.join(10)
    conversation.adopt(Connection(ours_sock, ours, KEEPALIVE), result["early"])
    return theirs_sock, theirs


class Seen:
    """Events of the conversation and of its files, waited for with a deadline."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.changed = threading.Condition()

    def add(self, event: object) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait(self, predicate: Callable[[object], bool], what: str) -> object:
        with self.changed:
            assert self.changed.wait_for(lambda: any(map(predicate, self.events)), DEADLINE), what
            return next(event for event in self.events if predicate(event))


def test_a_restarted_peer_can_offer_a_file(tmp_path: Path) -> None:
    seen = Seen()
    conversation = Conversation(resume_for=60)
    conversation.use_files(FileEngine(seen.add, directory=tmp_path))
    sock, peer = connect(conversation, "a" * 32)
    conversation.start(seen.add)
    sock.sendall(peer.send_plaintext(filewire.encode(FileOffer(1, "holiday.jpg", 1000))))
    seen.wait(lambda e: isinstance(e, FileOffered) and e.number == 1, "the first offer")  # nobody answers
    sock.close()  # the peer's program is stopped without a bye: the link is lost, the chat may resume
    seen.wait(lambda e: isinstance(e, LinkDown), "the loss")
    sock, peer = connect(conversation, "b" * 32)  # it is started again: a new conversation
    seen.wait(lambda e: isinstance(e, PeerRestarted), "the restart")
    stopped = seen.wait(lambda e: isinstance(e, FileOutcome) and e.number == 1, "the old offer void")
    assert isinstance(stopped, FileOutcome) and "holiday.jpg stopped: the peer's p2pchat restarted" in stopped.line
    sock.sendall(peer.send_plaintext(filewire.encode(FileOffer(1, "report.pdf", 2000))))  # its first offer: id 1
    offered = seen.wait(lambda e: isinstance(e, FileOffered) and e.number == 2, "the new offer")
    assert isinstance(offered, FileOffered) and offered.name == "report.pdf"
    assert conversation.ended is None
    conversation.close(say_bye=False)
    sock.close()
