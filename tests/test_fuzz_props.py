"""Property-based fuzzing (hypothesis): nothing a peer sends yields anything but a clean protocol error.

The decoders and the session get random bytes, random JSON (lone surrogates included),
random frames after a valid handshake, and mutated handshake messages. Whatever comes
out is a decoded message, an ignored one, or a RemoteProtocolError (ConnectionLost at
the end of the stream); anything else, a UnicodeError or a KeyError, is a bug.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pchat.core import messages
from p2pchat.core.framing import encode_frame
from p2pchat.core.messages import Hello
from p2pchat.core.noise import CipherState
from p2pchat.core.session import Session
from p2pchat.errors import ConnectionLost, RemoteProtocolError

from .helpers import SessionPair, key

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point, surrogates included: JSON can carry them as \\uXXXX escapes.
_any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=12)
# Mostly plain letters with the characters that broke p2pchat before: lone surrogates, invisibles, JSON's specials.
_hostile_text = st.text(
    alphabet=st.sampled_from(["a", "b", "\ud800", "\udfff", "\u200b", "\x00", '"', "\\"]), max_size=8
)
_strings_ = _hostile_text | _any_text
_json_scalars = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | _any_text
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_any_text, inner, max_size=4),
    max_leaves=12,
)
# Each type with its fields and a well-typed value for each: most draws get past the type checks,
# so what is inside the strings (surrogates, controls) is what gets tested.
_ids = st.integers(-3, 2**53 + 3)
_feature = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,5}", fullmatch=True)
_SHAPES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "hello": {"name": _strings_, "client": _strings_, "features": st.lists(_feature | _strings_, max_size=3)},
    "text": {"id": _ids, "text": _strings_, "action": st.booleans()},
    "ack": {"id": _ids},
    "rekey": {},
    "bye": {},
    "file_offer": {"name": _strings_},
}


@st.composite
def _message_objects(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(_SHAPES)))
    obj: dict[str, Any] = {"type": kind}
    for name, values in _SHAPES[kind].items():
        if draw(st.integers(0, 9)):  # usually present and well typed, sometimes missing or anything
            obj[name] = draw(values if draw(st.integers(0, 5)) else _json_values)
    for name in draw(st.lists(_strings_, max_size=2)):  # unknown fields, keys and values hostile
        obj[name] = draw(_json_values)
    return obj


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list)):
        return [s for item in value for s in _strings(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [s for name in value.__dataclass_fields__ for s in _strings(getattr(value, name))]
    return []


def _decodes_cleanly(plaintext: bytes) -> None:
    try:
        message = messages.decode(plaintext)
    except RemoteProtocolError:
        return
    for text in _strings(message):
        text.encode("utf-8")  # every string that comes out can be encoded, saved and shown


@FUZZ
@given(st.binary(max_size=300))
def test_decode_random_bytes(data: bytes) -> None:
    _decodes_cleanly(b"{" + data)
    _decodes_cleanly(data)


@FUZZ
@given(_message_objects(), st.booleans())
def test_decode_random_json(obj: dict[str, Any], ascii_only: bool) -> None:
    try:
        text = json.dumps(obj, ensure_ascii=ascii_only)
        plaintext = text.encode("utf-8")
    except UnicodeEncodeError:  # a raw surrogate cannot even be UTF-8: the escaped form is what a peer sends
        plaintext = json.dumps(obj, ensure_ascii=True).encode("ascii")
    _decodes_cleanly(messages.pad(plaintext))


def _established() -> tuple[SessionPair, bytes, int]:
    pair = SessionPair()
    pair.handshake()
    cipher = pair.bob._recv_cipher
    assert cipher is not None and cipher.k is not None
    return pair, cipher.k, cipher.n


def _run(session: Session, chunks: list[bytes]) -> None:
    try:
        for chunk in chunks:
            session.receive_data(chunk)
        session.receive_eof()
    except (RemoteProtocolError, ConnectionLost):
        pass


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_session_random_bytes_after_handshake(chunks: list[bytes]) -> None:
    pair, _, _ = _established()
    _run(pair.bob, chunks)


@FUZZ
@given(st.lists(_message_objects() | st.binary(max_size=100), min_size=1, max_size=5), st.integers(0, 3))
def test_session_random_frames_after_handshake(payloads: list[Any], split: int) -> None:
    """Well-encrypted frames holding anything at all: only protocol errors or events."""
    pair, recv_key, nonce = _established()
    sender = CipherState(recv_key)  # what the peer would encrypt with
    sender.set_nonce(nonce)
    wire = b""
    for payload in payloads:
        plaintext = payload if isinstance(payload, bytes) else json.dumps(payload).encode("ascii")
        wire += encode_frame(sender.encrypt_with_ad(b"", plaintext or b" "))
    cut = len(wire) * split // 4
    _run(pair.bob, [wire[:cut], wire[cut:]])


_first, _second, _third = b"", b"", b""


def _handshake_messages() -> tuple[bytes, bytes, bytes]:
    global _first, _second, _third
    if not _first:
        pair = SessionPair()
        _first = pair.alice.data_to_send()
        pair.bob.receive_data(_first)
        _second = pair.bob.data_to_send()
        pair.alice.receive_data(_second)
        both = pair.alice.data_to_send()  # the third handshake message, then alice's hello
        _third = both[: 2 + int.from_bytes(both[:2], "big")]
    return _first, _second, _third


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(out)))
        kind = draw(st.integers(0, 3))
        if kind == 0 and out:
            out[at % len(out)] ^= 1 << draw(st.integers(0, 7))
        elif kind == 1:
            del out[at:]
        elif kind == 2:
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            # Lengthen a frame's payload, as a MITM grinding codes would (payloads must be empty).
            body = out[2:] + draw(st.binary(min_size=1, max_size=16))
            out = bytearray(len(body).to_bytes(2, "big") + body)
    return bytes(out)


@FUZZ
@given(st.data(), st.sampled_from([0, 1, 2]))
def test_mutated_handshake_messages(data: st.DataObject, which: int) -> None:
    first, second, third = _handshake_messages()
    if which == 0:  # a responder gets a mutated first message
        session = Session(initiator=False, static_key=key(2), hello=Hello("bob", "test"), ephemeral=key(4))
        _run(session, [data.draw(_mutated(first))])
    elif which == 1:  # an initiator gets a mutated second message
        session = Session(initiator=True, static_key=key(1), hello=Hello("alice", "test"), ephemeral=key(3))
        _run(session, [data.draw(_mutated(second))])
    else:  # a responder gets the right first message, then a mutated third
        session = Session(initiator=False, static_key=key(2), hello=Hello("bob", "test"), ephemeral=key(4))
        session.receive_data(first)
        mutated = data.draw(_mutated(third))
        try:
            session.receive_data(mutated)
        except RemoteProtocolError:
            return
        # Either it is still waiting for the rest of a frame, or the message was the real one.
        assert not session.handshake_complete or mutated.startswith(third)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=40), st.booleans())
def test_short_code_messages_from_a_peer(message: bytes, side_byte: bool) -> None:
    """Any bytes as the peer's SPAKE2 message: a psk or a HandshakeError, nothing else."""
    from p2pchat.core.pake import CodeExchange
    from p2pchat.errors import HandshakeError

    if side_byte and message:
        message = b"A" + message[1:]
    side = CodeExchange("7-tulip-revenge", dialer=False)
    side.start()
    with contextlib.suppress(HandshakeError):
        assert len(side.finish(message)) == 32
