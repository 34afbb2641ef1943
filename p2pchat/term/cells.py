"""Display cells: grapheme clusters and their width, as the screen will draw them.

Widths come from prompt_toolkit's ``get_cwidth`` summed over a cluster's code
points, because prompt_toolkit places every code point on its grid that way; a
layout measured differently would disagree with the screen it is drawn on.
Clusters (a letter and its combining marks, an emoji ZWJ sequence, a flag, a
skin-tone or variation selector) are never split: a line breaks between them.

The segmentation is a small subset of Unicode's UAX #29 that covers what chat
text holds; an unusual sequence at worst breaks where UAX #29 would not, never
inside a code point.
"""

from __future__ import annotations

import re
import unicodedata

from prompt_toolkit.utils import get_cwidth

ELLIPSIS = "…"

_ZWJ = 0x200D


def _extends(cp: int, char: str) -> bool:
    """Does this code point attach to the cluster before it?"""
    return (
        cp == _ZWJ
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (VS16: emoji presentation)
        or 0x1F3FB <= cp <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # tag characters (subdivision flags)
        or 0xE0100 <= cp <= 0xE01EF  # variation selectors supplement
        or 0x1160 <= cp <= 0x11FF  # Hangul medial vowels and final consonants
        or unicodedata.category(char) in ("Mn", "Me", "Mc")  # combining marks
    )


def _regional(cp: int) -> bool:
    return 0x1F1E6 <= cp <= 0x1F1FF


def graphemes(text: str) -> list[str]:
    """*text* split into grapheme clusters (CR LF stays together)."""
    out: list[str] = []
    joined = False  # the last code point was a ZWJ: the next one belongs to the same cluster
    open_flag = False  # the cluster is one regional indicator, waiting for its pair
    for char in text:
        cp = ord(char)
        if out and (joined or _extends(cp, char) or (open_flag and _regional(cp)) or (out[-1] == "\r" and cp == 10)):
            open_flag = False
            out[-1] += char
        else:
            open_flag = _regional(cp)
            out.append(char)
        joined = cp == _ZWJ
    return out


# Emoji sequences terminals disagree on: one terminal joins a ZWJ family or a flag into 2 cells,
# another draws each part, and prompt_toolkit counts each part. See :func:`unsure`.
_UNSURE = re.compile("[\u200d\ufe0f\U0001f1e6-\U0001f1ff\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f]")


def unsure(text: str) -> bool:
    """Does *text* hold a sequence whose width depends on the terminal (ZWJ, flag, skin tone, VS16)?"""
    return not text.isascii() and _UNSURE.search(text) is not None


def cluster_width(cluster: str) -> int:
    """Cells a cluster takes on prompt_toolkit's grid (never negative)."""
    return sum(max(0, get_cwidth(char)) for char in cluster)


def width(text: str) -> int:
    """Cells *text* takes on one line."""
    if text.isascii():
        return len(text)  # the common case, fast: printable ASCII is one cell each
    return sum(max(0, get_cwidth(char)) for char in text)


def cut(text: str, cells: int) -> str:
    """*text* cut to at most *cells* cells at a cluster boundary, with "…" where cut."""
    if width(text) <= cells:
        return text
    if cells <= 0:
        return ""
    out, used = [], 0
    for cluster in graphemes(text):
        size = cluster_width(cluster)
        if used + size > cells - 1:
            break
        out.append(cluster)
        used += size
    return "".join(out) + ELLIPSIS
