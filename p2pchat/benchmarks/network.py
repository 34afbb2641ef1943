"""Measures over loopback, one round at a time: handshake, round trip, throughput, round trip under load.

In every round p2pchat, TLS 1.3 and TCP take turns (the order rotates from round to
round), and the AES-GCM ceiling is measured in the same round, so a machine that
slows down or speeds up mid-run moves all of them together. The dialing side runs
here; each server is its own process (see :mod:`p2pchat.benchmarks.servers`).
"""

from __future__ import annotations

import os
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..core.messages import MAX_PADDED, MAX_TEXT_BYTES
from ..core.session import HandshakeComplete, Session
from ..events import ChatEvent, LinkFailed, Received
from ..link import handshake, sockets
from .servers import DONE, ECHO, LOOPBACK, RECORD, SINK, BenchError, ServerProcess, ask, make_session, open_link
from .tls import Tls

ECHO_SIZE = 64  # bytes in a round-trip message
PAYLOAD = MAX_TEXT_BYTES  # bytes in a maximum-size p2pchat text; TLS and TCP send records of the same size
REPLY_TIMEOUT = 60.0  # seconds to wait for any one answer from a helper server (a loaded machine)
PROTOCOLS = ("p2pchat", "tls13", "tcp")


@dataclass
class Servers:
    """The helper servers of one run, by kind."""

    processes: dict[str, ServerProcess]
    tls: Tls
    home: Path  # a p2pchat home whose known peers hold the handshake server's key

    def port(self, kind: str) -> int:
        return self.processes[kind].port


def rotated(round_index: int) -> tuple[str, ...]:
    """The protocols in this round's order: each goes first, middle and last in turn."""
    shift = round_index % len(PROTOCOLS)
    return PROTOCOLS[shift:] + PROTOCOLS[:shift]


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=REPLY_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- handshake ------------------------------------------------------------------------------------------


def handshakes(servers: Servers, count: int, order: tuple[str, ...]) -> dict[str, float]:
    """Median seconds from connect() until the dialer knows both sides can send.

    TLS 1.3 ends at the server's Finished (the client verifies the certificate); p2pchat
    when the listener's hello arrives, after the same known-peers check the real dialer
    makes (the key remembered for the address must match). As the real program does,
    the session and its ephemeral key are made before connecting.
    """
    from .. import identity

    key = X25519PrivateKey.generate()
    known = identity.KnownPeers(servers.home)  # loaded before dialing, as the real program does
    port = servers.port("p2pchat-handshakes")
    dialed = f"{LOOPBACK}:{port}"

    def verify(done: HandshakeComplete) -> None:  # chat.py's check for a dialer without --peer
        seen = identity.fingerprint(done.remote_static)
        remembered = known.key_for_address(dialed)
        if remembered is None or remembered.key != done.remote_static:
            raise BenchError(f"the handshake server's key {seen} is not the one remembered")

    def p2pchat(sock: socket.socket, session: Session | None) -> None:
        assert session is not None
        handshake.handshake(sock, session, verify)

    def tls13(sock: socket.socket, session: Session | None) -> None:
        servers.tls.client.wrap_socket(sock, server_hostname="localhost").do_handshake()

    def tcp(sock: socket.socket, session: Session | None) -> None:
        pass

    sides: dict[str, Callable[[socket.socket, Session | None], None]] = {"p2pchat": p2pchat, "tls13": tls13, "tcp": tcp}
    kinds = {"p2pchat": "p2pchat-handshakes", "tls13": "tls-handshakes", "tcp": "tcp-handshakes"}
    results = {}
    for name in order:
        samples = []
        for _ in range(count):
            session = make_session(True, key) if name == "p2pchat" else None
            start = time.perf_counter()
            sock = _connect(servers.port(kinds[name]))
            sides[name](sock, session)
            samples.append(time.perf_counter() - start)
            sock.close()
        results[name] = statistics.median(samples)
    return results


# -- p2pchat as a client ------------------------------------------------------------------------------


class P2PChatClient:
    """A dialing p2pchat link (the real threads) whose received texts wake the caller."""

    def __init__(self, port: int) -> None:
        sock = sockets.dial(sockets.Address(LOOPBACK, port))
        session = make_session(True, X25519PrivateKey.generate())
        _, early = handshake.handshake(sock, session)
        self.arrived = threading.Event()
        self.last = ""
        self.failed: LinkFailed | None = None
        self.link = open_link(sock, session)
        self.link.start(self._on_event, early)

    def _on_event(self, event: ChatEvent) -> None:
        if isinstance(event, Received):
            self.last = event.text
            self.arrived.set()
        elif isinstance(event, LinkFailed):
            self.failed = event
            self.arrived.set()

    def request(self, text: str) -> str:
        """Send *text*; return the next text that comes back."""
        self.arrived.clear()
        self.link.send_text(text)
        if not self.arrived.wait(REPLY_TIMEOUT) or self.failed is not None:
            reason = self.failed.error if self.failed is not None else f"no answer within {REPLY_TIMEOUT:g} s"
            raise BenchError(f"the p2pchat echo server: {reason}")
        return self.last

    def close(self) -> None:
        self.link.close()


def _stream(servers: Servers, name: str) -> socket.socket | ssl.SSLSocket:
    sock = _connect(servers.port("tls" if name == "tls13" else "tcp"))
    if name == "tls13":
        return servers.tls.client.wrap_socket(sock, server_hostname="localhost")
    return sock


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": statistics.median(ordered), "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


# -- round trip -------------------------------------------------------------------------------------------


def round_trips(servers: Servers, count: int, order: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """p50 and p99 seconds for a 64-byte message to go to an echo peer and back."""
    message = "x" * ECHO_SIZE
    results = {}
    for name in order:
        samples = []
        if name == "p2pchat":
            client = P2PChatClient(servers.port("p2pchat"))
            try:
                client.request(message)  # warm up: the first message pays for lazy set-up
                for _ in range(count):
                    start = time.perf_counter()
                    answer = client.request(message)
                    samples.append(time.perf_counter() - start)
                    if answer != message:
                        raise BenchError("the p2pchat echo server answered something else")
            finally:
                client.close()
        else:
            payload = message.encode()
            with _stream(servers, name) as stream:
                ask(stream, ECHO, payload)
                for _ in range(count):
                    start = time.perf_counter()
                    answer_bytes = ask(stream, ECHO, payload)
                    samples.append(time.perf_counter() - start)
                    if answer_bytes != payload:
                        raise BenchError(f"the {name} echo server answered something else")
        results[name] = percentiles(samples)
    return results


# -- throughput ---------------------------------------------------------------------------------------------


def throughput(servers: Servers, total_bytes: int, order: tuple[str, ...]) -> dict[str, float]:
    """Payload bytes per second from this process to a server process, and the AES-GCM ceiling.

    p2pchat sends maximum-size texts, each acknowledged; TLS and TCP send records of the
    same size. Each ends when the server confirms it counted every byte.
    """
    count = max(1, total_bytes // PAYLOAD)
    total = count * PAYLOAD
    results: dict[str, float] = {}
    for name in order:
        if name == "p2pchat":
            client = P2PChatClient(servers.port("p2pchat"))
            text = "x" * PAYLOAD
            try:
                start = time.perf_counter()
                for _ in range(count):
                    client.link.wait_for_room()
                    client.link.send_text(text)
                got = int(client.request("done"))
                results[name] = total / (time.perf_counter() - start)
            finally:
                client.close()
        else:
            record = RECORD.pack(SINK, PAYLOAD) + b"x" * PAYLOAD
            with _stream(servers, name) as stream:
                start = time.perf_counter()
                for _ in range(count):
                    stream.sendall(record)
                got = int.from_bytes(ask(stream, DONE, b""), "big")
                results[name] = total / (time.perf_counter() - start)
        if got != total:
            raise BenchError(f"the {name} sink counted {got} bytes of {total}")
    results["aesgcm_ceiling"] = aesgcm_ceiling(max(20, count // 4))
    return results


def aesgcm_ceiling(blocks: int) -> float:
    """Bytes per second one core seals with ``cryptography``'s AES-256-GCM, full-size messages."""
    aead, nonce, block = AESGCM(os.urandom(32)), bytes(12), bytes(MAX_PADDED)
    start = time.perf_counter()
    for _ in range(blocks):
        aead.encrypt(nonce, block, b"")
    return blocks * len(block) / (time.perf_counter() - start)


# -- round trip under load ------------------------------------------------------------------------------------


def round_trips_during_bulk(servers: Servers, count: int) -> dict[str, float]:
    """p2pchat's round trip for a 64-byte text while the same link sends maximum-size texts nonstop.

    This is what a person feels typing while a large paste (or, later, a file) is on its way.
    """
    client = P2PChatClient(servers.port("p2pchat"))
    stop = threading.Event()
    text = "y" * PAYLOAD

    def bulk() -> None:
        while not stop.is_set() and not client.link.ended:
            client.link.wait_for_room()
            client.link.send_text(text)

    sender = threading.Thread(target=bulk, name="bench-bulk")
    message = "x" * ECHO_SIZE
    samples = []
    try:
        sender.start()
        client.request(message)
        for _ in range(count):
            start = time.perf_counter()
            if client.request(message) != message:
                raise BenchError("the p2pchat echo server answered something else")
            samples.append(time.perf_counter() - start)
    finally:
        stop.set()
        sender.join(REPLY_TIMEOUT)
        client.close()
    return percentiles(samples)
