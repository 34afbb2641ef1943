"""The benchmark's helper servers, each in its own process, and the dialing side's handles on them.

A server listens first, then prints one line (``PORT PUBLIC-KEY-HEX``): the bench dials
only after reading it. Each serves connections one after another until its stdin closes;
a client that hangs up, cleanly or not (a TLS client leaving unread session tickets
makes the kernel send a reset), ends that connection only. Nothing a client does makes
a server print a traceback.

Kinds: ``{p2pchat,tls,tcp}-handshakes`` (handshake, then wait for the hang-up), and
``p2pchat``, ``tls``, ``tcp``: echo short messages, count long ones, and answer
"done" with the count. TLS and TCP carry *records* for that: a kind byte (E echo,
S sink, D done), a 4-byte big-endian length, the payload.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .. import CLIENT
from ..core.messages import Hello
from ..core.noise import public_bytes
from ..core.session import Event, HandshakeComplete, Session
from ..errors import P2PChatError
from ..events import ChatEvent, LinkFailed, PeerLeft, Received
from ..link import connection, handshake
from . import tls

LOOPBACK = "127.0.0.1"
ECHO_LIMIT = 1024  # p2pchat texts shorter than this are echoed, longer ones counted
READY_TIMEOUT = 60.0  # seconds a helper server gets to start listening (a loaded machine, cold imports)
STOP_TIMEOUT = 30.0  # seconds a helper server gets to finish once its stdin closes
RECORD = struct.Struct(">cI")  # TLS/TCP record header: kind, payload length
ECHO, SINK, DONE = b"E", b"S", b"D"


class BenchError(Exception):
    """A benchmark step failed; the message is one line for the person running it."""


def features() -> tuple[str, ...]:
    from ..chat import FEATURES  # what the real program announces

    return FEATURES


def make_session(initiator: bool, key: X25519PrivateKey) -> Session:
    return Session(initiator=initiator, static_key=key, hello=Hello("bench", CLIENT, features()))


def open_link(sock: socket.socket, session: Session) -> connection.Link:
    """The chat layer the real program runs over a connected socket (threads, acks, back-pressure), not started."""
    return connection.Link(sock, session)


# -- the server side (runs in the child process) --------------------------------------------------


def serve(kind: str, certificates: Path, out: IO[str]) -> None:
    """Run one helper server of *kind* until stdin closes."""
    server_ctx = tls.contexts(certificates)[0] if kind.startswith("tls") else None
    key = X25519PrivateKey.generate()
    with socket.create_server((LOOPBACK, 0)) as listener:
        out.write(f"{listener.getsockname()[1]} {public_bytes(key).hex()}\n")
        out.flush()
        threading.Thread(target=_stop_on_eof, args=(listener,), daemon=True).start()
        while True:
            session = make_session(False, key) if kind.startswith("p2pchat") else None  # before accept()
            try:
                conn, _ = listener.accept()
            except OSError:  # stdin closed: the listener was shut down
                return
            with conn, contextlib.suppress(OSError, P2PChatError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _serve_one(kind, conn, session, server_ctx)


def _stop_on_eof(listener: socket.socket) -> None:
    sys.stdin.read()
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes accept()


def _serve_one(kind: str, conn: socket.socket, session: Session | None, server_ctx: ssl.SSLContext | None) -> None:
    stream: socket.socket | ssl.SSLSocket = conn
    if server_ctx is not None:
        stream = server_ctx.wrap_socket(conn, server_side=True)
    if session is not None:
        _, early = handshake.handshake(conn, session, _as_the_listener_checks)
        if kind == "p2pchat":
            _serve_link(conn, session, early)
            return
    if kind.endswith("-handshakes"):
        while stream.recv(1024):  # until the dialer hangs up
            pass
        return
    _serve_records(stream)


def _as_the_listener_checks(done: HandshakeComplete) -> None:
    from ..identity import fingerprint

    fingerprint(done.remote_static)  # the real listener computes it for --peer and known peers


def _serve_link(conn: socket.socket, session: Session, early: list[Event]) -> None:
    link = open_link(conn, session)
    ended = threading.Event()
    received = [0]

    def on_event(event: ChatEvent) -> None:
        if isinstance(event, Received):
            if event.text == "done":
                link.send_text(str(received[0]))
                received[0] = 0
            elif len(event.text) < ECHO_LIMIT:
                link.send_text(event.text)
            else:
                received[0] += len(event.text)
        elif isinstance(event, (PeerLeft, LinkFailed)):
            ended.set()

    link.start(on_event, early)
    ended.wait()  # the client always leaves: bye, or a closed connection
    link.close(say_bye=False)


def _serve_records(stream: socket.socket | ssl.SSLSocket) -> None:
    buffer = bytearray()
    counted = 0
    while chunk := stream.recv(1 << 20):
        buffer += chunk
        position = 0
        replies = bytearray()
        while len(buffer) - position >= RECORD.size:
            kind, length = RECORD.unpack_from(buffer, position)
            end = position + RECORD.size + length
            if end > len(buffer):
                break
            if kind == ECHO:
                replies += buffer[position:end]
            elif kind == DONE:
                replies += RECORD.pack(DONE, 8) + counted.to_bytes(8, "big")
                counted = 0
            else:
                counted += length
            position = end
        del buffer[:position]
        if replies:
            stream.sendall(replies)


# -- the dialing side -------------------------------------------------------------------------------


class ServerProcess:
    """A helper server in a child process: started, waited for, and stopped within deadlines."""

    def __init__(self, kind: str, certificates: Path) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pchat.bench", "--serve", kind, "--certificates", str(certificates)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = 0
        self.public_key = b""

    def wait_ready(self) -> None:
        """Wait for the server's line saying it listens (port and key); BenchError if it does not come."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        try:
            port, key = line.split()
            self.port, self.public_key = int(port), bytes.fromhex(key)
        except ValueError:
            self.stop()
            raise BenchError(f"the {self.kind} helper server did not start: {self._why()}") from None

    def _why(self) -> str:
        if self.proc.returncode is None:
            return f"no answer within {READY_TIMEOUT:g} s"
        assert self.proc.stderr is not None
        lines = self.proc.stderr.read().strip().splitlines()
        return lines[-1] if lines else f"it exited with status {self.proc.returncode}"

    def close_input(self) -> None:
        """Tell the server to finish: it ends when its stdin closes."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def stop(self) -> None:
        """Close its stdin and wait for it to end; kill it if it does not."""
        self.close_input()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode not in (0, -9):
            raise BenchError(f"the {self.kind} helper server failed: {self._why()}")


def recv_exactly(stream: socket.socket | ssl.SSLSocket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = stream.recv(size - len(data))
        if not chunk:
            raise BenchError("a helper server hung up in the middle of a measurement")
        data += chunk
    return bytes(data)


def ask(stream: socket.socket | ssl.SSLSocket, kind: bytes, payload: bytes) -> bytes:
    """Send one record; for ECHO and DONE, return the answer's payload."""
    stream.sendall(RECORD.pack(kind, len(payload)) + payload)
    if kind == SINK:
        return b""
    _, length = RECORD.unpack(recv_exactly(stream, RECORD.size))
    return recv_exactly(stream, length)
