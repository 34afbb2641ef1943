"""The benchmark's file-transfer rows: two real p2pchat processes on loopback, disk to disk.

Each round takes three steps, their order rotating from round to round, so a machine that
slows down mid-run moves all of them together:

* a file: ``dial --send`` to ``listen --save-to``, the source in the page cache; timed from the
  receiver's "receiving" line to its "saved ..., SHA-256 verified" line (start-up and handshake
  excluded); the bench then checks the received file's size and SHA-256 itself. A text goes from
  the dialer to the listener and back every PING_EVERY seconds while the file flows, and on an
  idle pair before it (paced like someone typing, so the texts barely slow the file);
* Python's TLS 1.3 bulk throughput (:func:`p2pchat.benchmarks.network.throughput`, a helper
  server in another process, as the built-in throughput row);
* the AES-256-GCM one-way ceiling (:func:`p2pchat.benchmarks.network.aesgcm_ceiling`).

The figures are the medians of the rounds, and each ratio is the ratio of those medians.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..core.messages import MAX_PADDED
from . import network, processes, tls
from .extras import Context, Extra, Row
from .report import mbs, ms
from .servers import LOOPBACK, BenchError, ServerProcess

FULL_SIZE = 1024 * 1024 * 1024  # a transfer long enough to sample many text round trips during it
QUICK_SIZE = 32 * 1024 * 1024
FULL_ROUNDS, QUICK_ROUNDS = 3, 1
FULL_TLS_BYTES, QUICK_TLS_BYTES = 256 * 1024 * 1024, 16 * 1024 * 1024  # TLS 1.3 bulk, per round
FULL_RTT, QUICK_RTT = 50, 10  # text round trips on the idle pair, per round (and at most as many busy)
PING_EVERY = 0.02  # seconds from one text round trip to the next: someone typing fast, not a flood
STEP_WAIT = 60.0  # seconds for any one line a process should print (a loaded machine, cold imports)
SLOWEST_RATE = 5e6  # bytes/s: a transfer slower than this is called stuck (its deadline)
STOP_WAIT = 30.0  # seconds a process gets to leave once its input has ended
NAME = "payload.bin"
STEPS = ("files", "tls13", "aesgcm_ceiling")


# -- one p2pchat process ----------------------------------------------------------------------------


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PCHAT_")}
    env["P2PCHAT_HOME"] = str(home)
    if processes.pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(processes.pycache)
    return env


def _lines(stream: IO[bytes], into: queue.Queue[str | None], seen: list[str] | None = None) -> None:
    with contextlib.suppress(OSError, ValueError):  # the stream closed under us: the end either way
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if seen is not None:
                seen.append(line)
            into.put(line)
    into.put(None)


class _Proc:
    """A real ``p2pchat`` in pipe mode: its stdout and stderr read by threads, line by line."""

    def __init__(self, role: str, args: list[str], home: Path) -> None:
        self.role = role
        self.popen = subprocess.Popen(
            [*processes.p2pchat_command(), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(home),
        )
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self.said: list[str] = []  # every stderr line, for an error message
        for stream, into, seen in ((self.popen.stdout, self.out, None), (self.popen.stderr, self.err, self.said)):
            threading.Thread(target=_lines, args=(stream, into, seen), daemon=True).start()

    def expect(self, lines: queue.Queue[str | None], wanted: str, seconds: float, whole: bool = False) -> str:
        """The next line containing *wanted* (equal to it, if *whole*) within *seconds*; BenchError if none."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"{self.role} did not say {wanted!r} within {seconds:g} s") from None
            if line is None:
                raise BenchError(f"{self.role} ended before saying {wanted!r}: {self.why()}")
            if line == wanted if whole else wanted in line:
                return line

    def why(self) -> str:
        status = self.popen.poll()
        last = next((line for line in reversed(self.said) if line.strip()), "")
        return f"{last or 'no message'} (status {status})" if status is not None else last or "still running"

    def write(self, text: str) -> None:
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(text.encode())
            self.popen.stdin.flush()
        except OSError as exc:
            raise BenchError(f"{self.role} stopped reading its input: {self.why()}") from exc

    def close_input(self) -> None:
        assert self.popen.stdin is not None
        with contextlib.suppress(OSError):
            self.popen.stdin.close()

    def finish(self) -> None:
        """Wait for it to leave (its input has ended); BenchError if it must be killed or fails."""
        try:
            status = self.popen.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"{self.role} did not leave within {STOP_WAIT:g} s of its input ending") from None
        if status != 0:
            raise BenchError(f"{self.role} failed: {self.why()}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()

    def peak_rss_mib(self) -> float:
        return processes.memory_mib(self.popen.pid, "VmHWM")


@contextmanager
def _pair(home: Path, listen_args: list[str], dial_args: list[str]) -> Iterator[tuple[_Proc, _Proc]]:
    """A connected listener and dialer; both leave when the block ends (killed if it fails)."""
    started: list[_Proc] = []
    try:
        listener = _Proc("p2pchat listen", ["listen", f"{LOOPBACK}:0", "--name", "lis", *listen_args], home / "lis")
        started.append(listener)
        port = int(listener.expect(listener.err, "listening on", STEP_WAIT).rsplit(":", 1)[1])
        dialer = _Proc("p2pchat dial", ["dial", f"{LOOPBACK}:{port}", "--name", "dia", *dial_args], home / "dia")
        started.append(dialer)
        listener.expect(listener.err, "dia joined", STEP_WAIT)
        yield listener, dialer
        for proc in started:
            proc.close_input()
        for proc in started:
            proc.finish()
    finally:
        for proc in started:
            proc.kill()  # does nothing to a process that has left


# -- text round trips ----------------------------------------------------------------------------------


def _round_trip(listener: _Proc, dialer: _Proc, number: int) -> float:
    """Seconds for a text from the dialer to the listener, and the listener's answer back."""
    start = time.perf_counter()
    dialer.write(f"ping {number}\n")
    listener.expect(listener.out, f"dia: ping {number}", STEP_WAIT, whole=True)
    listener.write(f"pong {number}\n")
    dialer.expect(dialer.out, f"lis: pong {number}", STEP_WAIT, whole=True)
    return time.perf_counter() - start


def _paced(previous: float) -> float:
    """Seconds to wait before the next round trip, the last one having started at *previous*."""
    return max(0.0, previous + PING_EVERY - time.perf_counter())


class _Pinger(threading.Thread):
    """Round trips every PING_EVERY seconds until stopped (the first always goes), up to *limit*."""

    def __init__(self, listener: _Proc, dialer: _Proc, limit: int) -> None:
        super().__init__(name="bench-files-pinger", daemon=True)
        self._pair = listener, dialer
        self._limit = limit
        self._halt = threading.Event()
        self.samples: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for number in range(self._limit):
                started = time.perf_counter()
                self.samples.append(_round_trip(*self._pair, number))
                if self._halt.wait(_paced(started)):
                    return
        except BaseException as exc:  # reported by stop(), in the measuring thread
            self.error = exc

    def stop(self) -> list[float]:
        """The round trips, once the one under way is over; BenchError (or its error) if it fails."""
        self.end()
        if self.is_alive():
            raise BenchError("a text round trip during the transfer did not end")
        if self.error is not None:
            raise self.error
        return self.samples

    def end(self) -> None:
        """Stop and wait for it (a round trip under way has deadlines of its own; killed processes end it)."""
        self._halt.set()
        if self.ident is not None:
            self.join(2 * STEP_WAIT)


# -- the file step ---------------------------------------------------------------------------------------


def _make_source(directory: Path, size: int) -> tuple[Path, str]:
    """A file of *size* random bytes, written now (so it is in the page cache), and its SHA-256."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / NAME
    digest = hashlib.sha256()
    with source.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return source, digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(samples), "max": max(samples)}


def _file_step(home: Path, source: Path, digest: str, round_trips: int) -> dict[str, Any]:
    """Idle round trips on one pair, then the file, with round trips, on another."""
    size = source.stat().st_size
    with _pair(home / "idle", [], []) as (listener, dialer):
        _round_trip(listener, dialer, -1)  # unmeasured: the first text pays for lazy set-up
        idle = []
        for number in range(round_trips):
            started = time.perf_counter()
            idle.append(_round_trip(listener, dialer, number))
            time.sleep(_paced(started))
    inbox = home / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    pinger: _Pinger | None = None
    try:
        with _pair(home / "busy", ["--save-to", str(inbox)], ["--send", str(source)]) as (listener, dialer):
            listener.expect(listener.err, f"receiving {NAME}", STEP_WAIT)
            start = time.perf_counter()
            pinger = _Pinger(listener, dialer, 100 * round_trips)
            pinger.start()
            outcome = listener.expect(listener.err, NAME, STEP_WAIT + size / SLOWEST_RATE)
            seconds = time.perf_counter() - start
            busy = pinger.stop()
            if not (outcome.startswith("p2pchat: saved ") and outcome.endswith("SHA-256 verified")):
                raise BenchError(f"the receiver: {outcome}")
            sent = dialer.expect(dialer.err, NAME, STEP_WAIT)
            if not sent.endswith("SHA-256 verified"):
                raise BenchError(f"the sender: {sent}")
            rss = {"sender": dialer.peak_rss_mib(), "receiver": listener.peak_rss_mib()}
    finally:
        if pinger is not None:
            pinger.end()  # on a failure the pair is killed by now, which ends a round trip under way
    received = inbox / NAME
    try:
        got = received.stat().st_size
        if got != size or _sha256(received) != digest:
            raise BenchError(f"the received file differs from the one sent ({got} of {size} bytes)")
    finally:
        with contextlib.suppress(OSError):
            received.unlink()
    return {
        "bytes_per_s": size / seconds,
        "seconds": seconds,
        "rtt_idle_s": _percentiles(idle),
        "rtt_busy_s": {**_percentiles(busy), "samples": len(busy)},
        "peak_rss_mib": rss,
    }


# -- the extra --------------------------------------------------------------------------------------------


def measure(context: Context) -> dict[str, Any]:
    """Interleaved rounds of a file, TLS 1.3 bulk and the AES-GCM ceiling; medians and their ratios."""
    quick = context.quick
    size = QUICK_SIZE if quick else FULL_SIZE
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    tls_bytes = QUICK_TLS_BYTES if quick else FULL_TLS_BYTES
    round_trips = QUICK_RTT if quick else FULL_RTT
    directory = context.directory
    source, digest = _make_source(directory / "outbox", size)
    tls.make_certificate(directory)
    server = ServerProcess("tls", directory)
    per_round: list[dict[str, Any]] = []
    try:
        server.wait_ready()
        running = network.Servers({"tls": server}, tls.load(directory), directory)
        for index in range(rounds):
            shift = index % len(STEPS)
            result: dict[str, Any] = {"order": list(STEPS[shift:] + STEPS[:shift])}
            for step in result["order"]:
                if step == "files":
                    result["files"] = _file_step(directory / f"round{index}", source, digest, round_trips)
                elif step == "tls13":
                    result["tls13"] = network.throughput(running, tls_bytes, ("tls13",))["tls13"]
                else:
                    result["aesgcm_ceiling"] = network.aesgcm_ceiling(max(20, size // MAX_PADDED))
            per_round.append(result)
    except BaseException:
        server.proc.kill()
        server.proc.wait()
        raise
    server.stop()
    source.unlink()
    return _summary(per_round, size)


def _summary(per_round: list[dict[str, Any]], size: int) -> dict[str, Any]:
    def median(*path: str) -> float:
        values = []
        for result in per_round:
            for step in path:
                result = result[step]
            values.append(float(result))  # type: ignore[arg-type]
        return statistics.median(values)

    files, tls13, aesgcm = median("files", "bytes_per_s"), median("tls13"), median("aesgcm_ceiling")
    idle, busy = median("files", "rtt_idle_s", "p50"), median("files", "rtt_busy_s", "p50")
    return {
        "bytes": size,
        "rounds": len(per_round),
        "bytes_per_s": {"files": files, "tls13": tls13, "aesgcm_ceiling": aesgcm},
        "rtt_s": {
            "idle": {"p50": idle, "max": max(r["files"]["rtt_idle_s"]["max"] for r in per_round)},
            "busy": {
                "p50": busy,
                "max": max(r["files"]["rtt_busy_s"]["max"] for r in per_round),
                "samples": sum(r["files"]["rtt_busy_s"]["samples"] for r in per_round),
            },
        },
        "ratios": {"files_to_tls13": files / tls13, "files_to_aesgcm": files / aesgcm, "rtt_busy_to_idle": busy / idle},
        "peak_rss_mib": {
            side: max(r["files"]["peak_rss_mib"][side] for r in per_round) for side in ("sender", "receiver")
        },
        "sha256_checked": True,  # by the receiver, and again here (a mismatch is an error)
        "per_round": per_round,
    }


def goals(result: dict[str, Any]) -> dict[str, bool]:
    ratios = result["ratios"]
    return {
        "file transfer >= 2 x TLS 1.3": ratios["files_to_tls13"] >= 2,
        "file transfer >= 0.3 x AES-GCM ceiling": ratios["files_to_aesgcm"] >= 0.3,
        "text RTT p50 during a file transfer <= 10 x idle": ratios["rtt_busy_to_idle"] <= 10,
    }


def rows(result: dict[str, Any]) -> list[Row]:
    rate, ratios, rtt, rss = result["bytes_per_s"], result["ratios"], result["rtt_s"], result["peak_rss_mib"]
    per_round = ", ".join(f"{r['files']['bytes_per_s'] / r['tls13']:.2f}" for r in result["per_round"])
    idle, busy = rtt["idle"], rtt["busy"]
    return [
        (
            "file, disk to disk",
            mbs(rate["files"]),
            mbs(rate["tls13"]),
            "",
            f"{ratios['files_to_tls13']:.2f} (rounds: {per_round}); {result['bytes'] >> 20} MiB x "
            f"{result['rounds']}, SHA-256 checked",
        ),
        (
            "file vs the AES-GCM ceiling",
            mbs(rate["files"]),
            "",
            "",
            f"{ratios['files_to_aesgcm']:.2f} of the one-way AES-256-GCM ceiling ({mbs(rate['aesgcm_ceiling'])})",
        ),
        (
            "text RTT p50 / max during a file",
            f"{ms(busy['p50'])} / {ms(busy['max'])}",
            "",
            "",
            f"{ratios['rtt_busy_to_idle']:.1f} x idle ({ms(idle['p50'])} / {ms(idle['max'])}), "
            f"{busy['samples']} samples",
        ),
        (
            "RSS during a file",
            f"peak {max(rss.values()):.1f} MiB",
            "",
            "",
            f"sender {rss['sender']:.1f} MiB, receiver {rss['receiver']:.1f} MiB",
        ),
    ]


EXTRA = Extra("files", measure, rows, goals)
