"""Extension ``binary``: texts and cumulative acks as compact binary records (sans-IO).

SECURITY.md, "Extension `binary`", is the normative description. Both records are
padded like every message (ASCII spaces to a multiple of 128 bytes)::

    0x01 | flags (1 byte: bit 0 = action) | id (8 bytes) | n (2 bytes) | n bytes of UTF-8 text
    0x02 | id (8 bytes): every text up to and including *id* was received and shown

Integers are unsigned big-endian. What JSON costs here (escaping, parsing) is what
a fast path for the two messages of every chat line can skip.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import MessageError
from .messages import MAX_ID, MAX_PADDED, PAD_BLOCK, Ack, Text, pad, register_binary

FEATURE = "binary"  # the extension's name in hello's features
TEXT = 0x01  # first byte of a binary text
ACK_UP_TO = 0x02  # first byte of a cumulative ack
ACTION = 0x01  # flags bit: a /me action
_TEXT_HEADER = struct.Struct(">BBQH")  # type, flags, id, text length: 12 bytes
_ACK = struct.Struct(">BQ")  # type, id: 9 bytes
MAX_TEXT_BYTES = MAX_PADDED - _TEXT_HEADER.size  # 65396 bytes of UTF-8 per binary text


@dataclass(frozen=True)
class AckUpTo:
    """Binary 0x02: the peer received and showed every text up to and including *id*."""

    id: int


def encode_text(message: Text) -> bytes:
    """The padded binary plaintext of *message*; ValueError if its text does not fit."""
    raw = message.text.encode("utf-8")
    if len(raw) > MAX_TEXT_BYTES:
        raise ValueError(f"text of {len(raw)} bytes is over the {MAX_TEXT_BYTES}-byte limit")
    if not 1 <= message.id <= MAX_ID:
        raise ValueError(f"text id {message.id} is out of range")
    header = _TEXT_HEADER.pack(TEXT, ACTION if message.action else 0, message.id, len(raw))
    return b"".join((header, raw, b" " * (-(len(header) + len(raw)) % PAD_BLOCK)))


def encode_ack_up_to(message: Ack | AckUpTo) -> bytes:
    """The padded binary plaintext acknowledging every text up to *message.id*."""
    if not 1 <= message.id <= MAX_ID:
        raise ValueError(f"ack id {message.id} is out of range")
    return pad(_ACK.pack(ACK_UP_TO, message.id))


def decode_text(plaintext: memoryview) -> Text:
    if len(plaintext) < _TEXT_HEADER.size:
        raise MessageError("the peer sent a binary text that is too short")
    _, flags, message_id, length = _TEXT_HEADER.unpack_from(plaintext)
    if flags & ~ACTION:
        raise MessageError("the peer sent a binary text with unknown flags")
    if not 1 <= message_id <= MAX_ID:
        raise MessageError("the peer sent a text message with an id out of range")
    end = _TEXT_HEADER.size + length
    if end > len(plaintext):
        raise MessageError("the peer sent a binary text longer than its message")
    try:
        text = str(plaintext[_TEXT_HEADER.size : end], "utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("the peer sent a text that is not valid UTF-8") from exc
    return Text(message_id, text, bool(flags & ACTION))


def decode_ack_up_to(plaintext: memoryview) -> AckUpTo:
    if len(plaintext) < _ACK.size:
        raise MessageError("the peer sent a binary ack that is too short")
    message_id = _ACK.unpack_from(plaintext)[1]
    if not 1 <= message_id <= MAX_ID:
        raise MessageError("the peer sent an ack message with an id out of range")
    return AckUpTo(message_id)


def pieces(text: str) -> list[str]:
    """*text* cut into the fewest pieces that each fit one binary text, in order.

    ``"".join(pieces(t)) == t``; cuts fall after a newline or a space near the
    limit where there is one, else between characters. No JSON-escape scan: the
    cost of a character here is only its UTF-8 length.
    """
    if len(text) <= MAX_TEXT_BYTES // 4:  # no character is longer than 4 bytes of UTF-8: it fits
        return [text]
    raw = text.encode("utf-8")
    out: list[str] = []
    start = 0
    while len(raw) - start > MAX_TEXT_BYTES:
        cut = start + MAX_TEXT_BYTES
        while raw[cut] & 0xC0 == 0x80:  # never inside a character
            cut -= 1
        for separator in (b"\n", b" "):
            at = raw.rfind(separator, max(start + 1, cut - _BREAK_WINDOW), cut)
            if at != -1:
                cut = at + 1
                break
        out.append(raw[start:cut].decode("utf-8"))
        start = cut
    out.append(raw[start:].decode("utf-8") if start else text)
    return out


_BREAK_WINDOW = 2048  # prefer to split at a newline or space this close to the limit

register_binary(TEXT, FEATURE, decode_text)
register_binary(ACK_UP_TO, FEATURE, decode_ack_up_to)
