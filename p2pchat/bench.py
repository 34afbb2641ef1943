"""``python -m p2pchat.bench``: p2pchat against TLS 1.3 and raw TCP, on loopback, in one run.

Every figure compares like with like on the same machine in the same run:

* handshake: TCP connect until both sides can send (p2pchat: until both have
  the peer's hello), both ends in this process;
* round trip of a 64-byte message: p2pchat's real sender and receiver threads
  against an echo peer in another process, versus TLS 1.3 and TCP echo peers;
* throughput of maximum-size messages, sender and receiver in separate
  processes, with ``cryptography``'s single-core AES-256-GCM speed as the ceiling;
* start-up of ``p2pchat --version`` and of ``p2pchat listen`` (until
  ``listening on`` is printed) against ``python -c pass``;
* CPU used by a connected, idle pair of real ``p2pchat`` processes;
* peak RSS of a real ``p2pchat`` process across 10,000 messages.

This is a benchmark, not a test: it reports, it never fails on a number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import CLIENT
from .core.messages import MAX_TEXT_BYTES, Hello
from .core.session import Session
from .events import ChatEvent, LinkFailed, PeerLeft, Received
from .link import connection, handshake, sockets

LOOPBACK = "127.0.0.1"
ECHO_SIZE = 64  # bytes in a round-trip message
PAYLOAD = MAX_TEXT_BYTES  # bytes in a maximum-size p2pchat text; the TLS and TCP runs send the same


@dataclass
class Settings:
    handshakes: int = 200
    round_trips: int = 2000
    throughput_bytes: int = 512 * 1024 * 1024
    startups: int = 15
    idle_seconds: float = 10.0
    memory_messages: int = 10_000

    @classmethod
    def quick(cls) -> Settings:
        return cls(20, 200, 16 * 1024 * 1024, 3, 1.0, 1000)


@dataclass
class Results:
    values: dict[str, Any] = field(default_factory=dict)

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value


# -- helpers ---------------------------------------------------------------------------------


def _make_certificate(directory: Path) -> None:
    """A self-signed ECDSA P-256 certificate for localhost, made now, in *directory*."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _tls_contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """TLS 1.3 only, with the certificate in *directory*; the client verifies it."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(cert_path, key_path)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.load_verify_locations(cert_path)
    for context in (server, client):
        context.set_ecdh_curve("X25519")  # the key exchange p2pchat uses too
    return server, client


def _session(initiator: bool, key: X25519PrivateKey) -> Session:
    return Session(initiator=initiator, static_key=key, hello=Hello("bench", CLIENT))


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _recv_exactly(sock: socket.socket | ssl.SSLSocket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return bytes(data)


# -- handshake -----------------------------------------------------------------------------------


def bench_handshakes(settings: Settings, client_ctx: ssl.SSLContext, certificates: Path) -> dict[str, float]:
    """Median seconds from connect() until the dialer knows both sides can send.

    The listener runs in its own process. The dialer's TLS 1.3 handshake ends after
    the server's Finished (the server could send before that); p2pchat's ends when
    the listener's hello arrives (it can only send that once its handshake is done).
    """
    key = X25519PrivateKey.generate()

    # As p2pchat itself does, a session (and its ephemeral key) is made before connecting.
    def p2pchat_client(sock: socket.socket, session: Session | None) -> None:
        assert session is not None
        handshake.handshake(sock, session)

    def tls_client(sock: socket.socket, session: Session | None) -> None:
        client_ctx.wrap_socket(sock, server_hostname="localhost").do_handshake()

    def nothing(sock: socket.socket, session: Session | None) -> None:
        pass

    clients = {"p2pchat": p2pchat_client, "tls13": tls_client, "tcp": nothing}
    results = {}
    for name, client_side in clients.items():
        samples = []
        kind = {"p2pchat": "p2pchat", "tls13": "tls", "tcp": "tcp"}[name] + "-handshakes"
        with _server_process(kind, certificates, settings.handshakes) as port:
            for _ in range(settings.handshakes):
                session = _session(True, key) if name == "p2pchat" else None
                start = time.perf_counter()
                client = socket.create_connection((LOOPBACK, port))
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client_side(client, session)
                samples.append(time.perf_counter() - start)
                client.close()
        results[name] = statistics.median(samples)
    return results


# -- echo servers in their own processes --------------------------------------------------------------


def _serve(kind: str, certificates: Path, count: int, port_out: Callable[[int], None]) -> None:
    """Run one server of *kind* (in a child process): *count* handshakes, or one connection."""
    server_ctx = _tls_contexts(certificates)[0] if kind.startswith("tls") else None
    with socket.create_server((LOOPBACK, 0)) as listener:
        port_out(listener.getsockname()[1])
        if kind.endswith("-handshakes"):
            key = X25519PrivateKey.generate()
            for _ in range(count):
                session = _session(False, key)  # before accept(), as p2pchat's listener does
                conn, _ = listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if kind.startswith("p2pchat"):
                    handshake.handshake(conn, session)
                elif server_ctx is not None:
                    conn = server_ctx.wrap_socket(conn, server_side=True)
                while conn.recv(1024):  # until the dialer hangs up
                    pass
                conn.close()
            return
        conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind.startswith("p2pchat"):
        _serve_p2pchat(conn, kind)
    elif kind.endswith("echo"):
        stream: socket.socket | ssl.SSLSocket = conn
        if server_ctx is not None:
            stream = server_ctx.wrap_socket(conn, server_side=True)
        while data := stream.recv(65536):
            stream.sendall(data)
    elif kind.endswith("sink"):
        stream = conn
        if server_ctx is not None:
            stream = server_ctx.wrap_socket(conn, server_side=True)
        total = int.from_bytes(_recv_exactly(stream, 8), "big")
        received = 0
        while received < total:
            chunk = stream.recv(1 << 20)
            if not chunk:
                return
            received += len(chunk)
        stream.sendall(b"k")


def _serve_p2pchat(conn: socket.socket, kind: str) -> None:
    session = _session(False, X25519PrivateKey.generate())
    _, early = handshake.handshake(conn, session)
    link = connection.Link(conn, session)
    done = threading.Event()
    received = [0]

    def on_event(event: ChatEvent) -> None:
        if isinstance(event, Received):
            if kind == "p2pchat-echo":
                link.send_text(event.text)
            elif event.text == "done":
                link.send_text(str(received[0]))
            else:
                received[0] += len(event.text)
        elif isinstance(event, (PeerLeft, LinkFailed)):
            done.set()

    link.start(on_event, early)
    done.wait()
    link.close(say_bye=False)


@contextmanager
def _server_process(kind: str, certificates: Path, count: int = 1) -> Iterator[int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2pchat.bench",
            "--serve",
            kind,
            "--certificates",
            str(certificates),
            "--count",
            str(count),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _P2PChatClient:
    """A dialing p2pchat link whose received texts land in a queue-like event."""

    def __init__(self, port: int) -> None:
        sock = sockets.dial(sockets.Address(LOOPBACK, port))
        session = _session(True, X25519PrivateKey.generate())
        _, early = handshake.handshake(sock, session)
        self.link = connection.Link(sock, session)
        self.arrived = threading.Event()
        self.last = ""
        self.link.start(self._on_event, early)

    def _on_event(self, event: ChatEvent) -> None:
        if isinstance(event, Received):
            self.last = event.text
            self.arrived.set()

    def request(self, text: str) -> str:
        self.arrived.clear()
        self.link.send_text(text)
        self.arrived.wait()
        return self.last


def bench_round_trips(
    settings: Settings, client_ctx: ssl.SSLContext, certificates: Path
) -> dict[str, dict[str, float]]:
    message = "x" * ECHO_SIZE
    results: dict[str, dict[str, float]] = {}
    with _server_process("p2pchat-echo", certificates) as port:
        client = _P2PChatClient(port)
        samples = []
        for _ in range(settings.round_trips):
            start = time.perf_counter()
            assert client.request(message) == message
            samples.append(time.perf_counter() - start)
        client.link.close()
    results["p2pchat"] = {"p50": statistics.median(samples), "p99": _percentile(samples, 0.99)}
    for name, kind in (("tls13", "tls-echo"), ("tcp", "tcp-echo")):
        with _server_process(kind, certificates) as port:
            sock: socket.socket | ssl.SSLSocket = socket.create_connection((LOOPBACK, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if name == "tls13":
                sock = client_ctx.wrap_socket(sock, server_hostname="localhost")
            payload = message.encode()
            samples = []
            for _ in range(settings.round_trips):
                start = time.perf_counter()
                sock.sendall(payload)
                _recv_exactly(sock, len(payload))
                samples.append(time.perf_counter() - start)
            sock.close()
        results[name] = {"p50": statistics.median(samples), "p99": _percentile(samples, 0.99)}
    return results


def bench_throughput(settings: Settings, client_ctx: ssl.SSLContext, certificates: Path) -> dict[str, float]:
    """Bytes per second of payload, sender and receiver in separate processes."""
    count = max(1, settings.throughput_bytes // PAYLOAD)
    total = count * PAYLOAD
    results = {}
    text = "x" * PAYLOAD
    with _server_process("p2pchat-sink", certificates) as port:
        client = _P2PChatClient(port)
        start = time.perf_counter()
        for _ in range(count):
            client.link.wait_for_room()
            client.link.send_text(text)
        got = client.request("done")
        results["p2pchat"] = total / (time.perf_counter() - start)
        assert int(got) == total, (got, total)
        client.link.close()
    payload = b"x" * PAYLOAD
    for name, kind in (("tls13", "tls-sink"), ("tcp", "tcp-sink")):
        with _server_process(kind, certificates) as port:
            sock: socket.socket | ssl.SSLSocket = socket.create_connection((LOOPBACK, port))
            if name == "tls13":
                sock = client_ctx.wrap_socket(sock, server_hostname="localhost")
            start = time.perf_counter()
            sock.sendall(total.to_bytes(8, "big"))
            for _ in range(count):
                sock.sendall(payload)
            _recv_exactly(sock, 1)
            results[name] = total / (time.perf_counter() - start)
            sock.close()
    aead, nonce, block = AESGCM(os.urandom(32)), bytes(12), bytes(65519)
    rounds = max(50, count // 2)
    start = time.perf_counter()
    for _ in range(rounds):
        aead.encrypt(nonce, block, b"")
    results["aesgcm_ceiling"] = rounds * len(block) / (time.perf_counter() - start)
    return results


# -- whole processes ----------------------------------------------------------------------------------


def _p2pchat_command() -> list[str]:
    script = Path(sys.executable).parent / "p2pchat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "p2pchat"]


def bench_startup(settings: Settings, home: Path) -> dict[str, float]:
    env = {**os.environ, "P2PCHAT_HOME": str(home)}

    def timed(command: list[str]) -> float:
        samples = []
        for _ in range(settings.startups):
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    def listening() -> float:
        samples = []
        for _ in range(settings.startups):
            start = time.perf_counter()
            proc = subprocess.Popen(
                [*_p2pchat_command(), "listen", f"{LOOPBACK}:0"],
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            assert proc.stderr is not None
            for line in proc.stderr:
                if b"listening on" in line:
                    break
            samples.append(time.perf_counter() - start)
            proc.kill()
            proc.wait()
        return statistics.median(samples)

    # Make the identity key first, so no run below pays for creating it.
    subprocess.run([*_p2pchat_command(), "id"], check=True, capture_output=True, env=env)
    return {
        "python_pass": timed([sys.executable, "-c", "pass"]),
        "version": timed([*_p2pchat_command(), "--version"]),
        "listening": listening(),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


@contextmanager
def _pair(home: Path) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A real listener and dialer in pipe mode, connected."""
    env = {**os.environ, "P2PCHAT_HOME": str(home / "a")}
    listener = subprocess.Popen(
        [*_p2pchat_command(), "listen", f"{LOOPBACK}:0", "--name", "lis"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert listener.stderr is not None
    port = 0
    for line in listener.stderr:
        if b"listening on" in line:
            port = int(line.rsplit(b":", 1)[1])
            break
    dialer = subprocess.Popen(
        [*_p2pchat_command(), "dial", f"{LOOPBACK}:{port}", "--name", "dia"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "P2PCHAT_HOME": str(home / "b")},
    )
    for line in listener.stderr:
        if b"joined" in line:
            break
    try:
        yield listener, dialer
    finally:
        for proc in (dialer, listener):
            assert proc.stdin is not None
            proc.stdin.close()  # end of input: each waits for its acks, says bye, exits
            proc.stdin = None  # so communicate() below only drains the output
        for proc in (dialer, listener):
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def bench_idle(settings: Settings, home: Path) -> float:
    """CPU used by a connected, idle pair, as a percentage of one core."""
    with _pair(home / "idle") as (listener, dialer):
        time.sleep(0.5)  # let start-up work finish (this is a benchmark, not a test)
        before = _cpu_seconds(listener.pid) + _cpu_seconds(dialer.pid)
        time.sleep(settings.idle_seconds)
        after = _cpu_seconds(listener.pid) + _cpu_seconds(dialer.pid)
    return 100 * (after - before) / settings.idle_seconds


def _write_all(stream: IO[bytes], data: bytes) -> None:
    stream.write(data)
    stream.flush()


def bench_memory(settings: Settings, home: Path) -> dict[str, float]:
    """RSS of a real receiving p2pchat after a tenth of the messages and after all of them (MiB)."""
    with _pair(home / "memory") as (listener, dialer):
        assert dialer.stdin is not None and listener.stdout is not None
        tenth = settings.memory_messages // 10
        line = ("m" * 100 + "\n").encode()
        rss = []
        seen = 0
        for target in (tenth, settings.memory_messages):
            # Written from a thread: the pipes fill up if one side waits for the other.
            feed = threading.Thread(target=_write_all, args=(dialer.stdin, line * (target - seen)))
            feed.start()
            while seen < target:
                listener.stdout.readline()
                seen += 1
            feed.join()
            rss.append(_memory_kib(listener.pid, "VmRSS") / 1024)
        peak = max(_memory_kib(pid, "VmHWM") for pid in (listener.pid, dialer.pid)) / 1024
    return {"rss_after_tenth": rss[0], "rss_after_all": rss[1], "peak": peak}


# -- the report ------------------------------------------------------------------------------------


def run(settings: Settings) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory)
        _make_certificate(home)
        tls = _tls_contexts(home)
        started = time.perf_counter()
        handshake = bench_handshakes(settings, tls[1], home)
        round_trip = bench_round_trips(settings, tls[1], home)
        throughput = bench_throughput(settings, tls[1], home)
        startup = bench_startup(settings, home / "startup")
        idle = bench_idle(settings, home)
        memory = bench_memory(settings, home)
    goals = {
        "handshake <= 0.6 x TLS 1.3": handshake["p2pchat"] / handshake["tls13"] <= 0.6,
        "round trip p50 <= 1.5 x TLS 1.3 echo": round_trip["p2pchat"]["p50"] / round_trip["tls13"]["p50"] <= 1.5,
        "throughput >= 1.5 x TLS 1.3": throughput["p2pchat"] / throughput["tls13"] >= 1.5,
        "throughput >= 0.5 x AES-GCM ceiling": throughput["p2pchat"] / throughput["aesgcm_ceiling"] >= 0.5,
        "--version <= 2 x python -c pass": startup["version"] / startup["python_pass"] <= 2,
        "idle CPU < 0.5 % of a core": idle < 0.5,
        "RSS <= 45 MiB": memory["peak"] <= 45,
        "RSS not growing": memory["rss_after_all"] - memory["rss_after_tenth"] <= 1.0,
    }
    return {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "openssl": ssl.OPENSSL_VERSION,
        },
        "handshake_s": handshake,
        "round_trip_s": round_trip,
        "throughput_bytes_per_s": throughput,
        "startup_s": startup,
        "idle_cpu_percent": idle,
        "idle_seconds": settings.idle_seconds,
        "memory_mib": memory,
        "goals_met": goals,
        "seconds": time.perf_counter() - started,
    }


def table(report: dict[str, Any]) -> str:
    hs, rt, tp, st = (report[k] for k in ("handshake_s", "round_trip_s", "throughput_bytes_per_s", "startup_s"))
    mem = report["memory_mib"]
    tick = 100 / report["idle_seconds"] / os.sysconf("SC_CLK_TCK")  # the resolution of /proc CPU times

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.3f} ms"

    def mbs(rate: float) -> str:
        return f"{rate / 1e6:.0f} MB/s"

    rows = [
        ("measure", "p2pchat", "TLS 1.3", "TCP", "ratio (p2pchat / TLS 1.3)"),
        ("handshake (median)", ms(hs["p2pchat"]), ms(hs["tls13"]), ms(hs["tcp"]), f"{hs['p2pchat'] / hs['tls13']:.2f}"),
        (
            "round trip p50",
            ms(rt["p2pchat"]["p50"]),
            ms(rt["tls13"]["p50"]),
            ms(rt["tcp"]["p50"]),
            f"{rt['p2pchat']['p50'] / rt['tls13']['p50']:.2f}",
        ),
        (
            "round trip p99",
            ms(rt["p2pchat"]["p99"]),
            ms(rt["tls13"]["p99"]),
            ms(rt["tcp"]["p99"]),
            f"{rt['p2pchat']['p99'] / rt['tls13']['p99']:.2f}",
        ),
        (
            "throughput",
            mbs(tp["p2pchat"]),
            mbs(tp["tls13"]),
            mbs(tp["tcp"]),
            f"{tp['p2pchat'] / tp['tls13']:.2f} ({tp['p2pchat'] / tp['aesgcm_ceiling']:.2f} of AES-GCM's "
            f"{mbs(tp['aesgcm_ceiling'])})",
        ),
        (
            "start-up: --version",
            ms(st["version"]),
            "",
            "",
            f"{st['version'] / st['python_pass']:.2f} x python -c pass ({ms(st['python_pass'])})",
        ),
        ("start-up: listening", ms(st["listening"]), "", "", ""),
        (
            "idle CPU, pair",
            f"{report['idle_cpu_percent']:.2f} % of a core",
            "",
            "",
            f"over {report['idle_seconds']:g} s; one clock tick is {tick:.2f} %",
        ),
        (
            "RSS",
            f"peak {mem['peak']:.1f} MiB",
            "",
            "",
            f"{mem['rss_after_tenth']:.1f} -> {mem['rss_after_all']:.1f} MiB over the messages",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    goals = [f"- {'met' if ok else 'MISSED'}: {goal}" for goal, ok in report["goals_met"].items()]
    machine = report["machine"]
    header = (
        f"{machine['platform']}, Python {machine['python']}, {machine['cpus']} CPUs, {machine['openssl']}; "
        f"the run took {report['seconds']:.0f} s"
    )
    return "\n".join([header, "", *lines, "", *goals])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pchat.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (numbers are rough)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: run one server process
    parser.add_argument("--certificates", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.certificates, args.count, lambda port: print(port, flush=True))
        return 0
    report = run(Settings.quick() if args.quick else Settings())
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
