"""Short codes (--code): SPAKE2 before Noise, one guess, single use; hostile peers built from the wire spec."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from pathlib import Path

import pytest

from p2pchat.core import pake
from p2pchat.core.messages import Hello
from p2pchat.core.session import Session
from p2pchat.core.wordlist import WORDS
from p2pchat.errors import HandshakeError, NetworkError, UsageError
from p2pchat.link.codes import CodeGate

from .helpers import key
from .procs import TIMEOUT, Proc, dialer, listener
from .wire_peer import WirePeer, hello


def test_codes_are_a_number_and_two_words_with_about_36_bits() -> None:
    code = pake.new_code()
    number = code.split("-")[0]
    assert 1 <= int(number) <= 999 and pake.parse_code(code) == code
    assert math.isclose(pake.CODE_ENTROPY_BITS, math.log2(999) + 2 * math.log2(7776))
    assert 35.5 < pake.CODE_ENTROPY_BITS < 36
    assert len(WORDS) == len(set(WORDS)) == 7776 and WORDS[0] == "abacus" and WORDS[-1] == "zoom"
    fixed = iter([416, 7000, 3])
    assert pake.new_code(lambda n: next(fixed)) == f"417-{WORDS[7000]}-{WORDS[3]}"


def test_typed_codes_are_normalised_and_typos_refused() -> None:
    assert pake.parse_code(" 7 Tulip REVENGE ") == "7-tulip-revenge"
    assert pake.parse_code("12-t-shirt-yo-yo") == "12-t-shirt-yo-yo"  # words that hold a hyphen
    for bad in ("0-abacus-zoom", "1000-abacus-zoom", "7-abacus", "7-abacus-zoom-zoom", "7-abacus-zooom", "x-a-b", ""):
        with pytest.raises(UsageError):
            pake.parse_code(bad)


def test_both_sides_get_one_psk_only_with_the_same_code() -> None:
    a = pake.CodeExchange("7-tulip-revenge", dialer=True)
    b = pake.CodeExchange("7 TULIP revenge", dialer=False)
    wrong = pake.CodeExchange("7-tulip-reverse", dialer=False)
    to_b = a.start()
    assert len(to_b) == 33 and to_b[0] == ord("A")
    assert a.finish(b.start()) == b.finish(to_b)
    again = pake.CodeExchange("7-tulip-revenge", dialer=True)
    to_wrong = again.start()
    assert again.finish(wrong.start()) != wrong.finish(to_wrong)
    for malformed in (b"", b"B" + bytes(32), b"A" * 33, bytes(33)):
        side = pake.CodeExchange("7-tulip-revenge", dialer=False)
        side.start()
        with pytest.raises(HandshakeError):
            side.finish(malformed)


def test_exact_bytes_so_an_incompatible_change_shows() -> None:
    # Fixed randomness on both sides: the messages and the psk are pinned (spake2 0.9, Ed25519 group).
    a = pake.CodeExchange("7-tulip-revenge", dialer=True, entropy=lambda n: bytes([1]) * n)
    b = pake.CodeExchange("7-tulip-revenge", dialer=False, entropy=lambda n: bytes([2]) * n)
    to_b, to_a = a.start(), b.start()
    psk = a.finish(to_a)
    assert psk == b.finish(to_b)
    pinned = json.loads((Path(__file__).parent / "data" / "code_vector.json").read_text())
    assert {"to_listener": to_b.hex(), "to_dialer": to_a.hex(), "psk": psk.hex()} == pinned


def _code(lis: Proc) -> str:
    return lis.wait_err(r"short code (\S+): ").group(1)


def test_a_chat_started_with_a_code_ends_at_a_lost_link(homes: tuple[Path, Path]) -> None:
    # The code is spent: nobody could take the link back with it, so waiting 600 s would be a lie.
    lis, port = listener(homes[0], "--code")
    with lis:
        code = _code(lis)
        with dialer(homes[1], port, "--code", code) as dia:
            lis.wait_err(r"dia joined")
            dia.kill()  # gone without bye
        lis.wait_err(r"connection lost")
        assert lis.finish() == 1
    assert "waiting for" not in lis.stderr_text.split("dia joined")[1]


def test_code_end_to_end_saves_both_keys_verified(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], "--code")
    with lis:
        code = _code(lis)
        # A caller without the code is turned away, and the code is not spent on it.
        with dialer(homes[1], port) as plain:
            assert plain.finish() == 3
        lis.wait_err(r"dropped a caller from .*sent no short code")
        with dialer(homes[1], port, "--code", code.replace("-", " ").upper()) as dia:
            dia.write("hello by code\n")
            lis.close_stdin()  # half-close: the chat ends once both inputs have ended
            assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0, lis.stderr_text
    assert lis.out == ["dia: hello by code\n"]
    invitation = next(line for line in lis.err if line.startswith("p2pchat dial "))
    assert invitation.rstrip().endswith(f"--code {code}")  # pasted as is, it works
    for home, other in ((homes[0], "dia"), (homes[1], "lis")):
        (entry,) = json.loads((home / "known_peers").read_text())["peers"]
        assert entry["names"] == [other] and entry["verified"] is True
    assert "is verified" in dia.stderr_text and "first contact" not in dia.stderr_text


def test_a_wrong_guess_uses_the_code_up(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], "--code")
    with lis:
        right = _code(lis)
        guess = "1-abacus-abacus" if right != "1-abacus-abacus" else "2-abacus-abacus"
        mallory = WirePeer.dial(port)
        assert mallory.code_exchange(guess)  # the listener answers once...
        assert mallory.handshake()
        mallory.send_json(hello("mallory"))
        assert mallory.recv_frame() is None  # ...and the psk from a wrong code fails the handshake
        mallory.close()
        assert lis.finish() == 3
    assert "the short code was tried and did not match" in lis.err[-1] and "used up" in lis.err[-1]
    with pytest.raises(ConnectionRefusedError):  # no second guess: the right code no longer works either
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    assert lis.out == []


def test_a_listener_in_the_middle_that_guesses_wrong_is_caught_by_the_dialer(homes: tuple[Path, Path]) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with server, dialer(homes[1], server.getsockname()[1], "--code", "7-tulip-revenge") as dia:
        server.settimeout(TIMEOUT)
        sock, _ = server.accept()
        mallory = WirePeer(sock, initiator=False)
        assert mallory.code_exchange("8-tulip-revenge")
        dia.write("secret\n")
        with pytest.raises(HandshakeError):  # Noise runs; the dialer's third message does not open with our psk
            mallory.handshake()
        mallory.close()
        assert dia.finish() == 3
        mallory.close()
    assert "the short code did not match" in dia.err[-1]
    assert not (homes[1] / "known_peers").exists() or 'verified": true' not in (homes[1] / "known_peers").read_text()


def test_only_one_caller_at_a_time_may_try_the_code() -> None:
    gate = CodeGate(
        "7-tulip-revenge", lambda psk: Session(initiator=False, static_key=key(2), hello=Hello("l", "t"), psk=psk)
    )
    first, first_far = socket.socketpair()
    second, second_far = socket.socketpair()
    deadline = time.monotonic() + TIMEOUT
    opened: list[object] = []
    thread = threading.Thread(target=lambda: opened.append(gate.open(first, deadline)))
    a = pake.CodeExchange("7-tulip-revenge", dialer=True)
    first_far.sendall(len(b := a.start()).to_bytes(2, "big") + b)
    thread.start()
    assert len(first_far.recv(100)) == 35  # the listener's answer: the first caller holds the code now
    thread.join(TIMEOUT)
    other = pake.CodeExchange("7-tulip-revenge", dialer=True).start()
    second_far.sendall(len(other).to_bytes(2, "big") + other)
    with pytest.raises(NetworkError, match="being tried by another caller"):
        gate.open(second, deadline)
    assert gate.settle(first, HandshakeError()) is not None  # its failure uses the code up
    for s in (first, first_far, second, second_far):
        s.close()
