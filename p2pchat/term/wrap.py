"""Wrapping styled text into screen rows: at spaces, never inside a word that fits, never inside a cluster.

Pure: fragments in, rows out. A row is a list of ``(style, text)`` pairs as
prompt_toolkit takes them. Continuation rows (a wrapped row, or the next line of
a text that holds newlines) start with *indent* spaces, so the text keeps its
column; only a word longer than a whole row is cut, and then between clusters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .cells import cluster_width, graphemes

Fragment = tuple[str, str]
Row = list[Fragment]


def _append(row: Row, style: str, text: str) -> None:
    if row and row[-1][0] == style:
        row[-1] = (style, row[-1][1] + text)
    else:
        row.append((style, text))


_ASCII_TOKEN = re.compile(r" +|\n|[^ \n]+")


def _tokens(fragments: Sequence[Fragment]) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """("word" | "space" | "newline", [(style, text, width), ...]) in order.

    An item's text is one cluster, or a run of printable ASCII (the common case, kept whole for speed).
    """
    tokens: list[tuple[str, list[tuple[str, str, int]]]] = []

    def add(kind: str, item: tuple[str, str, int]) -> None:
        if tokens and tokens[-1][0] == kind and kind != "newline":
            tokens[-1][1].append(item)
        else:
            tokens.append((kind, [item]))

    for style, text in fragments:
        if text.isascii():
            for chunk in _ASCII_TOKEN.findall(text):
                kind = "newline" if chunk == "\n" else "space" if chunk[0] == " " else "word"
                add(kind, (style, chunk, 0 if kind == "newline" else len(chunk)))
            continue
        for cluster in graphemes(text):
            kind = "newline" if cluster in ("\n", "\r\n") else "space" if cluster == " " else "word"
            add(kind, (style, cluster, 0 if kind == "newline" else cluster_width(cluster)))
    return tokens


def _clusters(items: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Items cut into single clusters, for a word that must be cut."""
    out = []
    for style, text, size in items:
        if len(text) == 1 or not text.isascii():
            out.append((style, text, size))
        else:
            out.extend((style, char, 1) for char in text)
    return out


def wrap(fragments: Sequence[Fragment], width: int, indent: int = 0) -> list[Row]:
    """Rows of at most *width* cells; continuation rows indented by *indent* (at most half the width)."""
    width = max(1, width)
    indent = max(0, min(indent, width // 2))
    rows: list[Row] = [[]]
    used = 0

    def new_row() -> None:
        nonlocal used
        rows.append([("", " " * indent)] if indent else [])
        used = indent

    def place(items: list[tuple[str, str, int]]) -> None:
        nonlocal used
        for style, cluster, size in items:
            if used + size > width and used > (indent if len(rows) > 1 else 0):
                new_row()
            _append(rows[-1], style, cluster)
            used += size

    spaces: list[tuple[str, str, int]] = []
    for kind, items in _tokens(fragments):
        if kind == "newline":
            spaces = []
            new_row()
        elif kind == "space":
            spaces = items
        else:
            size = sum(item[2] for item in items)
            gap = sum(item[2] for item in spaces)
            if used + gap + size <= width:
                place(spaces)
                place(items)
            elif size <= width - indent:  # fits on a row of its own: break at the space
                new_row()
                place(items)
            else:  # longer than a row: cut it, starting where this row has room
                if used + gap < width:
                    place(_clusters(spaces))
                place(_clusters(items))
            spaces = []
    if spaces:  # trailing spaces: kept while they fit (they are part of what was typed)
        room = width - used
        place(_clusters(spaces)[: max(0, room)])
    return rows
