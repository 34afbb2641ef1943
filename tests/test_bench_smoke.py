"""The benchmark runs and prints valid JSON. It asserts no timing: benchmarks are not tests."""

from __future__ import annotations

import json
import subprocess
import sys


def test_benchmark_quick_run_prints_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "p2pchat.bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout)
    for section in ("handshake_s", "round_trip_s", "throughput_bytes_per_s", "startup_s", "memory_mib"):
        assert section in report
    assert set(report["handshake_s"]) == {"p2pchat", "tls13", "tcp"}
    assert all(isinstance(ok, bool) for ok in report["goals_met"].values())
