"""Review #15: after PeerRestarted ("a new conversation begins") the FileEngine keeps the old peer's
transfers. The restarted peer numbers its offers from 1 again: its first offer reuses an id the
engine knows, with another name, and the chat ends with a protocol error.
"""

from __future__ import annotations

import socket
import threading
import time

from p2pchat.core import filewire
from p2pchat.core.filewire import FileOffer
from p2pchat.core.messages import RESUME, Hello
from p2pchat.core.session import Session
from p2pchat.events import ChatEvent, PeerRestarted
from p2pchat.link import handshake
from p2pchat.link.connection import Connection
from p2pchat.link.conversation import Conversation
from p2pchat.link.filetransfer import FileEngine, FileEvent

from .helpers import key

KEEPALIVE = 30
FEATURES = (RESUME, filewire.FEATURE)


def connect(conversation: Conversation, peer_conversation: str) -> tuple[socket.socket, Session]:
    """A new connection from the peer (whose conversation id is *peer_conversation*), adopted."""
    ours_sock, theirs_sock = socket.socketpair()
    fields = conversation.hello_fields()
    ours = Session(
        initiator=False,
        static_key=key(2),
        hello=Hello(
            "me", "t", FEATURES, keepalive=KEEPALIVE, conversation=fields.conversation,
            peer_conversation=fields.peer_conversation, received=fields.received,
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


def test_a_restarted_peer_can_offer_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    events: list[ChatEvent] = []
    file_events: list[FileEvent] = []
    conversation = Conversation(resume_for=60)
    conversation.use_files(FileEngine(file_events.append, directory=tmp_path))
    sock, peer = connect(conversation, "a" * 32)
    conversation.start(events.append)
    sock.sendall(peer.send_plaintext(filewire.encode(FileOffer(1, "holiday.jpg", 1000))))
    time.sleep(0.3)
    assert len(file_events) == 1  # offered; nobody answers
    sock.close()  # the peer's program is stopped without a bye: the link is lost, the chat resumes
    time.sleep(0.3)
    sock, peer = connect(conversation, "b" * 32)  # it is started again: a new conversation
    time.sleep(0.3)
    assert any(isinstance(event, PeerRestarted) for event in events)
    sock.sendall(peer.send_plaintext(filewire.encode(FileOffer(1, "report.pdf", 2000))))  # its first offer
    time.sleep(0.5)
    assert conversation.ended is None, conversation.ended
    conversation.close(say_bye=False)
    sock.close()
