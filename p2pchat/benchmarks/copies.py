"""What the bulk path's buffer reuse buys, per 64 KiB file record (an extra of the benchmark).

Three pairs, each measured side by side, interleaved (A, B, A, B, ...), in one process:

* sealing a record: ``Session.send_plaintext`` (a new ciphertext, then the frame's bytes joined)
  against ``Session.seal_into`` one reused buffer (what the sender does);
* reading the file: ``os.pread`` (new bytes) against ``os.preadv`` into a reused buffer;
* receiving: ``socket.recv`` (new bytes) against ``recv_into`` a reused buffer.

The figure is the median time per record; the note says what the second saves.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..core.filewire import DATA_HEADER, MAX_DATA
from ..core.framing import MAX_FRAME_LEN
from ..core.messages import Hello
from ..core.session import Session
from ..link import handshake
from .extras import Context, Extra, Row

RECORD = DATA_HEADER.size + MAX_DATA  # a full data record's plaintext
BATCH = 16  # records per socket round: within the socket buffers, so no write waits for a read
FILE_SIZE = 32 * 1024 * 1024


def _session() -> Session:
    """A session whose handshake is done (over a socketpair), ready to seal."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        initiator = Session(initiator=True, static_key=X25519PrivateKey.generate(), hello=Hello("a", "bench"))
        responder = Session(initiator=False, static_key=X25519PrivateKey.generate(), hello=Hello("b", "bench"))
        other = threading.Thread(target=lambda: handshake.handshake(theirs, responder))
        other.start()
        handshake.handshake(ours, initiator)
        other.join(handshake.HANDSHAKE_TIMEOUT)
    return initiator


Pair = tuple[str, Callable[[], None], Callable[[], None]]


def _pairs(directory: Path, count: int) -> tuple[list[Pair], Callable[[], None]]:
    """The three pairs (name, the other way, ours), and what closes their files and sockets."""
    session = _session()
    record = os.urandom(RECORD)
    frame = memoryview(bytearray(2 + MAX_FRAME_LEN))
    path = directory / "source.bin"
    path.write_bytes(os.urandom(FILE_SIZE))
    fd = os.open(path, os.O_RDONLY)
    into = memoryview(bytearray(MAX_DATA))
    sender, receiver = socket.socketpair()
    for sock in (sender, receiver):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    chunk = os.urandom(MAX_DATA)
    received = memoryview(bytearray(MAX_DATA))

    def seal_new() -> None:
        for _ in range(count):
            session.send_plaintext(record)

    def seal_into() -> None:
        for _ in range(count):
            session.seal_into(record, frame)

    def read_new() -> None:
        for n in range(count):
            os.pread(fd, MAX_DATA, n * MAX_DATA % (FILE_SIZE - MAX_DATA))

    def read_into() -> None:
        for n in range(count):
            os.preadv(fd, [into], n * MAX_DATA % (FILE_SIZE - MAX_DATA))

    def receive(into_buffer: bool) -> None:
        for _ in range(count // BATCH):
            for _ in range(BATCH):
                sender.sendall(chunk)
            for _ in range(BATCH):
                got = 0
                while got < MAX_DATA:
                    if into_buffer:
                        got += receiver.recv_into(received[got:], MAX_DATA - got)
                    else:
                        got += len(receiver.recv(MAX_DATA - got))

    def close() -> None:
        os.close(fd)
        sender.close()
        receiver.close()
        path.unlink()

    pairs = [
        ("seal_into vs encrypt + join", seal_new, seal_into),
        ("preadv into vs pread", read_new, read_into),
        ("recv_into vs recv", lambda: receive(False), lambda: receive(True)),
    ]
    return pairs, close


def measure(context: Context) -> dict[str, Any]:
    """Median microseconds per record for each way, measured in alternation."""
    count, rounds = (512, 3) if context.quick else (4096, 7)
    result: dict[str, Any] = {}
    context.directory.mkdir(parents=True, exist_ok=True)
    pairs, close = _pairs(context.directory, count)
    try:
        for name, old, new in pairs:
            times: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(rounds):
                for way, run in (("old", old), ("new", new)):
                    start = time.perf_counter()
                    run()
                    times[way].append((time.perf_counter() - start) / count * 1e6)
            result[name] = {way: statistics.median(samples) for way, samples in times.items()}
    finally:
        close()
    return result


def rows(result: dict[str, Any]) -> list[Row]:
    return [
        (
            f"record: {name}",
            f"{figures['new']:.1f} us",
            "",
            "",
            f"{figures['old']:.1f} us the other way: saves {100 * (1 - figures['new'] / figures['old']):.0f} %",
        )
        for name, figures in result.items()
    ]


EXTRA = Extra("record_copies_us", measure, rows)
