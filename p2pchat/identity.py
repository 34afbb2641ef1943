"""Who is who: your identity key, fingerprints, safety codes, and the peers you know.

Files live in ``$P2PCHAT_HOME``, else ``$XDG_DATA_HOME/p2pchat``, else
``~/.local/share/p2pchat``; the directory is 0700. ``identity`` holds the
X25519 private key (PKCS#8 PEM, 0600); ``known_peers`` (JSON) remembers each
peer's key, the names it used, the addresses you dialed it at, and whether you
verified it. Both are written to a temporary file and renamed over the old one,
so a failed write never leaves a truncated file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
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


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write *data* to *path* through a temporary file and a rename: all or nothing."""
    _ensure_dir(path.parent)
    try:
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
    try:
        info = path.stat()
    except FileNotFoundError:
        key = X25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_atomically(path, pem)
        return key, True
    except OSError as exc:
        raise LocalError(f"cannot read identity key {path}: {exc.strerror or exc}") from exc
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise SecurityError(
            f"identity key {path} is accessible by other users; refusing to use it (fix: chmod 600 {path})"
        )
    try:
        loaded = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise LocalError(f"cannot read identity key {path}: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:
        raise LocalError(f"identity key {path} is corrupt; restore it from a backup or move it away") from exc
    if not isinstance(loaded, X25519PrivateKey):
        raise LocalError(f"identity key {path} is not an X25519 key")
    return loaded, False


@dataclass
class KnownPeer:
    key: bytes
    names: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    verified: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key.hex(), "names": self.names, "addresses": self.addresses, "verified": self.verified}


class KnownPeers:
    """The known_peers file: trust on first use, like SSH's known_hosts."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / KNOWN_PEERS_FILE
        self.peers: dict[bytes, KnownPeer] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise LocalError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            for entry in json.loads(raw)["peers"]:
                peer = KnownPeer(
                    bytes.fromhex(entry["key"]),
                    [str(n) for n in entry["names"]],
                    [str(a) for a in entry["addresses"]],
                    bool(entry["verified"]),
                )
                self.peers[peer.key] = peer
        except (ValueError, KeyError, TypeError) as exc:
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
        """The peer last remembered at a dialed *address*."""
        for peer in self.peers.values():
            if address in peer.addresses:
                return peer
        return None

    def keys_for_name(self, name: str) -> list[KnownPeer]:
        """The peers that used *name*, or any name that looks the same (see names.comparable)."""
        wanted = comparable(name)
        if not wanted:
            return []
        return [peer for peer in self.peers.values() if any(comparable(n) == wanted for n in peer.names)]

    def remember(self, key: bytes, name: str, address: str | None) -> KnownPeer:
        """Record a contact; an address moves to this key from any other."""
        peer = self.peers.setdefault(key, KnownPeer(key))
        if name and name not in peer.names:
            peer.names.append(name)
        if address is not None:
            for other in self.peers.values():
                if other is not peer and address in other.addresses:
                    other.addresses.remove(address)
            if address not in peer.addresses:
                peer.addresses.append(address)
        return peer

    def forget(self, target: str) -> list[KnownPeer]:
        """Forget an address (HOST:PORT) or a whole peer (its fingerprint); returns the peers touched."""
        touched = [peer for peer in self.peers.values() if target in peer.addresses]
        for peer in touched:
            peer.addresses.remove(target)
        with contextlib.suppress(UsageError):
            wanted = parse_fingerprint(target)
            for key in [k for k in self.peers if fingerprint(k) == wanted]:
                touched.append(self.peers.pop(key))
        return touched
