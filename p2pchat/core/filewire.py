"""The wire messages of extension ``files``: encode, decode, validate (sans-IO).

SECURITY.md, "Extension `files`", is the normative description. Control messages are
JSON objects padded like every JSON message; file data travels in binary records::

    0x10 | transfer id (4 bytes, big-endian) | offset (8 bytes, big-endian) | data (1..65506 bytes)

An offer's id names the transfer in both directions: messages from the file's sender
(``file_offer``, ``file_cancel``, ``file_end``, data) name its own offers, messages from
the file's receiver (``file_accept``, ``file_decline``, ``file_ack``, ``file_result``)
name offers it received. So both sides may number offers 1, 2, ... without clashing.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import MessageError
from .messages import MAX_PADDED, MAX_PLAINTEXT, pad, register_binary

FEATURE = "files"  # the extension's name in hello's features
MAX_TRANSFER_ID = 2**32 - 1  # fits the data record's 4-byte field
MAX_SIZE = 2**53 - 1  # sizes and offsets stay exact in every JSON implementation
MAX_OFFERED_NAME_BYTES = 1024  # a longer name is refused: no file system keeps one that long
DATA_TYPE = 0x10  # first byte of a data record (0x10-0x1F belong to this extension)
DATA_HEADER = struct.Struct(">BIQ")  # type, transfer id, offset: 13 bytes
MAX_DATA = MAX_PLAINTEXT - DATA_HEADER.size  # 65506 bytes of file per record: a full Noise message
_REASON = re.compile(r"[a-z][a-z_]{0,31}")  # a token, shown to users: ASCII only
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# Reasons a side gives for stopping a transfer (others are accepted and shown as they are).
DECLINED = "declined"  # the person said no, or pipe mode has nowhere to save
CANCELLED = "cancelled"  # the person stopped it
NO_SPACE = "no_space"  # not enough free space for the file
DISK_ERROR = "disk_error"  # the file could not be written or read
BUSY = "busy"  # too many transfers at once


@dataclass(frozen=True)
class FileOffer:
    """``{"type":"file_offer","id":int,"name":str,"size":int}``: the sender offers a file."""

    id: int
    name: str
    size: int


@dataclass(frozen=True)
class FileAccept:
    """``{"type":"file_accept","id":int,"offset":int}``: send the file from *offset* (0, or a kept prefix)."""

    id: int
    offset: int


@dataclass(frozen=True)
class FileDecline:
    """``{"type":"file_decline","id":int,"reason":str}``: the receiver refuses or stops the transfer."""

    id: int
    reason: str = DECLINED


@dataclass(frozen=True)
class FileCancel:
    """``{"type":"file_cancel","id":int,"reason":str}``: the sender stops the transfer."""

    id: int
    reason: str = CANCELLED


@dataclass(frozen=True)
class FileAck:
    """``{"type":"file_ack","id":int,"offset":int}``: the receiver has written the file up to *offset*."""

    id: int
    offset: int


@dataclass(frozen=True)
class FileEnd:
    """``{"type":"file_end","id":int,"sha256":hex}``: all data sent; the SHA-256 of the whole file."""

    id: int
    sha256: bytes


@dataclass(frozen=True)
class FileResult:
    """``{"type":"file_result","id":int,"ok":bool}``: the receiver's verdict (ok: hashes equal, file saved)."""

    id: int
    ok: bool


@dataclass(frozen=True)
class FileData:
    """A binary data record: *data* is the file's bytes at *offset* (a view into the plaintext)."""

    id: int
    offset: int
    data: memoryview


Control = FileOffer | FileAccept | FileDecline | FileCancel | FileAck | FileEnd | FileResult
FileMessage = Control | FileData
SENT_BY_SENDER = (FileOffer, FileCancel, FileEnd, FileData)  # their id names the sender's own offer
SENT_BY_RECEIVER = (FileAccept, FileDecline, FileAck, FileResult)  # their id names an offer received


def to_json(message: Control) -> dict[str, Any]:
    """The JSON object for *message*."""
    if isinstance(message, FileOffer):
        return {"type": "file_offer", "id": message.id, "name": message.name, "size": message.size}
    if isinstance(message, FileAccept):
        return {"type": "file_accept", "id": message.id, "offset": message.offset}
    if isinstance(message, FileDecline):
        return {"type": "file_decline", "id": message.id, "reason": message.reason}
    if isinstance(message, FileCancel):
        return {"type": "file_cancel", "id": message.id, "reason": message.reason}
    if isinstance(message, FileAck):
        return {"type": "file_ack", "id": message.id, "offset": message.offset}
    if isinstance(message, FileEnd):
        return {"type": "file_end", "id": message.id, "sha256": message.sha256.hex()}
    if isinstance(message, FileResult):
        return {"type": "file_result", "id": message.id, "ok": message.ok}
    raise TypeError(f"not a file message: {message!r}")


def encode(message: Control) -> bytes:
    """The padded plaintext of a control message; ValueError if it cannot fit in one record."""
    _check_outgoing(message)
    body = json.dumps(to_json(message), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_PADDED:
        raise ValueError("file message too long")
    return pad(body)


def _check_outgoing(message: Control) -> None:
    # This side's own mistakes are ValueError, never a message the peer would refuse.
    if not 1 <= message.id <= MAX_TRANSFER_ID:
        raise ValueError("transfer id out of range")
    if isinstance(message, FileOffer):
        if not 0 <= message.size <= MAX_SIZE:
            raise ValueError("file size out of range")
        if not message.name or len(message.name.encode("utf-8", "surrogatepass")) > MAX_OFFERED_NAME_BYTES:
            raise ValueError("file name empty or too long")
    if isinstance(message, (FileAccept, FileAck)) and not 0 <= message.offset <= MAX_SIZE:
        raise ValueError("offset out of range")
    if isinstance(message, (FileDecline, FileCancel)) and not _REASON.fullmatch(message.reason):
        raise ValueError("malformed reason")
    if isinstance(message, FileEnd) and len(message.sha256) != 32:
        raise ValueError("a SHA-256 digest has 32 bytes")


def pack_data_header(buffer: bytearray | memoryview, transfer_id: int, offset: int) -> None:
    """Write a data record's 13-byte header at the start of *buffer* (the data follows it)."""
    if not 1 <= transfer_id <= MAX_TRANSFER_ID or not 0 <= offset <= MAX_SIZE:
        raise ValueError("transfer id or offset out of range")
    DATA_HEADER.pack_into(buffer, 0, DATA_TYPE, transfer_id, offset)


def encode_data(transfer_id: int, offset: int, data: bytes) -> bytes:
    """A whole data record (the I/O layer builds these in place with pack_data_header)."""
    if not 1 <= len(data) <= MAX_DATA:
        raise ValueError(f"a data record carries 1 to {MAX_DATA} bytes")
    record = bytearray(DATA_HEADER.size + len(data))
    pack_data_header(record, transfer_id, offset)
    record[DATA_HEADER.size :] = data
    return bytes(record)


def decode_data(plaintext: bytes | memoryview) -> FileData:
    """The data record in *plaintext* (whose first byte is DATA_TYPE); MessageError if malformed."""
    view = memoryview(plaintext)
    if len(view) <= DATA_HEADER.size:
        raise MessageError("the peer sent a file data record without data")
    kind, transfer_id, offset = DATA_HEADER.unpack_from(view)
    if kind != DATA_TYPE:
        raise MessageError("the peer sent a binary message of an unknown file type")
    if transfer_id == 0 or offset + len(view) - DATA_HEADER.size > MAX_SIZE:
        raise MessageError("the peer sent a file data record with an id or offset out of range")
    return FileData(transfer_id, offset, view[DATA_HEADER.size :])


register_binary(DATA_TYPE, FEATURE, decode_data)  # messages.decode() hands data records to decode_data


def from_json(obj: dict[str, Any]) -> Control | None:
    """The file message in a decoded JSON object, or None if its type is not one of ours.

    MessageError if a field is missing, of the wrong type or out of range.
    """
    kind = obj.get("type")
    if kind == "file_offer":
        name = _field(obj, "name", str)
        encoded = name.encode("utf-8", "surrogatepass")
        if not encoded or len(encoded) > MAX_OFFERED_NAME_BYTES:
            raise MessageError("the peer offered a file with an empty or far too long name")
        return FileOffer(_transfer_id(obj), name, _size(obj, "size"))
    if kind == "file_accept":
        return FileAccept(_transfer_id(obj), _size(obj, "offset"))
    if kind == "file_decline":
        return FileDecline(_transfer_id(obj), _reason(obj, DECLINED))
    if kind == "file_cancel":
        return FileCancel(_transfer_id(obj), _reason(obj, CANCELLED))
    if kind == "file_ack":
        return FileAck(_transfer_id(obj), _size(obj, "offset"))
    if kind == "file_end":
        digest = _field(obj, "sha256", str)
        if not _SHA256_HEX.fullmatch(digest):
            raise MessageError("the peer sent a file_end whose sha256 is not 64 lowercase hex digits")
        return FileEnd(_transfer_id(obj), bytes.fromhex(digest))
    if kind == "file_result":
        return FileResult(_transfer_id(obj), _field(obj, "ok", bool))
    return None


def decode(plaintext: bytes | memoryview) -> FileMessage | None:
    """A file message from a whole plaintext (JSON or binary), or None if it is not one."""
    view = memoryview(plaintext)
    if not view:
        return None
    if view[0] == DATA_TYPE:
        return decode_data(view)
    if view[0] != ord("{"):
        return None
    try:
        obj = json.loads(bytes(view).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise MessageError("the peer sent a message that is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise MessageError("the peer sent a message that is not a JSON object")
    return from_json(obj)


def _field(obj: dict[str, Any], name: str, kind: type) -> Any:
    if name not in obj:
        raise MessageError(f"the peer sent a {obj['type']} message without {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MessageError(f"the peer sent a {obj['type']} message whose {name!r} is not a {kind.__name__}")
    return value


def _transfer_id(obj: dict[str, Any]) -> int:
    value: int = _field(obj, "id", int)
    if not 1 <= value <= MAX_TRANSFER_ID:
        raise MessageError(f"the peer sent a {obj['type']} message with a transfer id out of range")
    return value


def _size(obj: dict[str, Any], name: str) -> int:
    value: int = _field(obj, name, int)
    if not 0 <= value <= MAX_SIZE:
        raise MessageError(f"the peer sent a {obj['type']} message whose {name!r} is out of range")
    return value


def _reason(obj: dict[str, Any], default: str) -> str:
    if "reason" not in obj:
        return default
    value: str = _field(obj, "reason", str)
    if not _REASON.fullmatch(value):
        raise MessageError(f"the peer sent a {obj['type']} message with a malformed reason")
    return value
