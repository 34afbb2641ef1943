"""File transfer in the terminal interface: /send, /accept, /decline, /transfers, /cancel.

The handlers take the command's argument and return lines to show; the interface runs them
from its command table (:meth:`FileCommands.table`). File events become one line each via
*notify*; progress goes to *progress* (a status bar or one line updated in place).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..core.filenames import shown
from ..errors import LocalError
from ..link.files import download_dir
from ..link.filetransfer import FileContinued, FileEngine, FileEvent, FileOffered, FileOutcome, FileProgress, human_size
from .progress import Meter

USAGE = {
    "/send": "/send PATH: offer a file (Tab completes the path)",
    "/accept": "/accept [N] [DIR]: accept offer N (default: the oldest) into DIR (default: your downloads)",
    "/decline": "/decline [N]: decline offer N (default: the oldest)",
    "/transfers": "/transfers: list the transfers",
    "/cancel": "/cancel [N]: stop transfer N (default: the only one under way)",
}


class FileCommands:
    """The file commands of one chat."""

    def __init__(
        self,
        peer: str,
        notify: Callable[[str, bool], None],
        progress: Callable[[str], None] = lambda line: None,
        files_in_use: Callable[[], bool] = lambda: True,
        directory: Path | None = None,
    ) -> None:
        self._peer = peer
        self._notify = notify
        self._progress = progress
        self._files_in_use = files_in_use
        self.directory = directory or download_dir()
        self.activity = ""  # the transfer under way, for the status bar: "↓ report.pdf 45% of 2.3 MB, ..."
        self._meter = Meter()
        self._lock = threading.Lock()
        self.failed = False  # a file sent or accepted did not arrive: the exit status says so
        self.engine = FileEngine(self.on_event, peer=peer, directory=self.directory)

    def table(self) -> dict[str, Callable[[str], list[str]]]:
        """Command name -> handler, for the interface's command table."""
        return {
            "/send": self.send,
            "/accept": self.accept,
            "/decline": self.decline,
            "/transfers": self.transfers,
            "/cancel": self.cancel,
        }

    def on_event(self, event: FileEvent) -> None:
        if isinstance(event, FileOffered):
            kept = f" ({human_size(event.kept)} kept from before: /accept continues)" if event.kept else ""
            self._notify(
                f"{self._peer} offers {event.name} ({human_size(event.size)}){kept} "
                f"— /accept {event.number} or /decline {event.number}",
                False,
            )
        elif isinstance(event, FileProgress):
            arrow = "↑" if event.sending else "↓"
            with self._lock:  # progress comes from the link's threads and the writer's
                words = self._meter.line(event.number, event.done, event.size, time.monotonic())
            self.activity = "" if event.done >= event.size else f"{arrow} {event.name} {words}"
            self._progress(self.activity)
        elif isinstance(event, FileContinued):
            self._notify(event.line, False)
        elif isinstance(event, FileOutcome):
            self.failed |= not event.ok and event.wanted
            with self._lock:
                self._meter.forget(event.number)
            self.activity = ""
            self._progress("")
            self._notify(event.line, not event.ok)

    # -- the commands -----------------------------------------------------------------

    def send(self, argument: str) -> list[str]:
        if not argument:
            return [USAGE["/send"]]
        if not self._files_in_use():
            return [f"{self._peer} does not support file transfer: not sending {argument}"]
        path = Path(os.path.expanduser(argument))
        try:
            number = self.engine.offer(path)
        except LocalError as exc:
            return [str(exc)]
        size = path.stat().st_size
        return [f"offered {shown(path.name)} ({human_size(size)}) to {self._peer} as #{number}; waiting for an answer"]

    def accept(self, argument: str) -> list[str]:
        words = argument.split(maxsplit=1)
        number, rest = self._number(words, self.engine.pending_offers())
        if number is None:
            return [rest or "no offer is waiting"]
        directory = Path(os.path.expanduser(rest)) if rest else self.directory
        if not rest and not directory.exists():
            try:  # the default download directory, as a browser would make it
                directory.mkdir(mode=0o700, parents=True)
            except OSError as exc:
                return [f"cannot create {directory}: {exc.strerror}"]
        if not directory.is_dir():
            return [f"{directory} is not a directory"]
        try:
            self.engine.accept(number, directory)
        except LocalError as exc:
            return [str(exc)]
        return [f"accepted #{number} into {directory}"]

    def decline(self, argument: str) -> list[str]:
        number, rest = self._number(argument.split(), self.engine.pending_offers())
        if number is None:
            return [rest or "no offer is waiting"]
        try:
            self.engine.decline(number)
        except LocalError as exc:
            return [str(exc)]
        return []  # the outcome line says it

    def transfers(self, argument: str) -> list[str]:
        return self.engine.listing()

    def cancel(self, argument: str) -> list[str]:
        number, rest = self._number(argument.split(), self.engine.active())
        if number is None:
            return [rest or "no transfer is under way"]
        try:
            self.engine.cancel(number)
        except LocalError as exc:
            return [str(exc)]
        return []

    @staticmethod
    def _number(words: list[str], candidates: list[int]) -> tuple[int | None, str]:
        """The transfer number the words name (or the only/oldest candidate), and the rest of the words."""
        if words and words[0].lstrip("#").isdigit():
            return int(words[0].lstrip("#")), " ".join(words[1:])
        if not candidates:
            return None, ""
        return candidates[0], " ".join(words)


def complete_path(text: str, limit: int = 50) -> list[str]:
    """Completions of a partly typed path (for Tab after /send): directories end with /."""
    expanded = os.path.expanduser(text)
    directory, prefix = os.path.split(expanded)
    try:
        entries = sorted(os.listdir(directory or "."))
    except OSError:
        return []
    out = []
    for entry in entries:
        if not entry.startswith(prefix) or (entry.startswith(".") and not prefix.startswith(".")):
            continue
        full = os.path.join(directory, entry)
        shown = text[: len(text) - len(prefix)] + entry
        out.append(shown + "/" if os.path.isdir(full) else shown)
        if len(out) >= limit:
            break
    return out
