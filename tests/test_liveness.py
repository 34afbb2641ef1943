"""Liveness and deadlines (issue #10 items 1 and 7, issue #11 finding 8): a dead link is noticed,
a p2pchat/1 peer that knows no keepalive is never held to one, and a peer that reads nothing
cannot hang us."""

from __future__ import annotations

import queue
import select
import signal
import socket
import threading
from pathlib import Path

import pytest

from p2pchat.core.messages import Text
from p2pchat.errors import ConnectionLost, P2PChatError
from p2pchat.link.connection import CLOSE_TIMEOUT, Connection

from .helpers import SessionPair
from .procs import TIMEOUT, dialer, finish_all, listener
from .wire_peer import WirePeer, hello

KEEPALIVE = 1  # seconds: the smallest interval, so a lost link is noticed within about 3 s


def test_a_silent_link_is_noticed_within_three_keepalives(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], "--keepalive", str(KEEPALIVE), "--resume-for", "0")
    with lis, dialer(homes[1], port, "--keepalive", str(KEEPALIVE)) as dia:
        lis.wait_err(r"dia joined")
        dia.signal(signal.SIGSTOP)  # alive to TCP, silent to p2pchat: a dead link, not a closed one
        try:
            lis.wait_err(rf"connection lost: nothing from the peer for {3 * KEEPALIVE} s", timeout=10)
            assert lis.finish() == 1  # --resume-for 0: the chat ends at the first loss
        finally:
            dia.signal(signal.SIGCONT)


def test_a_peer_without_extensions_gets_no_keepalive_and_no_deadline(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], "--keepalive", str(KEEPALIVE))
    with lis:
        peer = WirePeer.dial(port)
        assert peer.handshake()
        peer.send_json(hello("old"))  # announces no features: a p2pchat/1 peer of before
        theirs = peer.recv_json()
        assert theirs is not None and theirs["type"] == "hello"
        # Silent for longer than 3 keepalive intervals: p2pchat must neither drop us nor send anything.
        readable, _, _ = select.select([peer.sock], [], [], 3 * KEEPALIVE + 1)
        assert readable == []
        peer.send_json({"type": "text", "id": 1, "text": "still here"})
        assert peer.recv_json() == {"type": "ack", "id": 1}  # JSON, as a p2pchat/1 peer expects
        lis.wait_out(r"^old: still here$")
        peer.send_json({"type": "bye"})
        assert lis.finish() == 0, lis.stderr_text
        peer.close()
    assert "connection lost" not in lis.stderr_text


def test_a_peer_that_reads_nothing_is_lost_and_closing_has_a_deadline() -> None:
    pair = SessionPair()
    pair.handshake()
    ours, theirs = socket.socketpair()
    lost: queue.Queue[P2PChatError] = queue.Queue()
    connection = Connection(ours, pair.alice, keepalive=15, send_timeout=0.5)
    connection.start(lambda event: None, lost.put)
    try:
        for n in range(1, 200):  # ~12 MiB: far more than the socket buffers hold; theirs never reads
            connection.send(Text(n, "x" * 60_000))
        error = lost.get(timeout=TIMEOUT)
        assert isinstance(error, ConnectionLost) and "took no data" in str(error)
        closing = threading.Thread(target=connection.close)
        closing.start()
        closing.join(4 * CLOSE_TIMEOUT + 1)  # every join inside close() has its own deadline
        assert not closing.is_alive()
    finally:
        theirs.close()


def test_a_chat_ends_with_both_inputs_and_keepalives_keep_a_quiet_link_up(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], "--keepalive", str(KEEPALIVE))
    with lis, dialer(homes[1], port, "--keepalive", str(KEEPALIVE)) as dia:
        lis.wait_err(r"dia joined")
        # Quiet for longer than the peer's 3 s deadline: only keepalives cross, and nobody is lost.
        with pytest.raises(AssertionError, match="no line matching"):
            lis.wait_err(r"connection lost", timeout=3 * KEEPALIVE + 1)
        dia.write("after the quiet\n")
        lis.wait_out(r"^dia: after the quiet$")
        assert finish_all(dia, lis) == [0, 0]
    assert "connection lost" not in lis.stderr_text + dia.stderr_text
