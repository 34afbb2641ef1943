"""Real p2pchat processes on loopback, watched without sleeps: every wait is on an event with a timeout."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

TIMEOUT = 30.0  # generous: CI machines are slow, and no test waits this long when things work


class Proc:
    """One ``python -m p2pchat ...`` with its own home; stdout and stderr read by threads."""

    def __init__(
        self, args: list[str], home: Path, env: dict[str, str] | None = None, prefix: list[str] | None = None
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("P2PCHAT_")}
        full_env.update({"P2PCHAT_HOME": str(home), "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "p2pchat", *args],  # prefix: e.g. ip netns exec NAME
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        self.out_lines: queue.Queue[str] = queue.Queue()
        self.err_lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=_read, args=(self.popen.stdout, self.out_lines, self.out), daemon=True),
            threading.Thread(target=_read, args=(self.popen.stderr, self.err_lines, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def write(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode())
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def wait_err(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        return _wait(self.err_lines, pattern, timeout, self.err)

    def wait_out(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        return _wait(self.out_lines, pattern, timeout, self.out)

    def port(self) -> int:
        return int(self.wait_err(r"listening on .*:(\d+)$").group(1))

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the exit code (stdin closed first), and for all output to be read."""
        if self.popen.stdin and not self.popen.stdin.closed:
            self.close_stdin()
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(TIMEOUT)

    @property
    def stderr_text(self) -> str:
        return "".join(self.err)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _read(stream: IO[bytes], lines: queue.Queue[str], record: list[str]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        record.append(line)
        lines.put(line)
    lines.put("")  # end of stream


def _wait(lines: queue.Queue[str], pattern: str, timeout: float, record: list[str]) -> re.Match[str]:
    regex = re.compile(pattern)
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got {record!r}") from None
        if line == "":
            lines.put("")
            raise AssertionError(f"stream ended without a line matching {pattern!r}; got {record!r}")
        match = regex.search(line.rstrip("\n"))
        if match:
            return match


def listener(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Proc, int]:
    proc = Proc(["listen", "127.0.0.1:0", "--name", "lis", *args], home, env)
    return proc, proc.port()


def dialer(home: Path, port: int, *args: str, env: dict[str, str] | None = None) -> Proc:
    return Proc(["dial", f"127.0.0.1:{port}", "--name", "dia", *args], home, env)
