"""File transfers in pipe mode: ``--send FILE`` and ``--save-to DIR``, progress and outcomes on stderr.

Offers are accepted into ``--save-to``; without it they are declined, saying so. A progress
line is drawn on stderr only when stderr is a terminal; every outcome is one line.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..errors import LocalError
from ..link.filetransfer import FileContinued, FileEngine, FileEvent, FileOffered, FileOutcome, FileProgress, human_size
from .progress import Meter
from .sanitize import clean_text

STALL_TIMEOUT = 120.0  # seconds without any progress before a pipe stops waiting for its transfers
ANSWER_TIMEOUT = 600.0  # seconds a pipe waits for a person to answer its offers (a peer in the terminal)
ANSWER_NOTICE = 2.0  # seconds without an answer before the pipe says it is waiting for one


class FilePipe:
    """Decides on offers and reports transfers for a pipe; :attr:`engine` is the conversation's engine."""

    def __init__(self, peer: str, save_to: Path | None, stderr: TextIO | None = None) -> None:
        self._peer = peer
        self._save_to = save_to
        self._stderr = stderr if stderr is not None else sys.stderr
        self._bar = self._stderr.isatty()
        self._lock = threading.Lock()
        self._meter = Meter()
        self._progressed = 0  # progress events seen: tells a stalled transfer from a slow one
        self._quiet: set[int] = set()  # offers declined for want of --save-to: already reported
        self.failed = False  # some file we sent or accepted did not arrive
        self.engine = FileEngine(self.on_event, peer=peer, directory=save_to)

    def on_event(self, event: FileEvent) -> None:
        if isinstance(event, FileOffered):
            self._offered(event)
        elif isinstance(event, FileProgress):
            with self._lock:
                self._progressed += 1
            if self._bar:
                self._draw(event)
        elif isinstance(event, FileContinued):
            self._say(event.line)
        elif isinstance(event, FileOutcome):
            with self._lock:
                self._meter.forget(event.number)
            if not event.ok and event.wanted:
                self.failed = True
            if event.sending or event.number not in self._quiet:
                self._say(event.line)

    def _offered(self, event: FileOffered) -> None:
        what = f"{event.name} ({human_size(event.size)}) from {self._peer}"
        if self._save_to is None:
            self._say(f"declined {what}: give --save-to DIR to accept files")
            self._quiet.add(event.number)  # that line says it all
            with contextlib.suppress(LocalError):
                self.engine.decline(event.number)
            return
        resumed = f", continuing the {human_size(event.kept)} kept" if event.kept else ""
        self._say(f"receiving {what} into {self._save_to}{resumed}")
        self.engine.accept(event.number, self._save_to)

    def offer(self, paths: list[Path], files_in_use: bool) -> None:
        """Offer every file; a peer without file support is never offered one (and that is a failure)."""
        for path in paths:
            if not files_in_use:
                self._say(f"{self._peer} does not support file transfer: not sending {path}")
                self.failed = True
                continue
            try:
                self.engine.offer(path)
            except LocalError as exc:
                self._say(str(exc))
                self.failed = True

    def wait(self, gone: Callable[[], bool] = lambda: True, connected: Callable[[], bool] = lambda: True) -> None:
        """Wait until every transfer is over (or the link is gone for good, as *gone* says).

        Gives up after STALL_TIMEOUT seconds without progress while connected (during an outage
        the conversation's resume deadline decides: its end wakes this wait). An offer waiting for
        a person's answer (a peer in the terminal) gets ANSWER_TIMEOUT, and a line saying so.
        """
        start = last = time.monotonic()  # last: the last sign of life (progress, or an outage's end)
        said = False
        while True:
            with self._lock:
                before = self._progressed
            waiting = self.engine.awaiting_answer()
            if self.engine.wait_idle(ANSWER_NOTICE if waiting and not said else STALL_TIMEOUT, gone):
                return
            now = time.monotonic()
            with self._lock:
                progressed = self._progressed != before
            if progressed or not connected():
                last = now
                continue
            waiting = self.engine.awaiting_answer()
            if waiting and now - start < ANSWER_TIMEOUT:
                if not said:
                    self._say(f"waiting for {self._peer} to accept or decline {', '.join(waiting)}")
                    said = True
                continue
            if not waiting and now - last < STALL_TIMEOUT:
                continue
            with self._lock:
                self.failed = True
            if waiting:
                self._say(f"{self._peer} did not answer within {ANSWER_TIMEOUT / 60:g} min: giving up")
            else:
                self._say(f"file transfer stalled for {STALL_TIMEOUT:g} s: giving up")
            return

    def close(self) -> None:
        for line in self.engine.close():
            self._say(line)
            self.failed = True

    def _say(self, line: str) -> None:
        with self._lock:
            clear = "\r\x1b[K" if self._bar else ""
            print(f"{clear}p2pchat: {clean_text(line)}", file=self._stderr, flush=True)

    def _draw(self, event: FileProgress) -> None:
        with self._lock:
            words = self._meter.line(event.number, event.done, event.size, time.monotonic())
            arrow = "sending" if event.sending else "receiving"
            self._stderr.write(f"\r\x1b[K{arrow} {event.name}: {words}"[:200])
            self._stderr.flush()
