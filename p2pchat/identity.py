"""Who is who: your identity key, fingerprints, safety codes, and the peers you know.

Files live in ``$P2PCHAT_HOME``, else ``$XDG_DATA_HOME/p2pchat``, else
``~/.local/share/p2pchat``; the directory is 0700. ``identity`` holds the
X25519 private key (PKCS#8 PEM, 0600); ``known_peers`` (JSON) remembers each
peer's key, the names it used, the addresses you dialed it at, and whether you
verified it. Both are written to a temporary file and renamed over the old one,
so a failed write never leaves a truncated file.

As ssh's StrictModes: the directory and both files must belong to you (or root)
and be writable by no one else, and the files are opened without following a
symbolic link; otherwise p2pchat refuses them (exit 4) and says how to fix it,
since anyone who can write them can plant a "verified" key.

Addresses are remembered in one spelling (see :func:`address_key`), so
``LOCALHOST.:9090``, ``127.1:9090`` and ``127.0.0.1:9090`` are one address.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import re
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from .core.names import comparable
from .errors import LocalError, SecurityError, UsageError

KEY_FILE = "identity"
KNOWN_PEERS_FILE = "known_peers"
FINGERPRINT_GROUPS = 6  # 6 groups of 5 digits: 30 digits, about 100 bits of the key's hash
SAFETY_CODE_GROUPS = 4  # 20 digits, about 66 bits: far beyond what a man in the middle can grind
SAFETY_CODE_LABEL = b"p2pchat/1 safety code"


def home() -> Path:
    """Where p2pchat keeps its files."""
    if os.environ.get("P2PCHAT_HOME"):
        return Path(os.environ["P2PCHAT_HOME"])
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "p2pchat"


def _digit_groups(digest: bytes, groups: int) -> str:
    # As Signal's safety numbers: each 5-byte chunk, big-endian, mod 100000, as 5 digits.
    return " ".join(f"{int.from_bytes(digest[5 * i : 5 * i + 5], 'big') % 100000:05d}" for i in range(groups))


def fingerprint(public_key: bytes) -> str:
    """The key's fingerprint: SHA-256 of the raw 32-byte key, as six groups of five digits."""
    return _digit_groups(hashlib.sha256(public_key).digest(), FINGERPRINT_GROUPS)


def parse_fingerprint(text: str) -> str:
    """A fingerprint typed by a person (any spacing or dashes), normalised; UsageError if malformed."""
    digits = "".join(ch for ch in text if ch not in " -_:")
    if len(digits) != 5 * FINGERPRINT_GROUPS or not digits.isdigit() or not digits.isascii():
        raise UsageError(f"bad fingerprint {text!r}: expected {FINGERPRINT_GROUPS} groups of 5 digits")
    return " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))


def safety_code(handshake_hash: bytes) -> str:
    """The session's safety code: the same on both sides only if no one is in the middle."""
    return _digit_groups(hashlib.sha256(SAFETY_CODE_LABEL + handshake_hash).digest(), SAFETY_CODE_GROUPS)


def colour_index(public_key: bytes, colours: int) -> int:
    """A stable colour for a key (names are not unique; keys are)."""
    return hashlib.sha256(b"p2pchat colour" + public_key).digest()[0] % colours


# -- files ---------------------------------------------------------------------


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalError(f"cannot create {path}: {exc.strerror or exc}") from exc
    check_directory(path)


def _strict(path: Path, info: os.stat_result, what: str) -> None:
    """StrictModes: owned by us (or root), writable by no one else."""
    if info.st_uid not in (os.geteuid(), 0):
        raise LocalError(f"{what} {path} belongs to another user; refusing to trust it (fix: chown $USER {path})")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise LocalError(f"{what} {path} is writable by other users; refusing to trust it (fix: chmod go-w {path})")


def check_directory(directory: Path) -> None:
    """Refuse a data directory that someone else could write into (a missing one is fine)."""
    try:
        info = directory.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LocalError(f"cannot read {directory}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise LocalError(f"cannot use {directory}: it is not a directory")
    _strict(directory, info, "data directory")


def _read_private(path: Path, what: str) -> tuple[bytes, os.stat_result] | None:
    """The contents of one of our files, checked as StrictModes does; None if it does not exist."""
    check_directory(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LocalError(
                f"{what} {path} is a symbolic link; refusing to follow it (fix: move the real file to {path})"
            ) from None
        raise LocalError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)  # the file opened, not whatever the name points to now
        if not stat.S_ISREG(info.st_mode):
            raise LocalError(f"cannot read {what} {path}: it is not a regular file")
        _strict(path, info, what)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks), info
    except OSError as exc:
        raise LocalError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write *data* to *path* through a temporary file and a rename: all or nothing."""
    _ensure_dir(path.parent)
    try:
        import tempfile  # here: only a save needs it, and it costs start-up (shutil, random, lzma)

        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise LocalError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise LocalError(f"cannot write {path}: {exc.strerror or exc}") from exc


def load_or_create_identity(directory: Path) -> tuple[X25519PrivateKey, bool]:
    """Your identity key, made on first run; returns (key, created)."""
    path = directory / KEY_FILE
    found = _read_private(path, "identity key")
    if found is None:
        key = X25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_atomically(path, pem)
        return key, True
    pem, info = found
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise SecurityError(
            f"identity key {path} is accessible by other users; refusing to use it (fix: chmod 600 {path})"
        )
    try:
        loaded = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise LocalError(f"identity key {path} is corrupt; restore it from a backup or move it away") from exc
    if not isinstance(loaded, X25519PrivateKey):
        raise LocalError(f"identity key {path} is not an X25519 key")
    return loaded, False


# -- addresses -----------------------------------------------------------------

_NUMERIC_IPV4 = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)  # 127.1, 0x7f000001, 0177.0.0.1: inet_aton's forms


def normalise_host(host: str) -> str:
    """One spelling per host: canonical IP text, or a lower-case name without a trailing dot.

    ``LocalHost.`` is ``localhost``; ``127.1`` and ``0x7f000001`` are ``127.0.0.1`` (the
    forms the system resolver accepts for IPv4); ``[::FFFF:127.0.0.1]`` is ``127.0.0.1``;
    IPv6 is compressed (``2001:DB8:0::1`` is ``2001:db8::1``). Any other text (a name, an
    onion address) is kept as a name.
    """
    text = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if _NUMERIC_IPV4.fullmatch(text) and not text.endswith("."):
            try:
                return socket.inet_ntoa(socket.inet_aton(text))
            except OSError:
                pass
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def address_key(host: str, port: int) -> str:
    """How an address is remembered: ``host:port`` or ``[v6]:port``, the host normalised."""
    name = normalise_host(host)
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def parse_address_key(text: str) -> str | None:
    """``HOST:PORT`` or ``[V6]:PORT`` typed by a person, as remembered; None if it is not one."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return None
    return address_key(host, int(port))


# -- known peers ---------------------------------------------------------------


@dataclass
class KnownPeer:
    key: bytes
    names: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    verified: bool = False
    last_seen: int | None = None  # Unix time of the last completed handshake

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key.hex(),
            "names": self.names,
            "addresses": self.addresses,
            "verified": self.verified,
        }
        if self.last_seen is not None:
            data["last_seen"] = self.last_seen
        return data


class KnownPeers:
    """The known_peers file: trust on first use, like SSH's known_hosts."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / KNOWN_PEERS_FILE
        self.peers: dict[bytes, KnownPeer] = {}
        found = _read_private(self.path, "known peers file")
        if found is None:
            return
        try:
            for entry in json.loads(found[0])["peers"]:
                key = bytes.fromhex(entry["key"])
                if len(key) != 32:
                    raise ValueError("not a key")
                seen = entry.get("last_seen")
                peer = KnownPeer(
                    key,
                    [str(n) for n in entry["names"]],
                    list(dict.fromkeys(parse_address_key(str(a)) or str(a) for a in entry["addresses"])),
                    entry["verified"] is True,
                    seen if isinstance(seen, int) and not isinstance(seen, bool) else None,
                )
                self.peers[peer.key] = peer
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LocalError(f"{self.path} is corrupt; fix it or move it away") from exc

    def save(self) -> None:
        data = {"version": 1, "peers": [peer.to_json() for peer in self.peers.values()]}
        # ASCII JSON: any string at all (even one a decoder let through) encodes; no error can carry the data.
        try:
            text = json.dumps(data, indent=1, ensure_ascii=True)
        except (TypeError, ValueError) as exc:
            raise LocalError(f"cannot save {self.path}: {type(exc).__name__}") from None
        write_atomically(self.path, text.encode("ascii") + b"\n")

    def get(self, key: bytes) -> KnownPeer | None:
        return self.peers.get(key)

    def key_for_address(self, address: str) -> KnownPeer | None:
        """The peer last remembered at *address* (any spelling of it)."""
        wanted = parse_address_key(address) or address
        for peer in self.peers.values():
            if wanted in peer.addresses:
                return peer
        return None

    def conflicts(self, addresses: list[str], key: bytes) -> list[tuple[str, KnownPeer]]:
        """Each of *addresses* where a key other than *key* is remembered: the hard stop."""
        found = []
        for address in dict.fromkeys(addresses):
            peer = self.key_for_address(address)
            if peer is not None and peer.key != key:
                found.append((address, peer))
        return found

    def keys_for_name(self, name: str) -> list[KnownPeer]:
        """The peers that used *name*, or any name that looks the same (see names.comparable)."""
        wanted = comparable(name)
        if not wanted:
            return []
        return [peer for peer in self.peers.values() if any(comparable(n) == wanted for n in peer.names)]

    def remember(self, key: bytes, name: str, address: str | None, *more: str) -> KnownPeer:
        """Record a contact (now); each address moves to this key from any other."""
        peer = self.peers.setdefault(key, KnownPeer(key))
        peer.last_seen = int(time.time())
        if name and name not in peer.names:
            peer.names.append(name)
        for given in [a for a in (address, *more) if a is not None]:
            spelled = parse_address_key(given) or given
            for other in self.peers.values():
                if other is not peer and spelled in other.addresses:
                    other.addresses.remove(spelled)
            if spelled not in peer.addresses:
                peer.addresses.append(spelled)
        return peer

    def find(self, target: str) -> list[KnownPeer]:
        """The peers a person means by *target*: a fingerprint, else a name (as compared), else an address."""
        with contextlib.suppress(UsageError):
            wanted = parse_fingerprint(target)
            return [peer for peer in self.peers.values() if fingerprint(peer.key) == wanted]
        by_name = self.keys_for_name(target)
        if by_name:
            return by_name
        address = parse_address_key(target)
        return [peer for peer in self.peers.values() if address is not None and address in peer.addresses]

    def forget(self, target: str) -> list[KnownPeer]:
        """Forget an address (HOST:PORT, any spelling), or a whole peer (its fingerprint or name).

        Returns the peers touched. A name used by several keys is refused (UsageError): say which
        by fingerprint.
        """
        address = parse_address_key(target)
        if address is not None:
            touched = [peer for peer in self.peers.values() if address in peer.addresses]
            for peer in touched:
                peer.addresses.remove(address)
            return touched
        found = self.find(target)
        if len(found) > 1:
            raise UsageError(ambiguous(target, found))
        for peer in found:
            del self.peers[peer.key]
        return found


def ambiguous(name: str, peers: list[KnownPeer]) -> str:
    keys = ", ".join(fingerprint(peer.key) for peer in peers)
    return f"{len(peers)} known keys use the name {name!r} ({keys}); give the fingerprint instead"
