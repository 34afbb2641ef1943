"""Extension binary: exact bytes, negotiation, cumulative acks, hostile records, and the frame decoder."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.core import binary, messages
from p2pchat.core.binary import AckUpTo
from p2pchat.core.framing import FrameDecoder, encode_frame
from p2pchat.core.messages import MAX_ID, Ack, Bye, Hello, Text
from p2pchat.errors import FrameError, MessageError

from .helpers import SessionPair

BINARY = frozenset({binary.FEATURE})


def binary_pair() -> SessionPair:
    pair = SessionPair()
    pair.alice._hello = Hello("alice", "test", (binary.FEATURE,))
    pair.bob._hello = Hello("bob", "test", (binary.FEATURE,))
    pair.handshake()
    assert pair.alice.features == pair.bob.features == BINARY
    return pair


def plaintext_of(pair: SessionPair, frame: bytes) -> bytes:
    """What bob's receiving cipher reads in *frame* (one frame of alice's), without moving bob on."""
    assert pair.bob._recv_cipher is not None
    from p2pchat.core.noise import CipherState

    reader = CipherState(pair.bob._recv_cipher.k)
    reader.n = pair.bob._recv_cipher.n
    return reader.decrypt_with_ad(b"", frame[2:])


def test_exact_bytes_of_a_text_an_action_and_an_ack() -> None:
    # SECURITY.md, "Extension `binary`", shows these same bytes.
    assert binary.encode_text(Text(1, "hi bob")) == bytes.fromhex("010000000000000000010006") + b"hi bob" + b" " * 110
    assert (
        binary.encode_text(Text(258, "waves", action=True))[:17] == bytes.fromhex("010100000000000001020005") + b"waves"
    )
    assert binary.encode_ack_up_to(Ack(3)) == bytes.fromhex("020000000000000003") + b" " * 119
    for plaintext in (binary.encode_text(Text(1, "é" * 100)), binary.encode_ack_up_to(Ack(MAX_ID))):
        assert len(plaintext) % messages.PAD_BLOCK == 0


def test_a_binary_session_is_pinned() -> None:
    pair = binary_pair()
    pair.deliver(pair.alice, pair.bob, Text(1, "hello, bob"))
    pair.deliver(pair.bob, pair.alice, Text(1, "hi alice", action=True))
    pair.deliver(pair.alice, pair.bob, Bye())
    wire = b"".join(pair.wire)
    assert len(wire) == 1220  # the same frame sizes as JSON: padding is unchanged
    assert hashlib.sha256(wire).hexdigest() == "6e3ebaf642d89c083a6514e1f110fe3e0dcc0e0c320bd3770727b2c570b72a1f"


def test_texts_and_acks_are_binary_when_both_sides_announce_it() -> None:
    pair = binary_pair()
    frame = pair.alice.send(Text(1, "hi"))
    assert plaintext_of(pair, frame)[:1] == b"\x01"
    assert pair.bob.receive_data(frame) == [Text(1, "hi")]
    assert pair.alice.receive_data(pair.bob.send(Ack(1))) == [Ack(1)]


@pytest.mark.parametrize("announced", [("alice",), ("bob",), ()])
def test_a_peer_that_does_not_announce_binary_gets_json_exactly(announced: tuple[str, ...]) -> None:
    pair = SessionPair()
    if "alice" in announced:
        pair.alice._hello = Hello("alice", "test", (binary.FEATURE,))
    if "bob" in announced:
        pair.bob._hello = Hello("bob", "test", (binary.FEATURE,))
    pair.handshake()
    frame = pair.alice.send(Text(1, "hi"))
    assert plaintext_of(pair, frame) == messages.encode(Text(1, "hi"))
    assert pair.bob.receive_data(frame) == [Text(1, "hi")]
    ack = pair.bob.send(Ack(1))
    assert pair.alice.receive_data(ack) == [Ack(1)]


def test_one_ack_up_to_acknowledges_every_text_before_it() -> None:
    pair = binary_pair()
    frames = b"".join(pair.alice.send(Text(n, f"t{n}")) for n in range(1, 6))
    assert pair.bob.receive_data(frames) == [Text(n, f"t{n}") for n in range(1, 6)]
    assert pair.alice.receive_data(pair.bob.send(Ack(3))) == [Ack(1), Ack(2), Ack(3)]
    assert pair.alice.receive_data(pair.bob.send(Ack(5))) == [Ack(4), Ack(5)]
    # Stale or from an earlier connection: passed on once, for the layer above to judge.
    assert pair.alice.receive_data(pair.bob.send(Ack(2))) == [Ack(2)]


def test_binary_records_are_ignored_unless_the_extension_is_in_use() -> None:
    record = binary.encode_text(Text(1, "hi"))
    assert messages.decode(record) is None
    assert messages.decode(record, frozenset({"resume"})) is None
    assert messages.decode(record, BINARY) == Text(1, "hi")
    assert messages.decode(b"\x7f" + bytes(127), BINARY) is None  # a type nobody defines


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"\x01\x00" + bytes(8), "too short"),
        (b"\x01\x02" + (1).to_bytes(8, "big") + b"\x00\x01x", "flags"),
        (b"\x01\x00" + bytes(8) + b"\x00\x01x", "out of range"),
        (b"\x01\x00" + (2**53).to_bytes(8, "big") + b"\x00\x01x", "out of range"),
        (b"\x01\x00" + (1).to_bytes(8, "big") + b"\x00\x05abc", "longer than"),
        (b"\x01\x00" + (1).to_bytes(8, "big") + b"\x00\x02\xc3\x28", "UTF-8"),
        (b"\x01\x00" + (1).to_bytes(8, "big") + b"\x00\x03\xed\xa0\x80", "UTF-8"),  # a lone surrogate
        (b"\x02" + bytes(7), "too short"),
        (b"\x02" + bytes(8), "out of range"),
    ],
)
def test_malformed_binary_records_are_protocol_errors(record: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        messages.decode(record, BINARY)


def test_a_malformed_record_ends_the_session() -> None:
    pair = binary_pair()
    assert pair.alice._send_cipher is not None
    frame = encode_frame(pair.alice._send_cipher.encrypt_with_ad(b"", messages.pad(b"\x02" + bytes(8))))
    with pytest.raises(MessageError):
        pair.bob.receive_data(frame)
    with pytest.raises(MessageError):
        pair.bob.receive_data(b"")


def test_registering_a_binary_type_is_one_call_and_types_do_not_clash() -> None:
    def decode_probe(plaintext: memoryview) -> Bye:
        return Bye()

    messages.register_binary(0x1F, "probe-ext", decode_probe)
    try:
        assert messages.decode(b"\x1f", frozenset({"probe-ext"})) == Bye()
        assert messages.decode(b"\x1f", BINARY) is None
        with pytest.raises(ValueError, match="already belongs"):
            messages.register_binary(0x01, "probe-ext", decode_probe)
        with pytest.raises(ValueError):
            messages.register_binary(ord("{"), "probe-ext", decode_probe)
    finally:
        del messages._BINARY[0x1F]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(1, MAX_ID), st.booleans())
def test_binary_texts_round_trip(text: str, message_id: int, action: bool) -> None:
    message = Text(message_id, text.encode("utf-8", "replace").decode("utf-8"), action)
    try:
        record = binary.encode_text(message)
    except UnicodeEncodeError:
        return  # a lone surrogate: not text, and the sender refuses it as the JSON path does
    assert messages.decode(record, BINARY) == message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_binary_decoders_refuse_hostile_bytes_cleanly(data: bytes) -> None:
    for first in (b"\x01", b"\x02"):
        try:
            decoded = messages.decode(first + data, BINARY)
        except MessageError:
            continue
        assert isinstance(decoded, (Text, AckUpTo))


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n\x00é€🙂"), min_size=1, max_size=20), st.integers(1, 2000))
def test_binary_pieces_fit_and_lose_nothing(unit: str, repeat: int) -> None:
    text = unit * repeat * 3
    parts = binary.pieces(text)
    assert "".join(parts) == text
    assert all(len(part.encode("utf-8")) <= binary.MAX_TEXT_BYTES for part in parts)
    # Cut near the limit: every piece but the last is nearly full.
    assert all(len(part.encode("utf-8")) > binary.MAX_TEXT_BYTES - 2048 - 4 for part in parts[:-1])


def test_a_long_binary_text_is_cut_after_a_newline_near_the_limit() -> None:
    text = "x" * (binary.MAX_TEXT_BYTES - 100) + "\n" + "y" * 500
    assert binary.pieces(text) == [text[: binary.MAX_TEXT_BYTES - 99], "y" * 500]
    sessions = binary_pair()
    assert sessions.alice.pieces(text) == [(text[: binary.MAX_TEXT_BYTES - 99], None), ("y" * 500, None)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.lists(st.integers(0, 2500), max_size=6))
def test_frames_come_out_the_same_however_the_bytes_are_cut(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(payload) for payload in payloads)
    decoder = FrameDecoder()
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        chunk = bytearray(stream[start : max(start, cut)])
        out += [bytes(frame) for frame in decoder.frames(chunk)]
        start = max(start, cut)
    decoder.end_of_stream()
    assert out == payloads
    assert decoder.buffered == 0


def test_whole_frames_are_views_into_the_bytes_received_and_errors_stick() -> None:
    data = bytearray(encode_frame(b"abc") + encode_frame(b"de"))
    first, second = FrameDecoder().frames(data)
    data[2:5] = b"XYZ"
    assert bytes(first) == b"XYZ" and bytes(second) == b"de"  # no copy was made
    decoder = FrameDecoder()
    assert decoder.frames(b"\x00") == []
    with pytest.raises(FrameError, match="empty frame"):
        decoder.frames(b"\x00")
    with pytest.raises(FrameError):
        decoder.frames(encode_frame(b"ok"))
    decoder = FrameDecoder()
    decoder.frames(b"\x00\x05ab")
    with pytest.raises(FrameError, match="inside a frame"):
        decoder.end_of_stream()
