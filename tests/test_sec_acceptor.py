"""Issue #11, findings 5, 7 and 10: concurrent bounded handshakes, throttled guessing, one-sided passphrases."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2pchat.core.messages import Hello
from p2pchat.core.noise import public_bytes
from p2pchat.core.session import HandshakeComplete, Session
from p2pchat.errors import ConnectionLost, HandshakeError, KeyMismatchError, P2PChatError, PassphraseMismatch
from p2pchat.link.acceptor import Acceptor, Closed
from p2pchat.link.handshake import handshake

from .helpers import SessionPair
from .procs import TIMEOUT, dialer, listener
from .wire_peer import WirePeer

PASS = {"P2PCHAT_PASSPHRASE": "correct horse battery staple"}


def test_silent_callers_do_not_keep_the_real_peer_out(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    silent = []
    with lis:
        # A caller that says nothing is cut off at the first-message deadline, not the handshake timeout.
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=("127.0.0.6", 0)) as mute:
            assert mute.recv(10) == b""
        lis.wait_err(r"dropped a caller from 127\.0\.0\.6:\d+: the caller did not start the handshake within 3 s")
        # Twelve callers that never say a word, from three addresses, four each (the per-address cap)...
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            for _ in range(4):
                silent.append(
                    socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
                )
        # ...and a fifth from one of them, refused at once: one machine cannot take every slot.
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=("127.0.0.2", 0)) as extra:
            assert extra.recv(10) == b""
        lis.wait_err(r"dropped a caller from 127\.0\.0\.2:\d+: already 4 handshakes in progress from that address")
        # The real peer gets through while they hang (before: one at a time, 10 s each; it gave up after 5).
        with dialer(homes[1], port, "--handshake-timeout", "5") as dia:
            dia.write("through the crowd\n")
            lis.close_stdin()  # half-close: the chat ends once both inputs have ended
            assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0
    for sock in silent:
        sock.close()
    assert lis.out == ["dia: through the crowd\n"]


def test_passphrase_guesses_are_throttled_per_source(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], env=PASS)
    with lis:
        served = 0
        for _ in range(10):
            guess = WirePeer.dial(port, source="127.0.0.5", psk=os.urandom(32))
            if not guess.handshake():  # refused before any answer: throttled
                guess.close()
                break
            assert guess.recv_frame() is None  # a wrong guess: the listener hangs up without a hello
            guess.close()
            served += 1
            lis.wait_err(r"dropped a caller from 127\.0\.0\.5:\d+: .*passphrases may differ")
        else:
            raise AssertionError("ten wrong guesses in a row were all served")
        assert 3 <= served <= 6  # three are free, then the waits grow (1 s, 2 s, ...)
        lis.wait_err(r"dropped a caller from 127\.0\.0\.5:\d+: too many failed handshakes; refusing callers")
        # Another address, the real peer, is not locked out.
        with dialer(homes[1], port, env=PASS) as dia:
            dia.write("the right passphrase\n")
            lis.close_stdin()  # half-close: the chat ends once both inputs have ended
            assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0
    assert lis.out == ["dia: the right passphrase\n"]


def test_passphrase_on_the_listener_only(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], env=PASS)
    with lis:
        with dialer(homes[1], port) as dia:
            dia.write("never\n")
            assert dia.finish() == 3
        assert "the passphrases may differ (or one side has none)" in dia.err[-1]
        lis.wait_err(
            r"dropped a caller from .*: the handshake failed: the passphrases may differ \(or one side has none\)"
        )
        assert lis.popen.poll() is None
    assert lis.out == []


def test_passphrase_on_the_dialer_only(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis:
        with dialer(homes[1], port, env=PASS) as dia:
            dia.write("never\n")
            assert dia.finish() == 3
        assert "the passphrases may differ (or one side has none)" in dia.err[-1]
        lis.wait_err(
            r"dropped a caller from .*: the handshake failed: the passphrases may differ \(or one side has none\)"
        )
        assert lis.popen.poll() is None
    assert lis.out == []


def _session(initiator: bool, static: X25519PrivateKey, name: str) -> Session:
    return Session(initiator=initiator, static_key=static, hello=Hello(name, "test"))


def _call(port: int, static: X25519PrivateKey, results: list[object]) -> threading.Thread:
    def run() -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        try:
            results.append(handshake(sock, _session(True, static, "caller"), timeout=TIMEOUT)[0])
        except P2PChatError as exc:
            results.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_acceptor_api_next_with_a_predicate_again_and_again_then_close() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    me, wanted, other = X25519PrivateKey.generate(), X25519PrivateKey.generate(), X25519PrivateKey.generate()
    rejected: list[str] = []
    reported = threading.Condition()

    def on_rejected(address: str, error: P2PChatError) -> None:
        with reported:  # reported from a handshake thread, possibly after the caller saw the hang-up
            rejected.append(str(error))
            reported.notify_all()

    def only(key: X25519PrivateKey) -> Callable[[HandshakeComplete], None]:
        def admit(done: HandshakeComplete) -> None:
            if done.remote_static != public_bytes(key):
                raise KeyMismatchError("not the one")

        return admit

    acceptor = Acceptor(server, lambda: _session(False, me, "me"), on_rejected, admit=only(wanted))

    try:
        for _ in range(2):  # the same acceptor serves one next() after another
            results: list[object] = []
            callers = [_call(port, other, results), _call(port, wanted, results)]
            accepted = acceptor.next(only(wanted), timeout=TIMEOUT)
            assert accepted.peer.remote_static == public_bytes(wanted) and accepted.peer.hello.name == "caller"
            accepted.sock.close()
            for thread in callers:
                thread.join(TIMEOUT)
            # The other key was turned away: a refused handshake, or a reset if its hello was still unread.
            assert any(isinstance(r, (HandshakeError, ConnectionLost)) for r in results), results
        with reported:
            assert reported.wait_for(lambda: rejected.count("not the one") == 2, TIMEOUT), rejected
        waiting: list[BaseException] = []

        def wait() -> None:
            try:
                acceptor.next(only(wanted))
            except BaseException as exc:
                waiting.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        acceptor.close()  # a next() waiting in another thread returns
        waiter.join(TIMEOUT)
        assert not waiter.is_alive() and isinstance(waiting[0], Closed)
    finally:
        acceptor.close()
        server.close()


def test_one_sided_passphrase_is_recognised_by_the_responder() -> None:
    for dialer_psk, listener_psk in ((bytes(32), None), (None, bytes(32)), (bytes(32), bytes([1]) * 32)):
        pair = SessionPair(psk_i=dialer_psk, psk_r=listener_psk)
        with pytest.raises(PassphraseMismatch):
            pair.handshake()
