"""Application messages: encode, pad, decode and validate (sans-IO).

A message is a UTF-8 JSON object with a ``"type"``, padded with ASCII spaces to
a multiple of 128 bytes so that its length says little about its content.
Unknown types and unknown fields are ignored, so later versions can add both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MessageError

PAD_BLOCK = 128  # padding granularity: hides the exact length of short messages
MAX_PLAINTEXT = 65535 - 16  # a frame's 65535 bytes less the AES-GCM tag
MAX_PADDED = MAX_PLAINTEXT // PAD_BLOCK * PAD_BLOCK  # 65408: padded length stays a multiple of 128
MAX_ID = 2**53 - 1  # ids stay exact in every JSON implementation
MAX_NAME_BYTES = 1024  # a hello name longer than this is refused, not just cut for display
MAX_FEATURES = 32  # a hello announcing more features than this is refused
_FEATURE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # ASCII: feature names are compared, never shown


@dataclass(frozen=True)
class Hello:
    """``{"type":"hello","name":str,"client":str,"features":[str]}``: sent first by each side.

    *features* names the protocol extensions this side speaks; one is used only when both
    sides announce it. An empty tuple is left out of the JSON, as a ``p2pchat/1`` peer sends it.
    """

    name: str
    client: str
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Text:
    """``{"type":"text","id":int,"text":str}``, with ``"action": true`` for ``/me``."""

    id: int
    text: str
    action: bool = False
    # The text as a JSON string, when whoever made this message already encoded it (see pieces()).
    json_text: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Ack:
    """``{"type":"ack","id":int}``: the peer received text *id*."""

    id: int


@dataclass(frozen=True)
class Rekey:
    """``{"type":"rekey"}``: the sender's cipher calls Noise Rekey() right after this."""


@dataclass(frozen=True)
class Bye:
    """``{"type":"bye"}``: a clean end; the sender closes the connection next."""


Message = Hello | Text | Ack | Rekey | Bye


def to_json(message: Message) -> dict[str, Any]:
    """The JSON object for *message*."""
    if isinstance(message, Hello):
        hello: dict[str, Any] = {"type": "hello", "name": message.name, "client": message.client}
        if message.features:
            hello["features"] = list(message.features)
        return hello
    if isinstance(message, Text):
        obj: dict[str, Any] = {"type": "text", "id": message.id, "text": message.text}
        if message.action:
            obj["action"] = True
        return obj
    if isinstance(message, Ack):
        return {"type": "ack", "id": message.id}
    if isinstance(message, Rekey):
        return {"type": "rekey"}
    if isinstance(message, Bye):
        return {"type": "bye"}
    raise TypeError(f"not a message: {message!r}")


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# Bytes JSON must escape inside a string: controls, quote, backslash. A UTF-8 multi-byte
# sequence never contains them, so a scan of the encoded bytes is exact.
_ESCAPE_FLAGS = bytes(1 if byte < 0x20 or byte in b'"\\' else 0 for byte in range(256))


def _json_string(text: str) -> bytes:
    """json.dumps(text, ensure_ascii=False) as UTF-8, byte for byte, fast for plain text.

    The C escaper walks a long text character by character; most texts need no
    escaping at all, and one table lookup per byte finds that out about 3x sooner.
    """
    raw = text.encode("utf-8")
    if 1 in raw.translate(_ESCAPE_FLAGS):
        return _dumps(text)
    return b'"' + raw + b'"'


def _encode_text(message: Text) -> bytes:
    # The same bytes as _dumps(to_json(message)), built without the generic encoder.
    action = b',"action":true}' if message.action else b"}"
    text = message.json_text if message.json_text is not None else _json_string(message.text)
    return b'{"type":"text","id":%d,"text":%b%b' % (message.id, text, action)


def pad(plaintext: bytes) -> bytes:
    """*plaintext* followed by spaces up to the next multiple of PAD_BLOCK."""
    return plaintext + b" " * (-len(plaintext) % PAD_BLOCK)


def encode(message: Message) -> bytes:
    """The padded plaintext of *message*; ValueError if it cannot fit in one frame."""
    body = _encode_text(message) if type(message) is Text else _dumps(to_json(message))
    if len(body) > MAX_PADDED:
        raise ValueError(f"message of {len(body)} bytes is over the {MAX_PADDED}-byte limit")
    return pad(body)


_DECODER = json.JSONDecoder()

# Binary messages (first plaintext byte not "{"), by first byte: the extension that defines the
# type, and its decoder (it gets the whole padded plaintext, returns a message or None to ignore
# it, raises MessageError if malformed). An extension adds a type with one register_binary() call.
BinaryDecoder = Callable[[memoryview], Any]
_BINARY: dict[int, tuple[str, BinaryDecoder]] = {}
_JSON_START = 0x7B  # "{"


def register_binary(type_byte: int, feature: str, decoder: BinaryDecoder) -> None:
    """Decode plaintexts starting with *type_byte* with *decoder* while *feature* is in use."""
    if not 0 <= type_byte <= 255 or type_byte == _JSON_START:
        raise ValueError(f"{type_byte!r} cannot be a binary message type")
    known = _BINARY.get(type_byte)
    if known is not None and known != (feature, decoder):
        raise ValueError(f"binary type {type_byte:#04x} already belongs to extension {known[0]!r}")
    _BINARY[type_byte] = (feature, decoder)


def decode(plaintext: bytes | memoryview, features: frozenset[str] = frozenset()) -> Message | None:
    """The message in *plaintext*, or None for one this version ignores.

    *features* are the extensions in use: a binary type that none of them defines is
    ignored. MessageError if the peer sent something malformed: bad UTF-8 or JSON, not
    an object, or a known field of the wrong type.
    """
    if not plaintext:
        return None
    if plaintext[0] != _JSON_START:
        binary = _BINARY.get(plaintext[0])
        if binary is None or binary[0] not in features:
            return None  # a type no extension in use defines
        message: Message | None = binary[1](memoryview(plaintext))
        return message
    if isinstance(plaintext, memoryview):
        plaintext = plaintext.tobytes()  # the checks below search bytes, which a memoryview cannot
    try:
        # Decoded as UTF-8 here: json.loads(bytes) would also guess UTF-16 and UTF-32.
        obj = _DECODER.decode(str(plaintext, "utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting or digits
        raise MessageError("the peer sent a message that is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise MessageError("the peer sent a message that is not a JSON object")
    if (b"\\ud" in plaintext or b"\\uD" in plaintext) and not _all_scalar(obj):
        raise MessageError("the peer sent text that is not valid Unicode (a lone surrogate)")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise MessageError("the peer sent a message without a type")
    if kind == "hello":
        name = _optional(obj, "name", str, "")
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise MessageError("the peer sent a name that is far too long")
        return Hello(name=name, client=_optional(obj, "client", str, ""), features=_features(obj))
    if kind == "text":
        return Text(id=_id(obj), text=_required(obj, "text", str), action=_optional(obj, "action", bool, False))
    if kind == "ack":
        return Ack(id=_id(obj))
    if kind == "rekey":
        return Rekey()
    if kind == "bye":
        return Bye()
    return None  # an unknown type: ignored for forward compatibility


_SURROGATES = re.compile("[\ud800-\udfff]")


def _all_scalar(value: object) -> bool:
    """Whether every string in *value* (keys too, at any depth) is made of Unicode scalar values.

    UTF-8 input cannot carry a surrogate, but a JSON escape (``"\\ud800"``) can: such a
    string cannot be encoded, saved or shown, so one anywhere in a message makes it malformed.
    Only called when the plaintext holds ``\\ud`` (the fast path skips it for ordinary text).
    """
    stack = [value]
    while stack:  # iterative: the JSON decoder bounds nesting, not this walk's recursion
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATES.search(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _required(obj: dict[str, Any], name: str, kind: type) -> Any:
    if name not in obj:
        raise MessageError(f"the peer sent a {obj['type']} message without {name!r}")
    return _checked(obj, name, kind)


def _optional(obj: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    return _checked(obj, name, kind) if name in obj else default


def _checked(obj: dict[str, Any], name: str, kind: type) -> Any:
    value = obj[name]
    # bool is a subclass of int in Python, but not in JSON: true is not an id.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MessageError(f"the peer sent a {obj['type']} message whose {name!r} is not a {kind.__name__}")
    return value


def _features(obj: dict[str, Any]) -> tuple[str, ...]:
    names: list[Any] = _optional(obj, "features", list, [])
    if len(names) > MAX_FEATURES:
        raise MessageError("the peer announced too many features")
    for name in names:
        if not isinstance(name, str) or not _FEATURE_NAME.fullmatch(name):
            raise MessageError("the peer announced a feature with a malformed name")
    return tuple(dict.fromkeys(names))  # duplicates once, order kept


def _id(obj: dict[str, Any]) -> int:
    value: int = _required(obj, "id", int)
    if not 1 <= value <= MAX_ID:
        raise MessageError(f"the peer sent a {obj['type']} message with an id out of range")
    return value


# The longest text one message can carry depends on how its characters encode:
# measure the JSON of the fullest message with an empty text, then fill the rest.
_TEXT_OVERHEAD = len(_dumps(to_json(Text(id=MAX_ID, text="", action=True))))
MAX_TEXT_BYTES = MAX_PADDED - _TEXT_OVERHEAD  # JSON-escaped UTF-8 bytes of text per message
_BREAK_WINDOW = 2048  # prefer to split at a newline or space this close to the limit


def _text_cost(text: str) -> int:
    return len(_json_string(text)) - 2  # less the two quotes


def split_text(text: str) -> list[str]:
    """*text* cut into the fewest pieces that each fit one text message, in order.

    Nothing is dropped: ``"".join(split_text(t)) == t``. Cuts fall after a
    newline or a space where one is near the limit, else between characters.
    """
    return [piece for piece, _ in pieces(text)]


def pieces(text: str) -> list[tuple[str, bytes | None]]:
    """split_text(), each piece with its JSON string when measuring it needed one (saves encoding twice)."""
    if len(text) <= MAX_TEXT_BYTES // 6:  # no character costs more than 6 bytes: it fits
        return [(text, None)]
    out: list[tuple[str, bytes | None]] = []
    rest = text
    while len(encoded := _json_string(rest)) - 2 > MAX_TEXT_BYTES:
        # Binary search for the longest prefix that fits (a character costs 1 to 6 bytes).
        low, high = MAX_TEXT_BYTES // 6, min(len(rest), MAX_TEXT_BYTES)
        while low < high:
            mid = (low + high + 1) // 2
            if _text_cost(rest[:mid]) <= MAX_TEXT_BYTES:
                low = mid
            else:
                high = mid - 1
        cut = low
        for sep in ("\n", " "):
            at = rest.rfind(sep, max(1, cut - _BREAK_WINDOW), cut)
            if at != -1:
                cut = at + 1
                break
        out.append((rest[:cut], None))
        rest = rest[cut:]
    out.append((rest, encoded))
    return out
