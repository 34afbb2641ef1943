"""Issue #11, findings 1, 3, 4, 11, 12: hostile peers built from the wire spec, real processes on loopback."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from p2pchat import cli, identity
from p2pchat.core import messages
from p2pchat.core.names import comparable, escape_invisible
from p2pchat.errors import MessageError
from p2pchat.term.sanitize import clean_name

from .procs import TIMEOUT, Proc, dialer, listener
from .wire_peer import WirePeer, hello


def test_lone_surrogate_in_any_string_is_malformed() -> None:
    for raw in (
        b'{"type":"hello","name":"\\ud800","client":"x"}',
        b'{"type":"hello","name":"a","client":"\\uDFFF"}',
        b'{"type":"text","id":1,"text":"x\\udc00y"}',
        b'{"type":"bye","unknown":["\\ud83d"]}',  # unknown fields too: nothing undecodable gets through
        b'{"type":"ack","id":1,"\\ud800":1}',
    ):
        with pytest.raises(MessageError, match="not valid Unicode"):
            messages.decode(raw)
    # A surrogate pair written as escapes is one ordinary character.
    assert messages.decode(b'{"type":"text","id":1,"text":"\\ud83d\\ude00"}') == messages.Text(1, "\U0001f600")


def test_surrogate_name_from_a_caller_is_dropped_and_the_listener_goes_on(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis:
        peer = WirePeer.dial(port)
        assert peer.handshake()
        peer.send_json(hello("\ud800"))
        assert peer.recv_json() is not None  # the listener's hello, then it hangs up on us
        assert peer.recv_frame() is None
        peer.close()
        lis.wait_err(r"dropped a caller from 127\.0\.0\.1:\d+: .*not valid Unicode")
        with dialer(homes[1], port) as dia:
            dia.write("still here\n")
            assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0
    assert lis.out == ["dia: still here\n"]
    assert "Traceback" not in lis.stderr_text and "internal error" not in lis.stderr_text


def test_surrogate_name_from_a_listener_is_a_protocol_error_for_the_dialer(homes: tuple[Path, Path]) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with server, dialer(homes[1], server.getsockname()[1]) as dia:
        server.settimeout(TIMEOUT)
        sock, _ = server.accept()
        peer = WirePeer(sock, initiator=False)
        assert peer.handshake()
        peer.send_json(hello("\udfff"))
        assert dia.finish() == 3
        peer.close()
    assert dia.err[-1].startswith("p2pchat: ") and "not valid Unicode" in dia.err[-1]
    assert "Traceback" not in dia.stderr_text


def test_known_peers_save_survives_any_name(tmp_path: Path) -> None:
    known = identity.KnownPeers(tmp_path)
    known.remember(bytes(32), "\ud800 odd", "h:1")  # even if a decoder ever let one through
    known.save()
    again = identity.KnownPeers(tmp_path)
    assert again.peers[bytes(32)].addresses == ["h:1"]


def test_handshake_payload_is_refused(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis:
        peer = WirePeer.dial(port)
        assert peer.handshake(payloads=(b"", b"", b"grind me"))  # the third message is ours
        assert peer.recv_frame() is None  # refused there: no hello, the listener hangs up
        peer.close()
        lis.wait_err(r"dropped a caller from .*payload")
        peer = WirePeer.dial(port)
        peer.send_frame(peer.hs.write_message(b"x"))  # in the first message too
        assert peer.recv_frame() is None
        peer.close()
        lis.wait_err(r"dropped a caller from .*payload")
        assert lis.popen.poll() is None
    assert lis.out == []


@pytest.mark.parametrize("name", ["bob\u200b", "bob ", "b\u200dob", "\u200fbob", "\u00adBob", "\ufeffbob", "\u0301bob"])
def test_names_that_look_the_same_compare_the_same(tmp_path: Path, name: str) -> None:
    assert comparable(name) == comparable("bob")
    known = identity.KnownPeers(tmp_path)
    known.remember(bytes(32), "bob", None)
    assert [p.key for p in known.keys_for_name(name)] == [bytes(32)]
    assert comparable("bo b") != comparable("bob")  # a visible difference stays a difference


def test_invisible_characters_in_names_are_shown_escaped() -> None:
    assert clean_name("bob\u200b") == "bob\\u200b"
    assert clean_name("b\u200dob") == "b\\u200dob"
    assert clean_name("\u202ebob") == "\\u202ebob"
    assert clean_name("\u0301bob") == "\\u0301bob"
    assert clean_name("café") == "café" and clean_name("cafe\u0301") == "cafe\u0301"  # a mark on a letter is fine
    assert escape_invisible("\U000e0041") == "\\U000e0041"  # a tag character


def test_name_with_an_invisible_character_still_warns(homes: tuple[Path, Path]) -> None:
    homes[1].mkdir(parents=True)
    known = {"version": 1, "peers": [{"key": bytes(32).hex(), "names": ["lis"], "addresses": [], "verified": True}]}
    (homes[1] / "known_peers").write_text(json.dumps(known))
    lis, port = listener(homes[0], "--name", "l\u200dis\u200b")
    with lis, dialer(homes[1], port) as dia:
        dia.write("hi\n")
        assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0
    assert "WARNING: the name l\\u200dis\\u200b was used before by a different key" in dia.stderr_text


def test_dialing_yourself_is_refused(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, dialer(homes[0], port) as dia:  # the same home: the same key on both ends
        dia.write("hello me\n")
        assert dia.finish() == 3
        assert "your own key" in dia.err[-1]
    assert not (homes[0] / "known_peers").exists()  # nothing remembered about "yourself"


def test_passphrase_leaves_the_environment_once_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PCHAT_PASSPHRASE", "sesame")
    assert cli._passphrase(False) == "sesame"
    assert "P2PCHAT_PASSPHRASE" not in os.environ


def test_internal_error_line_never_quotes_the_exception(tmp_path: Path) -> None:
    # A known_peers file whose contents would be in the exception's text, were it printed.
    (tmp_path / "known_peers").write_text('{"peers": [{"key": "zz-secret-zz"}]}')
    with Proc(["forget", "x:1"], tmp_path) as proc:
        assert proc.finish() == 4
    assert "zz-secret-zz" not in proc.stderr_text
