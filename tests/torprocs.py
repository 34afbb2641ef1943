"""A real, network-less tor for tests, and a scripted fake one for what such a tor never does.

``tor --DisableNetwork 1`` starts in about 0.1 s, answers the control protocol and ADD_ONION,
opens no SOCKS port and never uploads a descriptor. Its control port is chosen by tor
("auto") and read from its log, so no two tests race for a port.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

TIMEOUT = 30.0  # generous: CI machines are slow; tor is ready in well under a second


@dataclass
class Tor:
    popen: subprocess.Popen[bytes]
    port: int
    data: Path

    @property
    def control(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cookie(self) -> Path:
        return self.data / "control_auth_cookie"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(TIMEOUT)


def tor_path() -> str:
    found = shutil.which("tor") or (shutil.which("tor", path="/usr/sbin:/usr/bin:/usr/local/bin"))
    if found is None:
        pytest.skip("tor is not installed (Debian: apt-get install tor)")
    return found


def start_tor(directory: Path, *options: str) -> Tor:
    """A tor with its own data directory, no network, a control port on 127.0.0.1 ("auto")."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = directory / "data"
    torrc = directory / "torrc"
    torrc.write_text("")
    args = [tor_path(), "--defaults-torrc", str(torrc), "-f", str(torrc), "--DataDirectory", str(data)]
    args += ["--DisableNetwork", "1", "--SocksPort", "0", "--ControlPort", "127.0.0.1:auto"]
    args += ["--Log", "notice stdout", "--__OwningControllerProcess", str(os.getpid()), *options]  # dies with us
    popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert popen.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read, args=(popen.stdout, lines), daemon=True).start()
    try:
        port = int(_wait(lines, r"Opened Control listener connection \(ready\) on 127\.0\.0\.1:(\d+)")[1])
        _wait(lines, r"Bootstrapped 0%")  # configuration done: the cookie file is written
    except BaseException:
        popen.kill()
        popen.wait(TIMEOUT)
        raise
    return Tor(popen, port, data)


def _read(stream: IO[bytes], lines: queue.Queue[str]) -> None:
    for raw in stream:
        lines.put(raw.decode("utf-8", "replace"))
    lines.put("")


def _wait(lines: queue.Queue[str], pattern: str) -> re.Match[str]:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"tor printed no line matching {pattern!r}: {seen}") from None
        if not line:
            raise AssertionError(f"tor ended without a line matching {pattern!r}: {seen}")
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match


def hashed_password(password: str) -> str:
    out = subprocess.run([tor_path(), "--quiet", "--hash-password", password], capture_output=True, timeout=TIMEOUT)
    return out.stdout.decode().strip().splitlines()[-1]


class FakeTor:
    """A control port answering each command with a scripted reply; ``events`` are sent after ADD_ONION.

    For what a network-less tor never does: upload a descriptor.
    """

    def __init__(self, replies: dict[str, bytes], events: bytes = b"") -> None:
        self.replies = replies
        self.events = events
        self.commands: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as reader:
            conn.settimeout(TIMEOUT)
            for raw in reader:
                line = raw.decode().rstrip("\r\n")
                self.commands.append(line)
                word = line.split(" ", 1)[0]
                conn.sendall(self.replies.get(word, b"510 Unrecognized command\r\n"))
                if word == "ADD_ONION" and self.events:
                    conn.sendall(self.events)

    def close(self) -> None:
        self.server.close()
        self.thread.join(TIMEOUT)


def on_tor(tor: Tor) -> Callable[[bytes], bytes]:
    """Send one command on a fresh, authenticated control connection; return the raw reply's status line."""
    from p2pchat.link import tor as torlink

    def send(command: bytes) -> bytes:
        control = torlink.open_control(tor.control)
        try:
            reply = control.request(command)
            return f"{reply.status} {reply.text}".encode()
        finally:
            control.close()

    return send
