"""File names a peer offers, made safe to save and to show (sans-IO).

A peer chooses the name of a file it offers; everything in it is hostile. :func:`safe_name`
reduces it to one harmless base name: no directory part (``/``, ``\\``, ``..``, a drive
letter), no control, format (bidi, zero-width), surrogate, private-use or unassigned
characters, NFC, no leading dot (no hidden files) and at most :data:`MAX_NAME_BYTES` bytes
of UTF-8, the extension kept. :func:`numbered` makes ``NAME (1).ext`` when ``NAME.ext``
is taken. :func:`shown` escapes whatever a name still holds that a terminal would act on.
"""

from __future__ import annotations

import re
import unicodedata

# Leaves room under the usual 255-byte NAME_MAX for " (9999)" and ".part".
MAX_NAME_BYTES = 200
MAX_EXTENSION_CHARS = 16  # a longer "extension" is just part of the name: not worth keeping whole
FALLBACK_NAME = "file"  # for a name with nothing left
PART_SUFFIX = ".part"  # partial data lives in NAME.part until verified

# Unicode categories removed from names: controls, format (bidi, zero-width), surrogates,
# private use, unassigned, line and paragraph separators.
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_DRIVE = re.compile(r"^[A-Za-z]:")


def _keep(char: str) -> bool:
    return unicodedata.category(char) not in _REMOVED_CATEGORIES


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, limit: int) -> str:
    """The longest prefix of *text* of at most *limit* UTF-8 bytes (whole characters)."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def split_extension(name: str) -> tuple[str, str]:
    """``("report", ".pdf")`` for ``report.pdf``; no extension for ``.bashrc`` or a long suffix."""
    dot = name.rfind(".")
    if dot <= 0 or len(name) - dot > MAX_EXTENSION_CHARS + 1 or dot == len(name) - 1:
        return name, ""
    return name[:dot], name[dot:]


def safe_name(offered: str) -> str:
    """A base name for *offered* that is safe to create in a directory and to show."""
    name = unicodedata.normalize("NFC", offered)
    name = "".join(char if _keep(char) else "_" for char in name)
    # The last component of either kind of path, then no drive letter ("C:x" is relative on Windows).
    name = re.split(r"[/\\]", name)[-1]
    name = _DRIVE.sub("", name)
    # Spaces and dots at the ends: "..", ".", hidden files, Windows' silent trimming.
    name = name.strip(" .")
    if not name:
        name = FALLBACK_NAME
    return _fit(name, MAX_NAME_BYTES)


def _fit(name: str, limit: int) -> str:
    """*name* cut to *limit* UTF-8 bytes, keeping its extension."""
    if _utf8_len(name) <= limit:
        return name
    stem, extension = split_extension(name)
    stem = _cut(stem, limit - _utf8_len(extension)).rstrip(" .")
    return (stem or FALLBACK_NAME) + extension


def numbered(name: str, number: int) -> str:
    """``NAME (number).ext`` for ``NAME.ext``: the name to try when *name* is taken."""
    if number < 1:
        raise ValueError("number must be at least 1")
    stem, extension = split_extension(name)
    suffix = f" ({number})"
    # Still within MAX_NAME_BYTES, so the .part file fits under NAME_MAX too.
    stem = _cut(stem, MAX_NAME_BYTES - _utf8_len(suffix) - _utf8_len(extension))
    return f"{stem}{suffix}{extension}"


def shown(name: str) -> str:
    """*name* as one printable line: anything a terminal could act on is escaped (``\\u202e``)."""
    out = []
    for char in name:
        if char == "\\":
            out.append("\\\\")
        elif _keep(char) and char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def was_changed(offered: str, safe: str) -> bool:
    """True when *safe* differs from what the peer offered (worth telling the user)."""
    return unicodedata.normalize("NFC", offered) != safe
