"""Peer names as people see them: what counts as the same name, and which characters are invisible.

A peer chooses its name freely, so "bob", "bob " and "bob" + ZERO WIDTH SPACE must
count as one name when p2pchat warns that a name belonged to another key, and an
invisible character that survives must be shown, escaped, where the name appears.
"""

from __future__ import annotations

import unicodedata

# Default-ignorable code points that are not in category Cf: a terminal draws nothing
# (or a blank) for them. Cf itself (U+00AD, U+200B-U+200F, U+2060-U+2064, U+FEFF, tags...)
# is matched by category.
_IGNORABLE = frozenset(
    [
        0x034F,  # COMBINING GRAPHEME JOINER
        0x115F,  # HANGUL CHOSEONG FILLER
        0x1160,  # HANGUL JUNGSEONG FILLER
        0x17B4,  # KHMER VOWEL INHERENT AQ
        0x17B5,  # KHMER VOWEL INHERENT AA
        0x3164,  # HANGUL FILLER
        0xFFA0,  # HALFWIDTH HANGUL FILLER
        *range(0x180B, 0x1810),  # MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
        *range(0xFE00, 0xFE10),  # VARIATION SELECTORS 1-16
        *range(0xE0100, 0xE01F0),  # VARIATION SELECTORS 17-256
    ]
)
_MARKS = ("Mn", "Mc", "Me")


def is_invisible(char: str) -> bool:
    """Whether *char* shows as nothing (a format character, a filler, a selector) or is not a character."""
    category = unicodedata.category(char)
    return category in ("Cf", "Cs", "Co", "Cn") or ord(char) in _IGNORABLE


def comparable(name: str) -> str:
    """The form of *name* that is compared: NFKC, invisibles and lone marks gone, spaces folded, casefolded.

    Two names with the same comparable form look the same (or nearly: "Bob" and "bob")
    to a person, so a warning about one covers the other.
    """
    out: list[str] = []
    for char in unicodedata.normalize("NFKC", name):
        if is_invisible(char):
            continue
        if unicodedata.category(char) in _MARKS and (not out or out[-1] == " "):
            continue  # a combining mark with nothing to combine with
        if char.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            continue
        out.append(char)
    return unicodedata.normalize("NFKC", "".join(out).strip().casefold())


def escape_invisible(name: str) -> str:
    """*name* with every invisible character, and a mark with nothing to combine with, as ``\\uXXXX``."""
    out: list[str] = []
    for char in name:
        lone_mark = unicodedata.category(char) in _MARKS and (not out or out[-1].isspace())
        if is_invisible(char) or lone_mark:
            code = ord(char)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)
