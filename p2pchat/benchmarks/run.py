"""One benchmark run: settings, the interleaved rounds, the goals, and the JSON report."""

from __future__ import annotations

import os
import platform
import ssl
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import network, processes, servers, tls
from .extras import EXTRAS, Context


@dataclass
class Settings:
    rounds: int = 5  # interleaved rounds of the network measures
    handshakes: int = 40  # per protocol per round
    round_trips: int = 500  # per protocol per round
    throughput_bytes: int = 64 * 1024 * 1024  # per protocol per round
    bulk_round_trips: int = 40  # per round, p2pchat only (each waits behind the bulk queue)
    startups: int = 10  # per command
    idle_seconds: float = 10.0
    pipe_messages: int = 1_000_000
    keepalive_seconds: int = 2  # the idle pair's keepalive interval, where p2pchat has the option
    quick: bool = False

    @classmethod
    def smoke(cls) -> Settings:
        return cls(2, 5, 40, 2 * 1024 * 1024, 5, 2, 0.5, 5_000, quick=True)


def spread(values: list[float]) -> dict[str, Any]:
    """The median of per-round values, with the lowest and highest."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "per_round": values}


def _median_of(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for result in rounds:
        for step in path:
            result = result[step]
        values.append(float(result))  # type: ignore[arg-type]
    return statistics.median(values)


def run(settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="p2pchat-bench-") as directory:
        home = Path(directory)
        processes.pycache = home / "pycache"
        tls.make_certificate(home)
        context = tls.load(home)
        kinds = ("p2pchat-handshakes", "tls-handshakes", "tcp-handshakes", "p2pchat", "tls", "tcp")
        started_servers: dict[str, servers.ServerProcess] = {}
        try:
            for kind in kinds:  # all start at once; each is waited for before it is dialed
                started_servers[kind] = servers.ServerProcess(kind, home)
            for process in started_servers.values():
                process.wait_ready()
            report = _network(settings, _servers(started_servers, context, home / "known"))
        finally:
            for process in started_servers.values():
                process.close_input()  # all end at once
            for process in started_servers.values():
                process.stop()
        report["startup_s"] = processes.startup(settings.startups, home / "startup")
        keepalive = processes.keepalive_options(settings.keepalive_seconds)
        with processes.pair(home / "pair", keepalive) as pair:  # idle first, then the pipe run
            report["idle_cpu_percent"] = processes.idle(settings.idle_seconds, *pair)
            pipe = processes.pipe_run(settings.pipe_messages, *pair)
        report["idle_seconds"] = settings.idle_seconds
        report["idle_keepalive"] = " ".join(keepalive) or "none (this version has no keepalive option)"
        report["pipe_run"] = pipe
        report["memory_mib"] = {key: pipe[key] for key in ("rss_after_tenth", "rss_after_all", "peak")}
        for extra in EXTRAS:
            scratch = home / "extras" / extra.key
            scratch.mkdir(parents=True)
            report[extra.key] = extra.measure(Context(settings.quick, scratch))
    report["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "openssl": ssl.OPENSSL_VERSION,
        "tls_group": context.group,
        "tls_group_source": "requested (X25519)" if context.group_requested else "the TLS library's default",
        "bytecode": processes.bytecode_note(),
    }
    report["goals_met"] = goals(report)
    report["seconds"] = time.perf_counter() - started
    return report


def _servers(started: dict[str, servers.ServerProcess], context: tls.Tls, known_home: Path) -> network.Servers:
    from .. import identity

    known = identity.KnownPeers(known_home)
    port = started["p2pchat-handshakes"].port
    known.remember(started["p2pchat-handshakes"].public_key, "bench", f"{servers.LOOPBACK}:{port}")
    known.save()
    return network.Servers(started, context, known_home)


def _network(settings: Settings, running: network.Servers) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    for index in range(settings.rounds):
        order = network.rotated(index)
        rounds.append(
            {
                "handshake": network.handshakes(running, settings.handshakes, order),
                "round_trip": network.round_trips(running, settings.round_trips, order),
                "throughput": network.throughput(running, settings.throughput_bytes, order),
                "bulk": network.round_trips_during_bulk(running, settings.bulk_round_trips),
            }
        )
    names = network.PROTOCOLS
    ratios = {
        "handshake": spread([r["handshake"]["p2pchat"] / r["handshake"]["tls13"] for r in rounds]),
        "round_trip_p50": spread([r["round_trip"]["p2pchat"]["p50"] / r["round_trip"]["tls13"]["p50"] for r in rounds]),
        "round_trip_p99": spread([r["round_trip"]["p2pchat"]["p99"] / r["round_trip"]["tls13"]["p99"] for r in rounds]),
        "throughput": spread([r["throughput"]["p2pchat"] / r["throughput"]["tls13"] for r in rounds]),
        "throughput_of_aesgcm": spread(
            [r["throughput"]["p2pchat"] / r["throughput"]["aesgcm_ceiling"] for r in rounds]
        ),
        "round_trip_during_bulk_p50": spread([r["bulk"]["p50"] / r["round_trip"]["tls13"]["p50"] for r in rounds]),
    }
    return {
        "rounds": settings.rounds,
        "handshake_s": {name: _median_of(rounds, "handshake", name) for name in names},
        "round_trip_s": {
            name: {p: _median_of(rounds, "round_trip", name, p) for p in ("p50", "p99")} for name in names
        },
        "throughput_bytes_per_s": {name: _median_of(rounds, "throughput", name) for name in (*names, "aesgcm_ceiling")},
        "round_trip_during_bulk_s": {p: _median_of(rounds, "bulk", p) for p in ("p50", "p99")},
        "ratios": ratios,
    }


def goals(report: dict[str, Any]) -> dict[str, bool]:
    """The goals of issue #14, each from the median of per-round ratios where there are rounds."""
    ratio = {name: value["median"] for name, value in report["ratios"].items()}
    startup, pipe = report["startup_s"], report["pipe_run"]
    met = {
        "round trip p50 <= 3 x TLS 1.3 echo": ratio["round_trip_p50"] <= 3,
        "round trip p99 <= 5 x TLS 1.3 echo": ratio["round_trip_p99"] <= 5,
        "throughput >= 2 x TLS 1.3": ratio["throughput"] >= 2,
        "throughput >= 0.3 x AES-GCM ceiling": ratio["throughput_of_aesgcm"] >= 0.3,
        "handshake <= 0.6 x TLS 1.3": ratio["handshake"] <= 0.6,
        "listen (pipe) to 'listening on' <= 3 x python -c pass": startup["listening"] / startup["python_pass"] <= 3,
        "--version <= 2 x python -c pass": startup["version"] / startup["python_pass"] <= 2,
        "idle CPU < 0.5 % of a core": report["idle_cpu_percent"] < 0.5,
        "RSS <= 45 MiB": report["memory_mib"]["peak"] <= 45,
        "RSS flat over the pipe run (grows <= 1 MiB)": pipe["rss_after_all"] - pipe["rss_after_tenth"] <= 1.0,
        "CPU per message flat (last tenth <= 1.2 x first)": pipe["cpu_us_per_message_last_tenth"]
        <= 1.2 * pipe["cpu_us_per_message_first_tenth"],
    }
    for extra in EXTRAS:
        met.update(extra.goals(report[extra.key]))
    return met
