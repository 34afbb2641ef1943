"""One status line on stderr, as every part of p2pchat writes them."""

from __future__ import annotations

import sys


def status(line: str) -> None:
    """``p2pchat: LINE`` on stderr, in one write: a signal between a print's text and its newline
    would glue two lines together."""
    sys.stderr.write(f"p2pchat: {line}\n")
    sys.stderr.flush()
