"""SOCKS5 servers for tests: a real microsocks, and a recording one that shows what a client asked for.

The recording server answers each CONNECT with a scripted reply code; on success it joins
the client to a local port of the test's choosing (an onion name then reaches a local listener).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

TIMEOUT = 30.0
READY_TIMEOUT = 10.0  # seconds for microsocks to start listening (it prints nothing when it does)


@dataclass(frozen=True)
class Request:
    address_type: int  # 1 IPv4, 3 a name, 4 IPv6 (RFC 1928)
    host: str
    port: int


class RecordingSocks:
    """A minimal SOCKS5 server (no authentication) that records every CONNECT request."""

    def __init__(self, target: Callable[[Request], int | None], reply: int = 0) -> None:
        self.target = target  # the local port to join a request to (None: refuse with 0x05)
        self.reply = reply  # the reply code to send instead of connecting, unless 0
        self.requests: list[Request] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"socks5://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self._closing:
                conn.close()
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        with conn:
            greeting = _exactly(conn, 2)
            _exactly(conn, greeting[1])  # the methods offered
            conn.sendall(b"\x05\x00")  # no authentication
            _, _, _, address_type = _exactly(conn, 4)
            if address_type == 3:
                host = _exactly(conn, _exactly(conn, 1)[0]).decode("ascii", "replace")
            else:
                packed = _exactly(conn, 4 if address_type == 1 else 16)
                host = socket.inet_ntop(socket.AF_INET if address_type == 1 else socket.AF_INET6, packed)
            port = int.from_bytes(_exactly(conn, 2), "big")
            request = Request(address_type, host, port)
            self.requests.append(request)
            target = self.target(request) if self.reply == 0 else None
            if target is None:
                conn.sendall(bytes([5, self.reply or 5, 0, 1, 0, 0, 0, 0, 0, 0]))
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", target), timeout=TIMEOUT)
            except OSError:
                conn.sendall(bytes([5, 5, 0, 1, 0, 0, 0, 0, 0, 0]))
                return
            with upstream:
                conn.sendall(bytes([5, 0, 0, 1, 127, 0, 0, 1, 0, 0]))
                conn.settimeout(None)
                upstream.settimeout(None)
                back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
                back.start()
                _pipe(conn, upstream)
                back.join(TIMEOUT)

    def close(self) -> None:
        # Closing a socket does not wake a thread blocked in accept(): a last connection does.
        self._closing = True
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT).close()
        self._accepting.join(TIMEOUT)
        self.server.close()
        for thread in self._threads:
            thread.join(TIMEOUT)


def _exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client left")
        data += chunk
    return data


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy until *source* ends, then pass the end on (half-close), so each side sees the other leave."""
    with contextlib.suppress(OSError):
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class Microsocks:
    def __init__(self, *options: str) -> None:
        path = shutil.which("microsocks")
        if path is None:
            pytest.skip("microsocks is not installed (Debian: apt-get install microsocks)")
        with socket.socket() as probe:  # a free port: microsocks cannot pick one itself
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"socks5://127.0.0.1:{self.port}"
        self.popen = subprocess.Popen(
            [path, "-i", "127.0.0.1", "-p", str(self.port), *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        # microsocks says nothing once it listens: probe the port until it accepts (bounded).
        deadline = time.monotonic() + READY_TIMEOUT
        delay = 0.005
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise AssertionError(f"microsocks did not listen on {self.port}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
        self.popen.wait(TIMEOUT)
