"""Faults inside a session and around it: each ends as one clear line with the documented exit code."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2pchat.core import messages
from p2pchat.core.framing import encode_frame
from p2pchat.core.messages import Hello
from p2pchat.core.session import Session
from p2pchat.errors import NetworkError
from p2pchat.link import handshake
from p2pchat.link import sockets as net

from .procs import TIMEOUT, Proc, dialer, listener
from .relay import Meddler, Relay

# Frames from the dialer: 0 and 1 are handshake messages, 2 is its hello, then its texts.
FIRST_TEXT = 3


def _flip(direction: str, index: int, frame: bytes) -> bytes | None:
    if direction == "to_listener" and index == FIRST_TEXT:
        return frame[:10] + bytes([frame[10] ^ 0x04]) + frame[11:]
    return frame


def _drop(direction: str, index: int, frame: bytes) -> bytes | None:
    return b"" if direction == "to_listener" and index == FIRST_TEXT else frame


def _duplicate(direction: str, index: int, frame: bytes) -> bytes | None:
    return frame * 2 if direction == "to_listener" and index == FIRST_TEXT else frame


_held: list[bytes] = []


def _reorder(direction: str, index: int, frame: bytes) -> bytes | None:
    if direction == "to_listener" and index == FIRST_TEXT:
        _held.append(frame)
        return b""
    if direction == "to_listener" and index == FIRST_TEXT + 1:
        return frame + _held.pop()
    return frame


def _truncate(direction: str, index: int, frame: bytes) -> bytes | None:
    if direction == "to_listener" and index == FIRST_TEXT:
        return frame[: len(frame) // 2]  # then the dialer's EOF follows: the frame never completes
    return b"" if direction == "to_listener" and index > FIRST_TEXT else frame


@pytest.mark.parametrize("meddle", [_flip, _drop, _duplicate, _reorder], ids=lambda m: m.__name__[1:])
def test_meddling_man_in_the_middle_is_caught(homes: tuple[Path, Path], meddle: Meddler) -> None:
    lis, port = listener(homes[0])
    relay = Relay(port, meddle)
    with lis, dialer(homes[1], relay.port) as dia:
        dia.write("first secret\nsecond secret\nthird secret\n")
        lis.wait_err(r"may have been tampered with")  # before finish() closes the listener's stdin
        assert lis.finish() == 3
        assert dia.finish() == 1  # the listener hung up: our texts were not delivered
    relay.close()
    assert "may have been tampered with" in lis.err[-1]
    assert "secret" not in "".join(lis.out)  # nothing after the bad frame is shown
    assert "not delivered: third secret" in dia.stderr_text
    assert "Traceback" not in lis.stderr_text + dia.stderr_text


def test_truncated_frame_is_caught(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    relay = Relay(port, _truncate)
    with lis, dialer(homes[1], relay.port, "--wait", "0.2") as dia:  # gives up on the ack, hangs up
        dia.write("only line\n")
        dia.close_stdin()
        lis.wait_err(r"may have been tampered with")
        assert lis.finish() == 3
        dia.kill()
    relay.close()
    assert "may have been tampered with" in lis.err[-1]
    assert lis.out == []


def test_cut_without_bye_is_connection_lost(homes: tuple[Path, Path]) -> None:
    def cut(direction: str, index: int, frame: bytes) -> bytes | None:
        return None if direction == "to_listener" and index == FIRST_TEXT + 1 else frame

    lis, port = listener(homes[0])
    relay = Relay(port, cut)
    with lis, dialer(homes[1], relay.port) as dia:
        dia.write("arrives\nis cut\n")
        lis.wait_err(r"connection lost")
        assert lis.finish() == 1
        assert dia.finish() == 1
    relay.close()
    assert lis.out == ["dia: arrives\n"]
    assert "connection lost" in lis.err[-1]
    assert "not delivered: is cut" in dia.stderr_text  # ("arrives" too, if the cut beat its ack)


def _raw_peer(port: int) -> tuple[socket.socket, Session]:
    """A peer built from p2pchat's own session, so it can say things p2pchat never would."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    session = Session(initiator=True, static_key=X25519PrivateKey.generate(), hello=Hello("raw", "test"))
    handshake.handshake(sock, session)
    return sock, session


@pytest.mark.parametrize(
    "plaintext",
    [b'{"type":"text","id":"1","text":"x"}', b"{not json at all", b'{"type":"text","id":1,"text":["x"]}'],
)
def test_malformed_message_from_an_authenticated_peer_is_exit_3(homes: tuple[Path, Path], plaintext: bytes) -> None:
    lis, port = listener(homes[0])
    with lis:
        sock, session = _raw_peer(port)
        assert session._send_cipher is not None
        sock.sendall(encode_frame(session._send_cipher.encrypt_with_ad(b"", messages.pad(plaintext))))
        lis.wait_err(r"the peer sent")
        assert lis.finish() == 3
        sock.close()
    assert lis.err[-1].startswith("p2pchat: the peer sent")
    assert lis.out == []


def test_silent_caller_times_out_and_listener_keeps_waiting(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], "--handshake-timeout", "0.5")
    with lis, socket.create_connection(("127.0.0.1", port)) as silent:
        lis.wait_err(r"dropped a caller .*did not complete the handshake within 0.5 s")
        assert silent.recv(100) == b""  # the listener hung up on it
        with dialer(homes[1], port) as dia:
            dia.write("after the silent one\n")
            assert dia.finish() == 0
        assert lis.finish() == 0
    assert lis.out == ["dia: after the silent one\n"]


def test_second_caller_is_refused_without_disturbing_the_chat(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port) as dia:
        lis.wait_err(r"dia joined")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        dia.write("still here\n")
        lis.wait_out(r"^dia: still here$")
        lis.write("me too\n")
        dia.wait_out(r"^lis: me too$")
        assert dia.finish() == 0 and lis.finish() == 0


def test_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with Proc(["listen", f"127.0.0.1:{port}"], tmp_path) as proc:
            assert proc.finish() == 1
    assert proc.err[-1] == f"p2pchat: cannot listen on 127.0.0.1:{port}: port {port} is already in use\n"


def test_local_network_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def resolver(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
        if host.endswith(".invalid"):
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, ("127.0.0.1", port))]

    cases = [
        ("example.invalid", 0, "unknown host example.invalid"),
        ("example.org", errno.ECONNREFUSED, "connection refused"),
        ("example.org", errno.ENETUNREACH, "Network is unreachable"),
        ("example.org", errno.EHOSTUNREACH, "No route to host"),
    ]  # no answer at all: tests/test_dial.py, with a real black hole
    for host, code, expected in cases:
        monkeypatch.setattr(socket.socket, "connect_ex", lambda self, where, code=code: code)
        with pytest.raises(NetworkError, match=expected) as info:
            net.dial(net.Address(host, 9), resolver=resolver)
        assert "\n" not in str(info.value) and info.value.exit_code == 1
    denied = net._listen_error(net.Address(None, 80), OSError(errno.EACCES, "Permission denied"))
    assert str(denied) == "cannot listen on *:80: permission denied (ports below 1024 need privileges)"


def test_unwritable_known_peers_is_one_line_exit_4(homes: tuple[Path, Path]) -> None:
    homes[1].mkdir(parents=True)
    (homes[1] / "known_peers").mkdir()  # a directory where the file goes: every write fails
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port) as dia:
        assert dia.finish() == 4
    assert dia.err[-1].startswith("p2pchat: ") and "known_peers" in dia.err[-1]
    assert "Traceback" not in dia.stderr_text


def test_peer_that_says_bye_instead_of_hello() -> None:
    from p2pchat.core.messages import Bye
    from p2pchat.errors import ConnectionLost

    ours, theirs = socket.socketpair()
    rogue = Session(initiator=True, static_key=X25519PrivateKey.generate(), hello=Hello("r", "t"))
    rogue._hello = Bye()  # type: ignore[assignment]  # a peer that leaves instead of saying hello

    def run_rogue() -> None:
        with contextlib.suppress(Exception):
            handshake.handshake(theirs, rogue, timeout=TIMEOUT)
        theirs.close()

    thread = threading.Thread(target=run_rogue)
    thread.start()
    session = Session(initiator=False, static_key=X25519PrivateKey.generate(), hello=Hello("us", "t"))
    with pytest.raises(ConnectionLost, match="left during the handshake"):
        handshake.handshake(ours, session, timeout=TIMEOUT)
    ours.close()
    thread.join(TIMEOUT)
