"""Make a peer's text and name safe to show: nothing the peer sends may drive the terminal.

Control characters (C0, DEL, C1), and with them every escape sequence, and the
bidirectional overrides and isolates that can make text read differently than
it is, are shown escaped (``\\x1b``, ``\\u202e``). Tab and newline stay in
texts, where they are readable; names are one line.
"""

from __future__ import annotations

from ..core.names import escape_invisible

MAX_NAME_CHARS = 32  # names are cut to this many characters for display
NO_NAME = "(no name)"  # shown for a peer that sent an empty name

_UNSAFE = [
    *range(0x00, 0x20),  # C0 controls, ESC among them
    0x7F,  # DEL
    *range(0x80, 0xA0),  # C1 controls (0x9b is a one-byte CSI)
    *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO
    *range(0x2066, 0x206A),  # LRI RLI FSI PDI
    0x2028,  # line separator and
    0x2029,  # paragraph separator: would break our line layout
]


def _escaped(cp: int) -> str:
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}"


_NAME_TABLE = {cp: _escaped(cp) for cp in _UNSAFE}
_TEXT_TABLE = {cp: esc for cp, esc in _NAME_TABLE.items() if cp not in (0x09, 0x0A)}


def clean_text(text: str) -> str:
    """*text* with every unsafe character escaped; tab and newline kept."""
    return text.translate(_TEXT_TABLE)


def preview(text: str, limit: int = 80) -> str:
    """*text* cleaned and flattened to one line of at most *limit* characters (for lists)."""
    flat = clean_text(text).replace("\n", " ").replace("\t", " ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def clean_name(name: str) -> str:
    """*name* escaped to one safe line, cut to MAX_NAME_CHARS, or a placeholder when empty.

    Invisible characters (format characters, fillers, lone marks) are escaped too: a name
    that differs from another only by them must not look the same.
    """
    cleaned = escape_invisible(name.strip()).translate(_NAME_TABLE)
    if not cleaned:
        return NO_NAME
    if len(cleaned) > MAX_NAME_CHARS:
        cleaned = cleaned[: MAX_NAME_CHARS - 1] + "…"
    return cleaned
