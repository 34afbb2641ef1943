"""Two sessions joined in memory: the p2pchat/1 protocol end to end, no sockets."""

from __future__ import annotations

import hashlib

import pytest

from p2pchat.core import messages
from p2pchat.core.framing import encode_frame
from p2pchat.core.messages import Ack, Bye, Hello, Rekey, Text
from p2pchat.core.noise import MAX_NONCE, CipherState, public_bytes
from p2pchat.core.session import HandshakeComplete, Session, derive_psk
from p2pchat.errors import (
    ConnectionLost,
    FrameError,
    HandshakeError,
    LocalProtocolError,
    MessageError,
    NonceExhaustedError,
    RemoteProtocolError,
    TamperedError,
)

from .helpers import SessionPair, key


def test_handshake_hello_texts_acks_bye() -> None:
    pair = SessionPair()
    bob_events, alice_events = pair.handshake()
    assert bob_events[0] == HandshakeComplete(public_bytes(key(1)), bob_events[0].handshake_hash)  # type: ignore[union-attr]
    assert alice_events[0] == HandshakeComplete(public_bytes(key(2)), bob_events[0].handshake_hash)  # type: ignore[union-attr]
    assert bob_events[1:] == [Hello("alice", "test")]
    assert alice_events[1:] == [Hello("bob", "test")]
    assert pair.deliver(pair.alice, pair.bob, Text(1, "hi bob")) == [Text(1, "hi bob")]
    assert pair.deliver(pair.bob, pair.alice, Text(1, "waves", action=True)) == [Text(1, "waves", action=True)]
    assert pair.deliver(pair.alice, pair.bob, Text(2, "ünïcødé ✓ 🙂\nline two\ttab")) == [
        Text(2, "ünïcødé ✓ 🙂\nline two\ttab")
    ]
    assert pair.deliver(pair.alice, pair.bob, Bye()) == [Bye()]
    pair.bob.receive_eof()  # a clean end: no ConnectionLost
    with pytest.raises(LocalProtocolError):
        pair.alice.send(Text(3, "after bye"))


def test_eof_without_bye_is_connection_lost() -> None:
    pair = SessionPair()
    pair.handshake()
    with pytest.raises(ConnectionLost):
        pair.bob.receive_eof()


def test_eof_during_handshake_is_connection_lost() -> None:
    pair = SessionPair()
    pair.bob.receive_data(pair.alice.data_to_send())
    with pytest.raises(ConnectionLost, match="during the handshake"):
        pair.bob.receive_eof()


@pytest.mark.parametrize("interval", [1, 2, 7])
def test_rekey_in_both_directions(interval: int) -> None:
    pair = SessionPair(rekey_interval=interval)
    pair.handshake()
    for n in range(1, 25):
        assert pair.deliver(pair.alice, pair.bob, Text(n, f"a{n}")) == [Text(n, f"a{n}")]
        assert pair.deliver(pair.bob, pair.alice, Text(n, f"b{n}")) == [Text(n, f"b{n}")]
    assert pair.alice._send_cipher is not None and pair.bob._recv_cipher is not None
    assert pair.alice._send_cipher.k == pair.bob._recv_cipher.k
    # The key really changed: a cipher that never rekeyed cannot read the next message.
    stale = SessionPair(rekey_interval=10**9)
    stale.handshake()
    assert stale.alice._send_cipher is not None
    assert stale.alice._send_cipher.k != pair.alice._send_cipher.k


def test_rekey_message_is_on_the_wire_and_rekeys_the_sender() -> None:
    pair = SessionPair(rekey_interval=4)
    pair.handshake()  # hello is the first message of the four
    assert pair.alice._send_cipher is not None
    key_before = pair.alice._send_cipher.k
    sizes = [len(pair.alice.send(Text(n, "x"))) for n in (1, 2)]
    assert pair.alice._send_cipher.k == key_before
    sizes.append(len(pair.alice.send(Text(3, "x"))))
    assert sizes[0] == sizes[1] and sizes[2] == 2 * sizes[0]  # the fourth carries a rekey frame too
    assert pair.alice._send_cipher.k != key_before
    with pytest.raises(ValueError):
        pair.alice.send(Rekey())


def test_padded_plaintext_is_always_a_multiple_of_128() -> None:
    for length in [0, 1, 50, 127, 128, 129, 1000, messages.MAX_TEXT_BYTES]:
        for message in (Text(7, "x" * length), Text(7, "é" * (length // 2), action=True)):
            plaintext = messages.encode(message)
            assert len(plaintext) % messages.PAD_BLOCK == 0
            assert len(plaintext) <= messages.MAX_PLAINTEXT
            assert messages.decode(plaintext) == message
    for message in (Hello("n", "c"), Ack(3), Rekey(), Bye()):
        assert len(messages.encode(message)) == 128
    pair = SessionPair()
    pair.handshake()
    for length in range(0, 400, 13):
        frame = pair.alice.send(Text(length + 1, "y" * length))
        assert (len(frame) - 2 - 16) % 128 == 0


def _established() -> tuple[SessionPair, list[bytes]]:
    pair = SessionPair()
    pair.handshake()
    frames = [pair.alice.send(Text(n, f"message {n}")) for n in (1, 2, 3)]
    return pair, frames


def test_tampered_frame_is_rejected() -> None:
    _, frames = _established()
    for position in (2, 10, len(frames[0]) - 1):  # ciphertext start, middle, tag
        bad = bytearray(frames[0])
        bad[position] ^= 0x01
        fresh, _ = _established()
        with pytest.raises(TamperedError):
            fresh.bob.receive_data(bytes(bad))


def test_replayed_frame_is_rejected() -> None:
    pair, frames = _established()
    assert pair.bob.receive_data(frames[0]) == [Text(1, "message 1")]
    with pytest.raises(TamperedError):
        pair.bob.receive_data(frames[0])


def test_reordered_frames_are_rejected() -> None:
    pair, frames = _established()
    with pytest.raises(TamperedError):
        pair.bob.receive_data(frames[1] + frames[0])


def test_truncated_frame_is_rejected() -> None:
    pair, frames = _established()
    body = frames[0][2:]
    with pytest.raises(TamperedError):  # a shorter frame: the tag no longer matches
        pair.bob.receive_data(encode_frame(body[:-1]))
    pair, frames = _established()
    assert pair.bob.receive_data(frames[0][:-5]) == []  # the rest may still come...
    with pytest.raises(FrameError):  # ...but the connection ended inside the frame
        pair.bob.receive_eof()


def test_session_refuses_to_continue_after_an_error() -> None:
    pair, frames = _established()
    with pytest.raises(TamperedError):
        pair.bob.receive_data(frames[1])
    with pytest.raises(TamperedError):
        pair.bob.receive_data(frames[0])  # even the right frame is refused now


def test_zero_length_frame_is_rejected() -> None:
    pair, _ = _established()
    with pytest.raises(FrameError, match="empty"):
        pair.bob.receive_data(b"\x00\x00")


def test_frame_over_65535_cannot_be_made() -> None:
    encode_frame(b"x" * 65535)
    with pytest.raises(ValueError):
        encode_frame(b"x" * 65536)
    with pytest.raises(ValueError):
        encode_frame(b"")
    with pytest.raises(ValueError):
        messages.encode(Text(messages.MAX_ID, "x" * (messages.MAX_TEXT_BYTES + 1), action=True))
    messages.encode(Text(messages.MAX_ID, "x" * messages.MAX_TEXT_BYTES, action=True))


def test_nonce_counter_refuses_to_wrap() -> None:
    sender, receiver = CipherState(bytes(32)), CipherState(bytes(32))
    sender.set_nonce(MAX_NONCE - 1)
    receiver.set_nonce(MAX_NONCE - 1)
    assert receiver.decrypt_with_ad(b"", sender.encrypt_with_ad(b"", b"last")) == b"last"
    with pytest.raises(NonceExhaustedError):
        sender.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(NonceExhaustedError):
        receiver.decrypt_with_ad(b"", b"x" * 32)


def test_nonce_exhaustion_in_a_session_stops_sending() -> None:
    pair, _ = _established()
    assert pair.alice._send_cipher is not None
    pair.alice._send_cipher.set_nonce(MAX_NONCE)
    with pytest.raises(NonceExhaustedError):
        pair.alice.send(Text(9, "no"))


def test_malformed_messages_from_an_authenticated_peer() -> None:
    for body in [
        b"{not json",
        b'{"type":"text","id":"1","text":"x"}',
        b'{"type":"text","id":true,"text":"x"}',
        b'{"type":"text","id":1,"text":5}',
        b'{"type":"text","id":0,"text":"x"}',
        b'{"type":"text","text":"x"}',
        b'{"type":"text","id":1,"text":"x","action":1}',
        b'{"type":"ack","id":null}',
        b'{"type":5}',
        b'{"no":"type"}',
        b"{" + b"[" * 50000,
        b'{"type":"text","id":' + b"9" * 20000 + b',"text":"x"}',
        b'{"type":"text","id":1,"text":"\xff"}',
        '{"type":"bye"}'.encode("utf-16-le"),  # JSON, but not UTF-8
    ]:
        with pytest.raises(MessageError):
            messages.decode(body)


def test_unknown_types_fields_and_binary_messages_are_ignored() -> None:
    assert messages.decode(b'{"type":"typing","future":1}   ') is None
    assert messages.decode(b"\x01binary") is None
    assert messages.decode(b'{"type":"text","id":4,"text":"x","colour":"red"}') == Text(4, "x")
    assert messages.decode(b'{"type":"hello"}') == Hello("", "")


def test_text_before_hello_is_a_protocol_error() -> None:
    pair = SessionPair()
    pair.alice._hello = Text(1, "too early")  # type: ignore[assignment]  # a peer that skips hello
    with pytest.raises(MessageError, match="hello"):
        pair.handshake()


def test_mismatched_psk_fails_the_handshake() -> None:
    pair = SessionPair(psk_i=b"a" * 32, psk_r=b"b" * 32)
    pair.bob.receive_data(pair.alice.data_to_send())
    pair.alice.receive_data(pair.bob.data_to_send())
    with pytest.raises(HandshakeError):
        pair.bob.receive_data(pair.alice.data_to_send())


def test_psk_on_one_side_only_fails_the_handshake() -> None:
    pair = SessionPair(psk_i=b"a" * 32, psk_r=None)
    with pytest.raises(HandshakeError):
        pair.bob.receive_data(pair.alice.data_to_send())
        pair.alice.receive_data(pair.bob.data_to_send())
        pair.bob.receive_data(pair.alice.data_to_send())


def test_matching_psk_works() -> None:
    pair = SessionPair(psk_i=b"k" * 32, psk_r=b"k" * 32)
    pair.handshake()
    assert pair.deliver(pair.alice, pair.bob, Text(1, "psk")) == [Text(1, "psk")]


def test_handshake_garbage_is_a_handshake_error() -> None:
    for garbage in [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)]:
        responder = Session(initiator=False, static_key=key(2), hello=Hello("b", "t"))
        # Taken as frames, these are either short handshake messages or a frame still arriving.
        try:
            responder.receive_data(garbage)
            responder.receive_eof()
        except (RemoteProtocolError, ConnectionLost):
            pass
        else:
            pytest.fail("garbage was accepted")
    responder = Session(initiator=False, static_key=key(2), hello=Hello("b", "t"))
    with pytest.raises(HandshakeError):
        responder.receive_data(encode_frame(b"x" * 10))  # shorter than an ephemeral key


def test_argon2id_psk_derivation_is_pinned() -> None:
    # Cross-checked with the Argon2 reference CLI:
    # echo -n "correct horse battery staple" | argon2 "p2pchat/1 passphrase" -id -t 3 -k 65536 -p 4 -l 32 -r
    assert derive_psk("correct horse battery staple").hex() == (
        "caa49f23e4a43e9dc01a63bf722f66d0c135b1a8fc975a67b1fef3b66498c409"
    )
    assert derive_psk("correct horse battery stapler") != derive_psk("correct horse battery staple")


# A short session between fixed keys: if these bytes change, p2pchat/1 changed.
PINNED_WIRE_LEN = 1220
PINNED_WIRE_SHA256 = "6eacd6569808c2be13f6894e1c4e263110bf451020ee97ab68d92bac18e8f496"
PINNED_WIRE_START = "00205dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef220060ac01b2209e86354fb853237b"


def test_wire_bytes_of_a_short_session_are_pinned() -> None:
    pair = SessionPair()
    pair.handshake()
    pair.deliver(pair.alice, pair.bob, Text(1, "hello, bob"))
    pair.deliver(pair.bob, pair.alice, Text(1, "hi alice", action=True))
    pair.deliver(pair.alice, pair.bob, Bye())
    wire = b"".join(pair.wire)
    assert wire[:48].hex() == PINNED_WIRE_START  # frame length, then alice's ephemeral key
    assert len(wire) == PINNED_WIRE_LEN
    assert hashlib.sha256(wire).hexdigest() == PINNED_WIRE_SHA256


def test_features_are_the_ones_both_sides_announce() -> None:
    pair = SessionPair()
    pair.alice._hello = Hello("alice", "test", ("alpha", "beta", "future-thing"))
    pair.bob._hello = Hello("bob", "test", ("beta", "alpha", "gamma"))
    assert pair.alice.features == frozenset()  # nothing is negotiated before the peer's hello
    pair.handshake()
    assert pair.alice.features == pair.bob.features == {"alpha", "beta"}


def test_a_hello_without_features_negotiates_none_and_keeps_the_old_bytes() -> None:
    assert messages.encode(Hello("a", "b")) == messages.pad(b'{"type":"hello","name":"a","client":"b"}')
    pair = SessionPair()
    pair.bob._hello = Hello("bob", "test", ("alpha",))
    pair.handshake()
    assert pair.bob.features == frozenset()


@pytest.mark.parametrize(
    "features",
    ['"resume"', "[1]", '["Resume"]', '[""]', '["' + "a" * 33 + '"]', "[" + ",".join(['"x"'] * 33) + "]"],
)
def test_malformed_features_are_a_protocol_error(features: str) -> None:
    with pytest.raises(MessageError, match="feature"):
        messages.decode(b'{"type":"hello","features":%b}' % features.encode())


def test_features_decode_once_each_in_order() -> None:
    decoded = messages.decode(b'{"type":"hello","features":["b","a","b"]}')
    assert decoded == Hello("", "", ("b", "a"))
