"""The benchmark runs and prints valid JSON; its TLS set-up works on every Python. No timing is asserted."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from p2pchat.benchmarks import servers, tls


def test_benchmark_quick_run_prints_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "p2pchat.bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no traceback, no warning from a helper server
    report = json.loads(result.stdout)
    for section in (
        "handshake_s",
        "round_trip_s",
        "throughput_bytes_per_s",
        "startup_s",
        "idle_cpu_percent",
        "memory_mib",
        "goals_met",
        "ratios",
        "pipe_run",
        "round_trip_during_bulk_s",
    ):
        assert section in report
    assert set(report["handshake_s"]) == {"p2pchat", "tls13", "tcp"}
    assert set(report["startup_s"]) == {"python_pass", "python_S_pass", "version", "listening"}
    assert report["machine"]["tls_group"] in tls.GROUP_NAMES.values()
    assert all(isinstance(ok, bool) for ok in report["goals_met"].values())
    assert len(report["ratios"]["round_trip_p50"]["per_round"]) == report["rounds"]
    files = report["files"]  # the file-transfer extra: its rows, and its goals among the others
    assert set(files["bytes_per_s"]) == {"files", "tls13", "aesgcm_ceiling"}
    assert set(files["ratios"]) == {"files_to_tls13", "files_to_aesgcm", "rtt_busy_to_idle"}
    assert files["sha256_checked"] and files["rtt_s"]["busy"]["samples"] >= 1
    assert len(files["per_round"]) == files["rounds"]
    assert "file transfer >= 2 x TLS 1.3" in report["goals_met"]
    copies = report["record_copies_us"]  # what reusing buffers buys, per record, both ways measured
    assert set(copies) == {"seal_into vs encrypt + join", "preadv into vs pread", "recv_into vs recv"}
    assert all(figures["new"] > 0 and figures["old"] > 0 for figures in copies.values())


def test_a_tls_library_that_cannot_set_x25519_keeps_its_own_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unknown_group(self: ssl.SSLContext, name: str) -> None:
        raise ssl.SSLError(129, "[EC: UNKNOWN_GROUP] unknown group")  # what Python 3.10 raises

    tls.make_certificate(tmp_path)
    monkeypatch.setattr(ssl.SSLContext, "set_ecdh_curve", unknown_group)
    measured = tls.load(tmp_path)
    assert not measured.group_requested
    assert measured.group in tls.GROUP_NAMES.values()  # read back from a real ServerHello


def test_the_group_is_read_from_the_server_hello() -> None:
    extensions = bytes.fromhex("002b00020304") + bytes.fromhex("00330024001d0020") + bytes(32)
    body = bytes.fromhex("0303") + bytes(32) + b"\x00" + bytes.fromhex("130100") + len(extensions).to_bytes(2, "big")
    body += extensions
    hello = b"\x02" + len(body).to_bytes(3, "big") + body
    record = bytes.fromhex("160303") + len(hello).to_bytes(2, "big") + hello
    assert tls.server_hello_group(record) == 0x001D
    assert tls.server_hello_group(record[:50]) is None  # cut short
    assert tls.server_hello_group(b"\x17" + record[1:]) is None  # not a handshake record


@pytest.mark.parametrize("kind", ["tls-handshakes", "p2pchat-handshakes"])
def test_a_helper_server_outlives_a_rude_client_and_ends_when_told(kind: str, tmp_path: Path) -> None:
    tls.make_certificate(tmp_path)
    server = servers.ServerProcess(kind, tmp_path)
    server.wait_ready()  # the port is known only once it listens: dialing never races its start
    try:
        for _ in range(2):  # hang up with a reset in the middle of its work, twice
            rude = socket.create_connection((servers.LOOPBACK, server.port), timeout=30)
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            rude.sendall(b"\x16\x03\x01\x00\x05hello" if kind.startswith("tls") else b"\x00\x20" + bytes(16))
            rude.close()
        with socket.create_connection((servers.LOOPBACK, server.port), timeout=30):
            pass  # still accepting
    finally:
        server.stop()  # raises if it failed or had to be killed
    assert server.proc.returncode == 0
    assert server.proc.stderr is not None and server.proc.stderr.read() == ""
