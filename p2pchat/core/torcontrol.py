"""Tor's control protocol (control-spec), sans-IO: build commands, parse replies and events.

No socket here: :class:`ReplyParser` takes the bytes Tor sent and returns whole
replies; the functions below build the few commands p2pchat needs (PROTOCOLINFO,
AUTHCHALLENGE, AUTHENTICATE, ADD_ONION, DEL_ONION, GETINFO, GETCONF, SETEVENTS)
and read the replies to them. ``link/tor.py`` moves the bytes.

Reply grammar (control-spec section 2.3, "Replies from Tor to the controller")::

    Reply         = *(MidReplyLine / DataReplyLine) EndReplyLine
    MidReplyLine  = StatusCode "-" ReplyLine
    DataReplyLine = StatusCode "+" ReplyLine CmdData
    EndReplyLine  = StatusCode SP ReplyLine
    CmdData       = *DataLine "." CRLF      (a leading "." in a DataLine is doubled)

Status 650 marks an asynchronous event; it may arrive between a command and its reply.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from ..errors import NetworkError

MAX_LINE = 64 * 1024  # bytes in one reply line; Tor's longest answer to our commands is far shorter
MAX_REPLY = 1024 * 1024  # bytes in one reply with its data blocks; more is a runaway, not an answer
NONCE_SIZE = 32  # bytes of the SAFECOOKIE client nonce (Tor's server nonce is 32 bytes too)
COOKIE_SIZE = 32  # bytes in Tor's control_auth_cookie file
EVENT_STATUS = 650  # asynchronous event notification

# control-spec, section 3.24 (AUTHCHALLENGE): the HMAC-SHA256 keys, the constant being the key.
SERVER_TO_CONTROLLER = b"Tor safe cookie authentication server-to-controller hash"
CONTROLLER_TO_SERVER = b"Tor safe cookie authentication controller-to-server hash"

ONION_KEY_TYPE = "ED25519-V3"  # v3 onion services; v2 (RSA1024) are gone from Tor
_SERVICE_ID = re.compile(r"[a-z2-7]{56}")  # a v3 onion address without ".onion": base32 of 35 bytes
_ONION_VERSION = b"\x03"
_TOKEN = re.compile(r"[!-~]+")  # a command argument: printable ASCII, no space (no CR/LF injection)
_KEYWORD = re.compile(r"([^ =\"]+)=")  # KEY= before a value, quoted or not
_STATUS_LINE = re.compile(r"([0-9]{3})([ +-])(.*)", re.DOTALL)


class ControlProtocolError(NetworkError):
    """Tor's control port sent something that is not the Tor control protocol."""


class ControlReplyError(NetworkError):
    """Tor refused a command (a 4xx or 5xx reply)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"Tor answered {status} {printable(text)}")
        self.status = status
        self.text = text


@dataclass(frozen=True)
class ReplyLine:
    status: int
    text: str
    data: str | None = None  # the data block of a "+" line, dot-unstuffed, lines joined with "\n"


@dataclass(frozen=True)
class Reply:
    """One whole reply (or event): its lines, the last one ending it."""

    lines: tuple[ReplyLine, ...]

    @property
    def status(self) -> int:
        return self.lines[-1].status

    @property
    def text(self) -> str:
        return self.lines[-1].text

    @property
    def is_event(self) -> bool:
        return self.status == EVENT_STATUS

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def check(self) -> Reply:
        """This reply, or ControlReplyError if Tor refused the command."""
        if not self.ok:
            raise ControlReplyError(self.status, self.text)
        return self


class ReplyParser:
    """Bytes from Tor in, whole replies out (in order; events included)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[ReplyLine] = []
        self._data: list[str] | None = None  # inside a data block: its lines so far
        self._size = 0  # bytes of the reply being read

    def receive_data(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise ControlProtocolError(f"Tor's control port sent a line longer than {MAX_LINE} bytes")
                return replies
            raw = bytes(self._buffer[:end]).removesuffix(b"\r")
            del self._buffer[: end + 1]
            self._size += end + 1
            if end > MAX_LINE or self._size > MAX_REPLY:
                raise ControlProtocolError("Tor's control port sent a reply too long to be an answer")
            # Paths (the cookie file) are bytes on disk: surrogateescape keeps them intact.
            reply = self._line(raw.decode("utf-8", "surrogateescape"))
            if reply is not None:
                replies.append(reply)

    @property
    def pending(self) -> bool:
        """True while a reply has begun but not ended."""
        return bool(self._buffer or self._lines or self._data is not None)

    def _line(self, line: str) -> Reply | None:
        if self._data is not None:
            if line == ".":
                last = self._lines[-1]
                self._lines[-1] = ReplyLine(last.status, last.text, "\n".join(self._data))
                self._data = None
            else:
                self._data.append(line[1:] if line.startswith(".") else line)
            return None
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise ControlProtocolError(f"Tor's control port sent a malformed line: {printable(line)[:80]!r}")
        status, separator, text = int(match[1]), match[2], match[3]
        self._lines.append(ReplyLine(status, text))
        if separator == "+":
            self._data = []
        elif separator == " ":
            reply = Reply(tuple(self._lines))
            self._lines = []
            self._size = 0
            return reply
        return None


# -- values ------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def unquote(text: str, start: int = 0) -> tuple[str, int]:
    """Decode the QuotedString starting at *text[start]*; return it and the index after it.

    C-style escapes as Tor writes them (control-spec 2.1.1): \\n \\r \\t \\\\ \\" \\' and octal \\NNN.
    Octal escapes are bytes (a path in the file system's encoding), decoded as UTF-8.
    """
    if start >= len(text) or text[start] != '"':
        raise ControlProtocolError("Tor's control port sent a malformed quoted string")
    out = bytearray()
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return out.decode("utf-8", "surrogateescape"), i + 1
        if ch == "\\":
            escape = text[i + 1 : i + 2]
            if escape in _ESCAPES:
                out += _ESCAPES[escape].encode()
                i += 2
                continue
            octal = re.match(r"[0-7]{1,3}", text[i + 1 : i + 4])
            if octal is None or int(octal[0], 8) > 255:
                raise ControlProtocolError("Tor's control port sent an unknown escape in a quoted string")
            out.append(int(octal[0], 8))
            i += 1 + len(octal[0])
            continue
        out += ch.encode("utf-8", "surrogateescape")
        i += 1
    raise ControlProtocolError("Tor's control port sent an unterminated quoted string")


def quote(value: bytes) -> str:
    """A QuotedString for *value*: printable ASCII as is, every other byte as an octal escape."""
    parts = ['"']
    for byte in value:
        ch = chr(byte)
        if ch in '"\\':
            parts.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            parts.append(ch)
        else:
            parts.append(f"\\{byte:03o}")
    parts.append('"')
    return "".join(parts)


def keywords(text: str) -> tuple[list[str], dict[str, str]]:
    """Split ``WORD KEY=VALUE KEY="quoted value"`` into positional words and keyword values."""
    words: list[str] = []
    values: dict[str, str] = {}
    i = 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        match = _KEYWORD.match(text, i)
        if match is None:  # a positional word
            end = text.find(" ", i)
            end = len(text) if end < 0 else end
            words.append(text[i:end])
            i = end
        elif text.startswith('"', match.end()):
            values[match[1]], i = unquote(text, match.end())
        else:
            end = text.find(" ", match.end())
            end = len(text) if end < 0 else end
            values[match[1]] = text[match.end() : end]
            i = end
    return words, values


def printable(text: str) -> str:
    """*text* safe to print on one line: control characters and stray bytes become "?"."""
    return "".join(ch if ch.isprintable() and not 0xDC80 <= ord(ch) <= 0xDCFF else "?" for ch in text)


# -- commands ----------------------------------------------------------------------


def command(*words: str) -> bytes:
    """One command line. Every word is checked: a space, CR or LF inside one would inject a command."""
    for word in words:
        if not _TOKEN.fullmatch(word):
            raise ValueError(f"not a control-protocol word: {word!r}")
    return (" ".join(words) + "\r\n").encode("ascii")


def protocolinfo() -> bytes:
    return command("PROTOCOLINFO", "1")


def authchallenge(client_nonce: bytes) -> bytes:
    return command("AUTHCHALLENGE", "SAFECOOKIE", client_nonce.hex())


def authenticate(secret: bytes | None = None) -> bytes:
    """AUTHENTICATE with a cookie or an HMAC (hex), or with nothing (auth method NULL)."""
    return command("AUTHENTICATE", secret.hex()) if secret is not None else command("AUTHENTICATE")


def authenticate_password(password: str) -> bytes:
    # One QuotedString argument (spaces allowed inside); every unusual byte octal-escaped.
    return b"AUTHENTICATE " + quote(password.encode("utf-8")).encode("ascii") + b"\r\n"


def add_onion(private_key: str | None, virtual_port: int, target: tuple[str, int], *, keep_key: bool) -> bytes:
    """ADD_ONION for a v3 service forwarding *virtual_port* to *target*.

    *private_key* is ``ED25519-V3:...`` as Tor gave it (a stable address), or None for a new one.
    *keep_key*: Tor returns a new key in the reply (to save it); otherwise Flags=DiscardPK.
    No Flags=Detach: the service lives as long as this control connection, so it goes when we do.
    """
    key = private_key if private_key is not None else f"NEW:{ONION_KEY_TYPE}"
    flags = [] if keep_key and private_key is None else ["Flags=DiscardPK"]
    host, port = target
    return command("ADD_ONION", key, *flags, f"Port={virtual_port},{host}:{port}")


def del_onion(service_id: str) -> bytes:
    return command("DEL_ONION", service_id)


def getinfo(*keys: str) -> bytes:
    return command("GETINFO", *keys)


def getconf(*keys: str) -> bytes:
    return command("GETCONF", *keys)


def setevents(*events: str) -> bytes:
    return command("SETEVENTS", *events)


# -- replies -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProtocolInfo:
    methods: frozenset[str]  # NULL, HASHEDPASSWORD, COOKIE, SAFECOOKIE
    cookie_file: str | None
    tor_version: str | None


def parse_protocolinfo(reply: Reply) -> ProtocolInfo:
    methods: frozenset[str] = frozenset()
    cookie_file = version = None
    for line in reply.check().lines:
        words, values = keywords(line.text)
        if words[:1] == ["AUTH"]:
            methods = frozenset(m for m in values.get("METHODS", "").split(",") if m)
            cookie_file = values.get("COOKIEFILE")
        elif words[:1] == ["VERSION"]:
            version = values.get("Tor")
    if not methods:
        raise ControlProtocolError("Tor's PROTOCOLINFO reply names no authentication method")
    return ProtocolInfo(methods, cookie_file, version)


def parse_authchallenge(reply: Reply) -> tuple[bytes, bytes]:
    """(server hash, server nonce) from ``250 AUTHCHALLENGE SERVERHASH=... SERVERNONCE=...``."""
    words, values = keywords(reply.check().text)
    try:
        if words[:1] != ["AUTHCHALLENGE"]:
            raise ValueError
        server_hash = bytes.fromhex(values["SERVERHASH"])
        server_nonce = bytes.fromhex(values["SERVERNONCE"])
    except (KeyError, ValueError) as exc:
        raise ControlProtocolError("Tor's AUTHCHALLENGE reply is malformed") from exc
    if len(server_hash) != hashlib.sha256().digest_size or len(server_nonce) != NONCE_SIZE:
        raise ControlProtocolError("Tor's AUTHCHALLENGE reply has values of the wrong size")
    return server_hash, server_nonce


def safecookie_hashes(cookie: bytes, client_nonce: bytes, server_nonce: bytes) -> tuple[bytes, bytes]:
    """(ServerHash, ClientHash) of control-spec 3.24: HMAC-SHA256(constant, Cookie | ClientNonce | ServerNonce)."""
    message = cookie + client_nonce + server_nonce
    server = hmac.new(SERVER_TO_CONTROLLER, message, hashlib.sha256).digest()
    client = hmac.new(CONTROLLER_TO_SERVER, message, hashlib.sha256).digest()
    return server, client


def server_hash_matches(expected: bytes, received: bytes) -> bool:
    """Whether Tor proved it knows the cookie (constant time)."""
    return hmac.compare_digest(expected, received)


@dataclass(frozen=True)
class AddedOnion:
    service_id: str  # the address without ".onion"
    private_key: str | None  # "ED25519-V3:..." when Tor made a new key and did not discard it


def parse_add_onion(reply: Reply) -> AddedOnion:
    service_id = private_key = None
    for line in reply.check().lines:
        key, _, value = line.text.partition("=")
        if key == "ServiceID":
            service_id = value
        elif key == "PrivateKey":
            private_key = value
    if service_id is None or not is_service_id(service_id):
        raise ControlProtocolError("Tor's ADD_ONION reply has no valid ServiceID")
    if private_key is not None:
        check_private_key(private_key)
    return AddedOnion(service_id, private_key)


def check_private_key(blob: str) -> str:
    """*blob* if it is an ``ED25519-V3:<base64 of 64 bytes>`` key; ValueError otherwise."""
    kind, _, encoded = blob.partition(":")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raw = b""
    if kind != ONION_KEY_TYPE or len(raw) != 64:
        raise ValueError("not an ED25519-V3 onion key")
    return blob


def parse_getinfo(reply: Reply) -> dict[str, str]:
    """``250-key=value`` and ``250+key=`` + data block lines, as a dict."""
    values: dict[str, str] = {}
    for line in reply.check().lines:
        key, equals, value = line.text.partition("=")
        if equals:
            values[key] = line.data if line.data is not None else value
    return values


def parse_getconf(reply: Reply) -> dict[str, str | None]:
    """``250 Key=Value`` lines; a key without "=" is at its default (None)."""
    values: dict[str, str | None] = {}
    for line in reply.check().lines:
        key, equals, value = line.text.partition("=")
        values[key] = value if equals else None
    return values


def parse_listeners(value: str) -> list[tuple[str, int]]:
    """TCP listeners from ``GETINFO net/listeners/socks``: ``"127.0.0.1:9050" "[::1]:9050"``.

    Unix-socket listeners are left out: a SOCKS client dials TCP.
    """
    found: list[tuple[str, int]] = []
    i = 0
    while i < len(value):
        if value[i] == " ":
            i += 1
            continue
        if value[i] == '"':
            item, i = unquote(value, i)
        else:
            end = value.find(" ", i)
            end = len(value) if end < 0 else end
            item, i = value[i:end], end
        host, colon, port = item.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536 or host.startswith("unix"):
            continue
        found.append((host.removeprefix("[").removesuffix("]"), int(port)))
    return found


@dataclass(frozen=True)
class HsDescEvent:
    """``650 HS_DESC Action HSAddress AuthType HsDir [DescriptorID] [REASON=...]`` (control-spec 4.1.25)."""

    action: str  # REQUESTED, UPLOAD, RECEIVED, UPLOADED, IGNORE, FAILED, CREATED
    address: str  # the service id, or UNKNOWN
    hsdir: str
    reason: str | None


def parse_hs_desc(reply: Reply) -> HsDescEvent | None:
    """The HS_DESC event in *reply*, or None if it is another reply or event."""
    if not reply.is_event:
        return None
    words, values = keywords(reply.lines[0].text)
    if len(words) < 4 or words[0] != "HS_DESC":
        return None
    return HsDescEvent(words[1], words[2], words[4] if len(words) > 4 else words[3], values.get("REASON"))


class PublishWatch:
    """Follows HS_DESC events until one of our service's descriptors is uploaded."""

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        self.uploaded = False
        self.failures: list[str] = []  # reasons of failed uploads, for the message if none succeeds

    def observe(self, reply: Reply) -> bool:
        """Feed an event; True once the descriptor is on at least one directory."""
        event = parse_hs_desc(reply)
        if event is not None and event.address == self.service_id:
            if event.action == "UPLOADED":
                self.uploaded = True
            elif event.action == "FAILED":
                self.failures.append(event.reason or "UNKNOWN")
        return self.uploaded


# -- onion addresses ---------------------------------------------------------------


def is_service_id(text: str) -> bool:
    """Whether *text* is a well-formed v3 onion address (without ".onion"), checksum included.

    rend-spec-v3 6: onion_address = base32(PUBKEY | CHECKSUM | VERSION),
    CHECKSUM = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2], VERSION = 3.
    """
    if not _SERVICE_ID.fullmatch(text):
        return False
    raw = base64.b32decode(text.upper())
    pubkey, checksum, version = raw[:32], raw[32:34], raw[34:]
    expected = hashlib.sha3_256(b".onion checksum" + pubkey + _ONION_VERSION).digest()[:2]
    return version == _ONION_VERSION and hmac.compare_digest(checksum, expected)


def is_onion(host: str) -> bool:
    """Whether *host* is a name under .onion (reachable only through Tor)."""
    return host.lower().rstrip(".").endswith(".onion")
