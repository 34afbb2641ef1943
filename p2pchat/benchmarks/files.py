"""The benchmark's file-transfer rows: two real p2pchat processes on loopback, disk to disk.

* throughput: ``--send`` to ``--save-to``, page cache warm, SHA-256 checked by both sides; timed
  from the receiver's "receiving" line to its "saved" line (start-up and handshake excluded);
* the round trip of a text (dialer -> listener -> back) while the transfer runs, against the
  same round trip on an idle pair.

Registered with :mod:`p2pchat.benchmarks` as an extra (:func:`register`); it measures Python's TLS 1.3
bulk throughput and the AES-GCM ceiling itself, in the same run, for its ratios.
"""

from __future__ import annotations

import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

LOOPBACK = "127.0.0.1"
FULL_SIZE = 1024 * 1024 * 1024  # a transfer long enough to sample text round trips during it
QUICK_SIZE = 16 * 1024 * 1024
RTT_SAMPLES = 50  # text round trips per measurement
WAIT = 600.0  # seconds: the longest any step may take


def _command() -> list[str]:
    script = Path(sys.executable).parent / "p2pchat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "p2pchat"]


def _lines(stream: IO[bytes], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.decode("utf-8", "replace").rstrip("\n"))
    into.put("")


def _expect(lines: queue.Queue[str], needle: str) -> str:
    deadline = time.monotonic() + WAIT
    while True:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        if not line:
            raise RuntimeError(f"stream ended before {needle!r}")
        if needle in line:
            return line


class _Proc:
    def __init__(self, args: list[str], home: Path) -> None:
        env = {**os.environ, "P2PCHAT_HOME": str(home)}
        self.popen = subprocess.Popen(
            [*_command(), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        for stream, into in ((self.popen.stdout, self.out), (self.popen.stderr, self.err)):
            threading.Thread(target=_lines, args=(stream, into), daemon=True).start()

    def write(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode())
        self.popen.stdin.flush()

    def end(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@contextmanager
def _pair(home: Path, listen_args: list[str], dial_args: list[str]) -> Iterator[tuple[_Proc, _Proc]]:
    listener = _Proc(["listen", f"{LOOPBACK}:0", "--name", "lis", *listen_args], home / "lis")
    port = int(_expect(listener.err, "listening on").rsplit(":", 1)[1])
    dialer = _Proc(["dial", f"{LOOPBACK}:{port}", "--name", "dia", *dial_args], home / "dia")
    _expect(listener.err, "joined")
    try:
        yield listener, dialer
    finally:
        dialer.end()
        listener.end()


def _round_trips(listener: _Proc, dialer: _Proc, count: int, running: threading.Event | None = None) -> list[float]:
    """Seconds for a text from the dialer to the listener and back, *count* times (while *running*)."""
    samples = []
    for number in range(count):
        if running is not None and not running.is_set():
            break
        start = time.perf_counter()
        dialer.write(f"ping {number}\n")
        _expect(listener.out, f"ping {number}")
        listener.write(f"pong {number}\n")
        _expect(dialer.out, f"pong {number}")
        samples.append(time.perf_counter() - start)
    return samples


def _warm(path: Path) -> None:
    with path.open("rb") as source:
        while source.read(1 << 20):
            pass


def bench_files(home: Path, quick: bool = False) -> dict[str, Any]:
    """Transfer rate (bytes/s), and text round trips idle and during a transfer (seconds)."""
    size = QUICK_SIZE if quick else FULL_SIZE
    (home / "outbox").mkdir(parents=True)
    (home / "inbox").mkdir()
    source = home / "outbox" / "payload.bin"
    with source.open("wb") as out:
        for _ in range(size // (1 << 20)):
            out.write(os.urandom(1 << 20))
    _warm(source)
    samples = RTT_SAMPLES // 5 if quick else RTT_SAMPLES

    with _pair(home / "idle", [], []) as (listener, dialer):
        idle = _round_trips(listener, dialer, samples)

    running = threading.Event()
    with _pair(home / "busy", ["--save-to", str(home / "inbox")], ["--send", str(source)]) as (listener, dialer):
        _expect(listener.err, "receiving payload.bin")
        start = time.perf_counter()
        running.set()
        busy: list[float] = []
        # Texts go while the file flows; the "saved" line marks the end of the transfer.
        pinger = threading.Thread(target=lambda: busy.extend(_round_trips(listener, dialer, samples, running)))
        pinger.start()
        _expect(listener.err, "saved ")
        elapsed = time.perf_counter() - start
        running.clear()
        pinger.join(WAIT)
    received = home / "inbox" / "payload.bin"
    verified = received.stat().st_size == size
    received.unlink()
    source.unlink()
    return {
        "bytes": size,
        "seconds": elapsed,
        "rate": size / elapsed,
        "verified": verified,
        "rtt_idle_p50": statistics.median(idle),
        "rtt_busy_p50": statistics.median(busy) if busy else float("nan"),
        "rtt_busy_max": max(busy) if busy else float("nan"),
        "rtt_busy_samples": len(busy),
    }


def _tls_baseline(directory: Path, total_bytes: int) -> dict[str, float]:
    """Python TLS 1.3 bulk throughput and the AES-GCM ceiling, measured now, with the benchmark's own tools."""
    from .benchmarks import network, servers, tls

    tls.make_certificate(directory)
    server = servers.ServerProcess("tls", directory)
    try:
        server.wait_ready()
        running = network.Servers({"tls": server}, tls.load(directory), directory)
        return network.throughput(running, total_bytes, ("tls13",))
    finally:
        server.stop()


def measure(context: Any) -> dict[str, Any]:
    """The benchmark's extra: the file rows, with TLS 1.3 and AES-GCM measured in the same run."""
    directory: Path = context.directory
    (directory / "tls").mkdir()
    files = bench_files(directory / "files", quick=context.quick)
    baseline = _tls_baseline(directory / "tls", QUICK_SIZE if context.quick else 256 * 1024 * 1024)
    return {**files, "tls13": baseline["tls13"], "aesgcm_ceiling": baseline["aesgcm_ceiling"]}


def goals(files: dict[str, Any]) -> dict[str, bool]:
    return {
        "file transfer >= 2 x TLS 1.3": files["rate"] / files["tls13"] >= 2,
        "file transfer >= 0.3 x AES-GCM ceiling": files["rate"] / files["aesgcm_ceiling"] >= 0.3,
        "text RTT during a transfer <= 10 x idle": files["rtt_busy_p50"] <= 10 * files["rtt_idle_p50"],
    }


def rows(files: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rate, tls13 = files["rate"], files["tls13"]
    return [
        (
            "file, disk to disk",
            f"{rate / 1e6:.0f} MB/s",
            f"{tls13 / 1e6:.0f} MB/s",
            "",
            f"{rate / tls13:.2f} ({rate / files['aesgcm_ceiling']:.2f} of AES-GCM's "
            f"{files['aesgcm_ceiling'] / 1e6:.0f} MB/s); {files['bytes'] >> 20} MiB, SHA-256 checked",
        ),
        (
            "text RTT during a file",
            f"{files['rtt_busy_p50'] * 1000:.2f} ms",
            "",
            "",
            f"{files['rtt_busy_p50'] / files['rtt_idle_p50']:.1f} x idle ({files['rtt_idle_p50'] * 1000:.2f} ms), "
            f"max {files['rtt_busy_max'] * 1000:.1f} ms, {files['rtt_busy_samples']} samples",
        ),
    ]


def register() -> None:
    """Add the file rows to ``python -m p2pchat.bench``."""
    from .benchmarks.extras import EXTRAS, Extra

    if not any(extra.key == "files" for extra in EXTRAS):
        EXTRAS.append(Extra("files", measure, rows, goals))


def main() -> int:
    """``python -m p2pchat.filebench [--quick]``: the file rows alone (no TLS comparison)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        print(json.dumps(bench_files(Path(directory), quick="--quick" in sys.argv), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
