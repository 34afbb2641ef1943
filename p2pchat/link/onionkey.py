"""The kept onion key: the same ``.onion`` address every time, like a phone number.

One file per identity, ``onion/<first 16 hex digits of SHA-256(identity public key)>.key``
in the data directory, holding the key exactly as Tor gave it (``ED25519-V3:<base64>``).
Written like the identity key: 0600 in a 0700 directory, through a temporary file and a
rename. Whoever holds it can publish our address, so a file others can read is refused.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from ..core.torcontrol import check_private_key
from ..errors import LocalError, SecurityError
from ..identity import _read_private, write_atomically

DIRECTORY = "onion"
MAX_SIZE = 1024  # bytes: the key is 100; anything larger is not our file


def path_for(directory: Path, identity: bytes) -> Path:
    """Where the onion key of the identity with public key *identity* lives."""
    return directory / DIRECTORY / f"{hashlib.sha256(identity).hexdigest()[:16]}.key"


def load(directory: Path, identity: bytes) -> str | None:
    """The kept key, or None if this identity has none yet."""
    path = path_for(directory, identity)
    # As the identity key: StrictModes checks, no symbolic link, and no file others can read.
    found = _read_private(path, "onion key")
    if found is None:
        return None
    data, info = found
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise SecurityError(
            f"onion key {path} is accessible by other users; refusing to use it (fix: chmod 600 {path})"
        )
    try:
        return check_private_key(data[:MAX_SIZE].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise LocalError(
            f"onion key {path} is corrupt; restore it from a backup, or move it away for a new address"
        ) from exc


def save(directory: Path, identity: bytes, key: str) -> Path:
    path = path_for(directory, identity)
    write_atomically(path, check_private_key(key).encode("ascii") + b"\n")
    return path
