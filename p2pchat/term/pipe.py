"""Pipe mode, for scripts (stdin is not a terminal): a netcat that encrypts and never drops data.

Each stdin line is sent as one text; each text received is written to stdout
as ``NAME: TEXT`` (a text holding newlines becomes several such lines). Status
and errors go to stderr. prompt_toolkit is never imported here.

The main thread reads stdin with select() on stdin and a wake-up pipe, so the
receiver thread can end the wait the moment the peer leaves: no polling.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
from typing import BinaryIO, Protocol

from ..errors import OutputClosed
from ..events import (
    ChatEvent,
    Delivered,
    LinkDown,
    LinkFailed,
    LinkUp,
    PeerDone,
    PeerLeft,
    PeerRestarted,
    Received,
    Reconnecting,
    WaitingForPeer,
)
from .sanitize import clean_text, preview
from .say import status

READ_SIZE = 64 * 1024


class PipeLink(Protocol):
    def send_text(self, text: str, action: bool = False) -> list[int]: ...
    def wait_for_room(self) -> None: ...


class Pipe:
    """Moves lines between stdin/stdout and a link; :meth:`run` returns why it stopped."""

    def __init__(self, peer_name: str, stdin_fd: int | None = None, stdout: BinaryIO | None = None) -> None:
        self._peer = peer_name
        self._stdin = sys.stdin.fileno() if stdin_fd is None else stdin_fd
        self._stdout = stdout if stdout is not None else sys.stdout.buffer
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Lock()
        self.ended: ChatEvent | None = None  # PeerLeft or LinkFailed, once the link has ended

    def on_event(self, event: ChatEvent) -> None:
        """Called from the receiver thread."""
        if isinstance(event, Received):
            self._write(event)
        elif isinstance(event, (PeerLeft, LinkFailed)):
            with self._lock:
                if self.ended is None:
                    self.ended = event
            os.write(self._wake_w, b"!")
        elif isinstance(event, (Delivered, PeerDone)):
            pass  # the conversation tracks deliveries and the end of the peer's input; nothing to print
        else:
            for line in _link_state(event, self._peer):
                status(line)

    def _write(self, event: Received) -> None:
        prefix = f"* {self._peer} " if event.action else f"{self._peer}: "
        lines = "".join(prefix + line + "\n" for line in clean_text(event.text).split("\n"))
        try:
            self._stdout.write(lines.encode("utf-8", "replace"))
            self._stdout.flush()
        except OSError as exc:  # stdout closed (| head): stop, rather than acknowledge unseen text
            raise OutputClosed() from exc

    def run(self, link: PipeLink) -> bool:
        """Send stdin line by line until EOF (True) or until the link ends first (False)."""
        pending = b""
        while True:
            ready, _, _ = select.select([self._stdin, self._wake_r], [], [])
            if self._wake_r in ready:
                return False
            chunk = os.read(self._stdin, READ_SIZE)
            if not chunk:
                if pending:  # a last line without a newline is still a line
                    link.send_text(_decode(pending))
                return True
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                link.wait_for_room()
                if self.ended is not None:
                    return False
                link.send_text(_decode(line))

    def close(self) -> None:
        """Release the wake-up pipe; only once the link's threads have ended."""
        os.close(self._wake_r)
        os.close(self._wake_w)


def _link_state(event: ChatEvent, peer: str) -> list[str]:
    """stderr lines for a change of the link under the chat: one per loss and one per resume, no flood."""
    if isinstance(event, LinkDown):
        return [f"connection lost: {event.reason}"]
    if isinstance(event, Reconnecting):
        # The first attempt, then only a few: a long outage must not fill a log.
        if event.attempt in (2, 5) or event.attempt % 20 == 0:
            return [f"reconnecting in {event.delay:.0f} s (attempt {event.attempt})"]
        return []
    if isinstance(event, WaitingForPeer):
        return [f"waiting for {peer} to come back (until {time.strftime('%H:%M:%S', time.localtime(event.until))})"]
    if isinstance(event, LinkUp):
        return [f"reconnected; sent {event.resent} message(s) again"]
    if isinstance(event, PeerRestarted):
        lines = [f"{peer} started a new chat; {len(event.undelivered)} message(s) of the old one were lost"]
        return lines + [f"not delivered: {preview(text)}" for _, text in event.undelivered]
    return []


def _decode(line: bytes) -> str:
    # Invalid UTF-8 is sent as U+FFFD rather than refused: a pipe carries what it is given.
    return line.removesuffix(b"\r").decode("utf-8", "replace")
