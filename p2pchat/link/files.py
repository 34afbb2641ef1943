"""Files on disk for transfers: the sender's source, the receiver's ``.part`` file.

The receiver never writes outside the chosen directory and never replaces anything:
data goes to ``NAME.part``, created with O_EXCL|O_NOFOLLOW (mode 0600), and only a file
whose SHA-256 matches the sender's gets its final name, by a hard link that fails rather
than replace an existing file (``NAME (1).ext`` then). A mismatch deletes the data.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
from pathlib import Path

from ..core.filenames import PART_SUFFIX, numbered, safe_name
from ..errors import LocalError

READ_BUFFER = 1024 * 1024  # bytes read per call when hashing a kept prefix
MAX_NUMBERED = 9999  # "NAME (9999).ext" is the last name tried
FREE_SPACE_RESERVE = 16 * 1024 * 1024  # leave this much free: a full disk breaks everything else too
_OPEN_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS


class NoSpace(LocalError):
    """Not enough free space for the file."""


def download_dir(home: Path | None = None, environ: dict[str, str] | None = None) -> Path:
    """The XDG download directory (``XDG_DOWNLOAD_DIR`` in user-dirs.dirs), else ~/Downloads."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME", "~")).expanduser() if home is None else home
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    try:
        text = (config / "user-dirs.dirs").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    # The file is shell syntax, but only this form is valid: XDG_DOWNLOAD_DIR="$HOME/dir" or "/abs".
    match = re.search(r'^XDG_DOWNLOAD_DIR="((?:\$HOME)?[^"$`\\]*)"\s*$', text, re.MULTILINE)
    if match:
        value = match.group(1)
        path = home / value[len("$HOME/") :] if value.startswith("$HOME") else Path(value)
        if path.is_absolute() and path != home:
            return path
    return home / "Downloads"


class Source:
    """A file being sent: read at any offset into the caller's buffer, SHA-256 of what was read in order."""

    def __init__(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise LocalError(f"cannot read {path}: {exc.strerror}") from exc
        info = os.fstat(self._fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(self._fd)
            raise LocalError(f"{path} is not a regular file")
        self.path = path
        self.size = info.st_size
        self._hash = hashlib.sha256()
        self._hashed = 0  # the hash covers the file up to here

    def seek(self, offset: int) -> None:
        """Data will be read from *offset* on: make the hash cover exactly the bytes before it."""
        while not self.catch_up(offset, READ_BUFFER):
            pass

    def catch_up(self, offset: int, budget: int) -> bool:
        """One step of seek(): hash at most *budget* bytes towards *offset*; True once there."""
        if offset < self._hashed:
            self._hash, self._hashed = hashlib.sha256(), 0  # a resume asked for less: hash again
        if self._hashed == offset:
            return True
        buffer = memoryview(bytearray(min(READ_BUFFER, budget)))
        end = min(offset, self._hashed + budget)
        while self._hashed < end:
            n = self.read_into(buffer[: min(len(buffer), end - self._hashed)], self._hashed)
            if n == 0:
                raise LocalError(f"{self.path} shrank while being sent")
        return self._hashed == offset

    def read_into(self, view: memoryview, offset: int) -> int:
        """Fill *view* with the file from *offset*; the count read (short only at the end of the file)."""
        total = 0
        while total < len(view):
            try:
                n = os.preadv(self._fd, [view[total:]], offset + total)
            except OSError as exc:
                raise LocalError(f"cannot read {self.path}: {exc.strerror}") from exc
            if n == 0:
                break
            total += n
        if offset == self._hashed:
            self._hash.update(view[:total])
            self._hashed += total
        return total

    def digest(self) -> bytes:
        return self._hash.digest()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class PartFile:
    """A file being received: ``NAME.part`` in the chosen directory until verified."""

    def __init__(self, directory: Path, name: str, fd: int, kept: int) -> None:
        self.directory = directory
        self.name = name  # the final name hoped for
        self.part = directory / (name + PART_SUFFIX)
        self._fd = fd
        self._hash = hashlib.sha256()
        self.written = kept  # bytes in the file, all hashed

    @classmethod
    def create(cls, directory: Path, offered: str, size: int) -> PartFile:
        """A new, empty ``.part`` for a file of *size* bytes offered as *offered*; NoSpace, LocalError."""
        check_space(directory, size)
        base = safe_name(offered)
        for number in range(MAX_NUMBERED + 1):
            name = numbered(base, number) if number else base
            if os.path.lexists(directory / name):
                continue
            try:
                fd = os.open(
                    directory / (name + PART_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600
                )
            except FileExistsError:
                continue
            except OSError as exc:
                raise LocalError(f"cannot create a file in {directory}: {exc.strerror}") from exc
            return cls(directory, name, fd, 0)
        raise LocalError(f"too many files named like {base} in {directory}")

    @classmethod
    def resumable(cls, directory: Path, offered: str, size: int) -> int | None:
        """How much of the file a ``NAME.part`` left by an earlier run holds, if one can be continued."""
        name = safe_name(offered)
        try:
            info = os.lstat(directory / (name + PART_SUFFIX))
        except OSError:
            return None
        if os.path.lexists(directory / name):
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size > size:
            return None
        return info.st_size

    @classmethod
    def resume(cls, directory: Path, offered: str, size: int) -> PartFile:
        """The ``NAME.part`` of an earlier run, its content hashed, ready to continue."""
        name = safe_name(offered)
        path = directory / (name + PART_SUFFIX)
        try:
            fd = os.open(path, os.O_RDWR | _OPEN_FLAGS)
        except OSError as exc:
            raise LocalError(f"cannot continue {path}: {exc.strerror}") from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > size:
            os.close(fd)
            raise LocalError(f"cannot continue {path}: not the partial file expected")
        check_space(directory, size - info.st_size)
        part = cls(directory, name, fd, 0)
        buffer = bytearray(READ_BUFFER)
        while part.written < info.st_size:
            n = os.preadv(fd, [buffer], part.written)
            if n == 0:
                break
            part._hash.update(memoryview(buffer)[:n])
            part.written += n
        return part

    def write(self, offset: int, data: memoryview | bytes) -> None:
        """Write *data* at *offset* (the next byte: the state machine checked it); NoSpace, LocalError."""
        if offset != self.written:
            raise ValueError("writes must follow each other")
        view = memoryview(data)
        try:
            done = 0
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], offset + done)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace("the disk is full") from exc
            raise LocalError(f"cannot write {self.part}: {exc.strerror}") from exc
        self._hash.update(view)
        self.written += len(view)

    def finish(self, expected: bytes) -> Path | None:
        """Compare hashes: on a match the file gets its final name (returned); else it is deleted (None)."""
        if self._hash.digest() != expected:
            self.discard()
            return None
        # No fsync: like cp and rsync, the data reaches the disk when the system writes it back
        # (an fsync of a large file costs seconds and protects only against a crash of the machine).
        self._close()
        base = self.name
        for number in range(MAX_NUMBERED + 1):
            name = numbered(base, number) if number else base
            final = self.directory / name
            try:
                os.link(self.part, final, follow_symlinks=False)  # fails rather than replace
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise LocalError(f"cannot name {final}: {exc.strerror}") from exc
                # A file system without hard links: check, then rename (a race only with ourselves).
                if os.path.lexists(final):
                    continue
                os.rename(self.part, final)
                return final
            os.unlink(self.part)
            return final
        raise LocalError(f"too many files named like {base} in {self.directory}")

    def discard(self) -> None:
        """Close and delete the partial data."""
        self._close()
        try:
            os.unlink(self.part)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LocalError(f"cannot delete {self.part}: {exc.strerror}") from exc

    def keep(self) -> None:
        """Close, keeping the partial data for a later resume."""
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def check_space(directory: Path, needed: int) -> None:
    """NoSpace unless *directory*'s file system has room for *needed* more bytes (and a reserve)."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise LocalError(f"cannot save in {directory}: {exc.strerror}") from exc
    if needed + FREE_SPACE_RESERVE > free:
        raise NoSpace(f"not enough space in {directory}: {needed} bytes needed, {free} free")
