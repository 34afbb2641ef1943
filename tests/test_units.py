"""Small pieces: text splitting, fingerprints and safety codes, files, addresses."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import pytest

from p2pchat import identity
from p2pchat.core import messages
from p2pchat.core.messages import MAX_ID, Text
from p2pchat.errors import LocalError, UsageError
from p2pchat.link import sockets as net


@pytest.mark.parametrize(
    "text",
    [
        "x" * 200_000,
        "é" * 70_000,
        "🙂" * 40_000,
        "\x01" * 30_000,  # six bytes each once JSON-escaped
        ("word " * 30_000) + "end",
        ("line\n" * 20_000),
        "short",
        "",
    ],
    ids=["ascii", "two-byte", "four-byte", "escaped", "words", "lines", "short", "empty"],
)
def test_split_text_keeps_everything_in_order_and_each_piece_fits(text: str) -> None:
    pieces = messages.split_text(text)
    assert "".join(pieces) == text
    for piece in pieces:
        assert len(messages.encode(Text(MAX_ID, piece, action=True))) <= messages.MAX_PADDED
    if len(pieces) > 1 and (" " in text or "\n" in text):
        assert all(piece[-1] in " \n" for piece in pieces[:-1])  # cut after whitespace
    assert len(pieces) <= 1 + len(text.encode()) * 6 // messages.MAX_TEXT_BYTES


def test_fingerprint_and_safety_code_formats() -> None:
    key = bytes(range(32))
    fingerprint = identity.fingerprint(key)
    assert len(fingerprint.split()) == 6 and all(len(g) == 5 and g.isdigit() for g in fingerprint.split())
    assert identity.fingerprint(key) == fingerprint  # stable
    assert identity.fingerprint(bytes(32)) != fingerprint
    assert identity.parse_fingerprint(fingerprint.replace(" ", "-")) == fingerprint
    with pytest.raises(UsageError):
        identity.parse_fingerprint("12345 6789")
    code = identity.safety_code(b"h" * 32)
    assert len(code.split()) == 4 and code != identity.safety_code(b"i" * 32)
    assert identity.colour_index(key, 12) == identity.colour_index(key, 12)


def test_home_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("P2PCHAT_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert identity.home() == tmp_path / "xdg" / "p2pchat"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert identity.home() == tmp_path / "user" / ".local" / "share" / "p2pchat"
    monkeypatch.setenv("P2PCHAT_HOME", str(tmp_path / "mine"))
    assert identity.home() == tmp_path / "mine"


def test_a_failed_write_leaves_the_old_file_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    known = identity.KnownPeers(tmp_path)
    known.remember(b"k" * 32, "alice", "host:1")
    known.save()
    before = (tmp_path / "known_peers").read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    known.remember(b"m" * 32, "bob", "host:2")
    with pytest.raises(LocalError, match="No space left on device"):
        known.save()
    assert (tmp_path / "known_peers").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["known_peers"]  # no temporary file left behind
    assert json.loads(before)["peers"][0]["names"] == ["alice"]


def test_known_peers_moves_an_address_and_forgets() -> None:
    known = identity.KnownPeers(Path("/nonexistent-p2pchat-test"))
    known.remember(b"a" * 32, "alice", "host:1")
    known.remember(b"b" * 32, "alice", "host:1")
    assert known.key_for_address("host:1") is not None and known.key_for_address("host:1").key == b"b" * 32  # type: ignore[union-attr]
    assert len(known.keys_for_name("alice")) == 2
    assert known.forget("host:1") and known.key_for_address("host:1") is None
    assert known.forget(identity.fingerprint(b"a" * 32)) and known.get(b"a" * 32) is None


@pytest.mark.parametrize(
    ("text", "listening", "expected"),
    [
        ("9090", True, net.Address(None, 9090)),
        ("0", True, net.Address(None, 0)),
        ("127.0.0.1:0", True, net.Address("127.0.0.1", 0)),
        ("example.org:9090", False, net.Address("example.org", 9090)),
        ("[::1]:9090", False, net.Address("::1", 9090)),
        ("[::]:9090", True, net.Address("::", 9090)),
    ],
)
def test_addresses(text: str, listening: bool, expected: net.Address) -> None:
    assert net.parse_address(text, listening=listening) == expected


@pytest.mark.parametrize("text", ["9090", "host", "host:0", "host:65536", "::1:9090", "[::1]9090", ":9090", "h:x"])
def test_bad_dial_addresses(text: str) -> None:
    with pytest.raises(UsageError):
        net.parse_address(text, listening=False)


def test_listen_on_every_interface_takes_ipv4_and_ipv6() -> None:
    server = net.listen(net.Address(None, 0))
    with server:
        port = server.getsockname()[1]
        families = [socket.AF_INET]
        if socket.has_dualstack_ipv6() and server.family == socket.AF_INET6:
            families.append(socket.AF_INET6)
        for family in families:
            host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
            with socket.socket(family) as client:
                client.connect((host, port))
                accepted, _ = server.accept()
                accepted.close()


def test_fast_text_encoding_is_byte_for_byte_json() -> None:
    import json
    import random

    rng = random.Random(7)
    alphabet = ['"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "🙂", "\u2028", "a", " ", "/", "\ud7ff"]
    for n in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for message in (Text(n + 1, text), Text(MAX_ID, text, action=True)):
            generic = json.dumps(messages.to_json(message), ensure_ascii=False, separators=(",", ":")).encode()
            assert messages.encode(message).rstrip(b" ") == generic
            assert messages.decode(messages.encode(message)) == message


def test_corrupt_known_peers_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "known_peers").write_text('{"peers": [{"key": "zz"}]}')
    with pytest.raises(LocalError, match="is corrupt"):
        identity.KnownPeers(tmp_path)
