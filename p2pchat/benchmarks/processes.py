"""Measures of whole ``p2pchat`` processes: start-up, an idle pair, and a long pipe run."""

from __future__ import annotations

import contextlib
import os
import select
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .servers import LOOPBACK, BenchError

WAIT = 60.0  # seconds any one process gets to print the line we wait for (a loaded machine)
LINE = b"m" * 100 + b"\n"  # one pipe-run message
FEED_CHUNK = 10_000  # lines written to the dialer's stdin at a time
PIPE_MESSAGE_DEADLINE = 0.002  # seconds per pipe-run message before the run is called stuck (10x today's)


def p2pchat_command() -> list[str]:
    """The installed ``p2pchat`` script, as a user runs it (``python -m p2pchat`` without one)."""
    script = Path(sys.executable).parent / "p2pchat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "p2pchat"]


def _env(home: Path) -> dict[str, str]:
    """The environment of a measured p2pchat: its own home, and bytecode it may cache.

    A user's p2pchat runs from cached bytecode (pip writes it, or the first run does).
    Where PYTHONDONTWRITEBYTECODE is set, every start would compile each module from
    source instead; the bytecode goes to a cache of this run's own (PYTHONPYCACHEPREFIX),
    filled by a first, unmeasured start.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PCHAT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["P2PCHAT_HOME"] = str(home)
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


pycache: Path | None = None  # the run's own bytecode cache (in its temporary directory), set by run()


def bytecode_note() -> str:
    """How the measured processes got their bytecode, for the report."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "cached for this run (PYTHONDONTWRITEBYTECODE was set: every start would compile p2pchat)"
    return "cached for this run"


def _wait_for(stream: IO[bytes], marker: bytes, proc: subprocess.Popen[bytes], what: str) -> bytes:
    """The first line of *stream* containing *marker*, within WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        line = stream.readline() if ready else b""
        if marker in line:
            return line
        if not line:
            status = proc.poll()
            why = f"it exited with status {status}" if status is not None else f"not within {WAIT:g} s"
            raise BenchError(f"{what} never said {marker.decode()!r}: {why}")


# -- start-up -------------------------------------------------------------------------------------------


def startup(count: int, home: Path) -> dict[str, float]:
    """Median seconds for each command, the commands taking turns so load affects all alike.

    ``listening``: ``p2pchat listen`` in pipe mode until ``listening on`` is printed.
    """
    env = _env(home)
    # Make the identity key and the bytecode cache first, so no run below pays for creating them.
    subprocess.run([*p2pchat_command(), "id"], check=True, capture_output=True, env=env, timeout=WAIT)
    subprocess.run([*p2pchat_command(), "--version"], check=True, capture_output=True, env=env, timeout=WAIT)

    def run(command: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env, timeout=WAIT)
        return time.perf_counter() - start

    def listening() -> float:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*p2pchat_command(), "listen", f"{LOOPBACK}:0"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=0,  # unbuffered: select() then sees every line that has come
        )
        try:
            assert proc.stderr is not None
            _wait_for(proc.stderr, b"listening on", proc, "p2pchat listen")
            return time.perf_counter() - start
        finally:
            proc.kill()
            proc.wait()

    measures = {
        "python_pass": lambda: run([sys.executable, "-c", "pass"]),
        "python_S_pass": lambda: run([sys.executable, "-S", "-c", "pass"]),
        "version": lambda: run([*p2pchat_command(), "--version"]),
        "listening": listening,
    }
    listening()  # unmeasured: fills the bytecode cache for what listen imports
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(count):
        for name, measure in measures.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def keepalive_options(seconds: int) -> tuple[str, ...]:
    """The options that make a chat send keepalives every *seconds*, if this p2pchat has them."""
    usage = subprocess.run([*p2pchat_command(), "listen", "--help"], capture_output=True, text=True, timeout=WAIT)
    return ("--keepalive", str(seconds)) if "--keepalive" in usage.stdout else ()


# -- a real pair in pipe mode ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field_name} for process {pid}")


@contextmanager
def pair(home: Path, extra: tuple[str, ...] = ()) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A real listener and dialer in pipe mode, connected; at the end both read EOF and leave."""
    listener = subprocess.Popen(
        [*p2pchat_command(), "listen", f"{LOOPBACK}:0", "--name", "lis", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(home / "a"),
        bufsize=0,  # stderr unbuffered: select() then sees every line that has come
    )
    procs = [listener]
    try:
        assert listener.stderr is not None
        line = _wait_for(listener.stderr, b"listening on", listener, "p2pchat listen")
        port = int(line.rsplit(b":", 1)[1])
        dialer = subprocess.Popen(
            [*p2pchat_command(), "dial", f"{LOOPBACK}:{port}", "--name", "dia", *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(home / "b"),
        )
        procs.insert(0, dialer)
        _wait_for(listener.stderr, b"joined", listener, "p2pchat listen")
        yield listener, dialer
    finally:
        for proc in procs:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()  # end of input: each waits for its acks, says bye, exits
            proc.stdin = None  # so communicate() below only drains the output
        for proc in procs:
            try:
                proc.communicate(timeout=WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def idle(seconds: float, listener: subprocess.Popen[bytes], dialer: subprocess.Popen[bytes]) -> float:
    """CPU used by a connected, idle pair, as % of one core."""
    # Let start-up work (imports, the first frames) finish first: a settling time, not synchronisation.
    time.sleep(min(1.0, seconds / 2))
    before = cpu_seconds(listener.pid) + cpu_seconds(dialer.pid)
    time.sleep(seconds)
    after = cpu_seconds(listener.pid) + cpu_seconds(dialer.pid)
    return 100 * (after - before) / seconds


def _feed(stream: IO[bytes], lines: int, failed: list[BaseException]) -> None:
    try:
        chunk = LINE * FEED_CHUNK
        for _ in range(lines // FEED_CHUNK):
            stream.write(chunk)
        stream.write(LINE * (lines % FEED_CHUNK))
        stream.flush()
    except OSError as exc:  # the dialer died: the reading side reports it
        failed.append(exc)


def _kill(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.kill()


def pipe_run(messages: int, listener: subprocess.Popen[bytes], dialer: subprocess.Popen[bytes]) -> dict[str, float]:
    """*messages* 100-byte lines through a real pair: CPU per message and RSS, early and late.

    CPU per message is both processes' CPU over the first tenth and over the last tenth
    of the messages; RSS is the receiving process's after the first tenth and at the end.
    """
    assert dialer.stdin is not None and listener.stdout is not None
    # The deadline of the whole run: past it both processes are killed and the reading below ends.
    watchdog = threading.Timer(WAIT + messages * PIPE_MESSAGE_DEADLINE, _kill, args=(listener, dialer))
    watchdog.start()
    tenth = max(1, messages // 10)
    checkpoints = {0: 0.0, tenth: 0.0, messages - tenth: 0.0, messages: 0.0}
    rss: dict[int, float] = {}
    failed: list[BaseException] = []
    feeder = threading.Thread(target=_feed, args=(dialer.stdin, messages, failed), name="bench-feed")
    start = time.perf_counter()
    checkpoints[0] = cpu_seconds(listener.pid) + cpu_seconds(dialer.pid)
    feeder.start()
    seen = 0
    try:
        while seen < messages:
            if not listener.stdout.readline():
                raise BenchError(f"the pipe run ended after {seen} of {messages} messages")
            seen += 1
            if seen in checkpoints:
                checkpoints[seen] = cpu_seconds(listener.pid) + cpu_seconds(dialer.pid)
                rss[seen] = memory_mib(listener.pid, "VmRSS")
    finally:
        watchdog.cancel()
    seconds = time.perf_counter() - start
    feeder.join(WAIT)
    peak = max(memory_mib(pid, "VmHWM") for pid in (listener.pid, dialer.pid))
    first = (checkpoints[tenth] - checkpoints[0]) / tenth
    last = (checkpoints[messages] - checkpoints[messages - tenth]) / tenth
    return {
        "messages": messages,
        "seconds": seconds,
        "cpu_us_per_message_first_tenth": first * 1e6,
        "cpu_us_per_message_last_tenth": last * 1e6,
        "rss_after_tenth": rss[tenth],
        "rss_after_all": rss[messages],
        "peak": peak,
    }
