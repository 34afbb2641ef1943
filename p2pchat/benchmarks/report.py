"""The benchmark's report as a Markdown table, for people."""

from __future__ import annotations

import os
from typing import Any

from .extras import EXTRAS, Row


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def mbs(rate: float) -> str:
    return f"{rate / 1e6:.0f} MB/s"


def _ratio(spread: dict[str, Any]) -> str:
    return f"{spread['median']:.2f} ({spread['min']:.2f}-{spread['max']:.2f})"


def table(report: dict[str, Any]) -> str:
    hs, rt, tp, st = (report[k] for k in ("handshake_s", "round_trip_s", "throughput_bytes_per_s", "startup_s"))
    ratios, pipe, bulk = report["ratios"], report["pipe_run"], report["round_trip_during_bulk_s"]
    tick = 100 / report["idle_seconds"] / os.sysconf("SC_CLK_TCK")  # the resolution of /proc CPU times
    rows: list[Row] = [
        ("measure", "p2pchat", "TLS 1.3", "TCP", "p2pchat / TLS 1.3: median of rounds (spread)"),
        ("handshake (median)", ms(hs["p2pchat"]), ms(hs["tls13"]), ms(hs["tcp"]), _ratio(ratios["handshake"])),
        ("round trip p50", ms(rt["p2pchat"]["p50"]), ms(rt["tls13"]["p50"]), ms(rt["tcp"]["p50"]), ""),
        ("", "", "", "", _ratio(ratios["round_trip_p50"])),
        ("round trip p99", ms(rt["p2pchat"]["p99"]), ms(rt["tls13"]["p99"]), ms(rt["tcp"]["p99"]), ""),
        ("", "", "", "", _ratio(ratios["round_trip_p99"])),
        (
            "round trip p50 / p99 during bulk",
            f"{ms(bulk['p50'])} / {ms(bulk['p99'])}",
            "",
            "",
            f"p50 {_ratio(ratios['round_trip_during_bulk_p50'])} x TLS echo",
        ),
        ("throughput", mbs(tp["p2pchat"]), mbs(tp["tls13"]), mbs(tp["tcp"]), _ratio(ratios["throughput"])),
        (
            "throughput / AES-GCM",
            mbs(tp["aesgcm_ceiling"]),
            "",
            "",
            f"{_ratio(ratios['throughput_of_aesgcm'])} of the one-way ceiling",
        ),
        (
            "start-up: --version",
            ms(st["version"]),
            "",
            "",
            f"{st['version'] / st['python_pass']:.2f} x python -c pass ({ms(st['python_pass'])}; -S: "
            f"{ms(st['python_S_pass'])})",
        ),
        (
            "start-up: listen (pipe)",
            ms(st["listening"]),
            "",
            "",
            f"{st['listening'] / st['python_pass']:.2f} x python -c pass, "
            f"{st['listening'] / st['python_S_pass']:.2f} x python -S -c pass",
        ),
        (
            "idle CPU, pair",
            f"{report['idle_cpu_percent']:.2f} % of a core",
            "",
            "",
            f"over {report['idle_seconds']:g} s, keepalive: {report['idle_keepalive']}; one tick is {tick:.2f} %",
        ),
        (
            f"pipe run, {pipe['messages']:,} messages",
            f"{pipe['cpu_us_per_message_first_tenth']:.1f} -> {pipe['cpu_us_per_message_last_tenth']:.1f} µs",
            "",
            "",
            f"CPU per message (both processes), first -> last tenth; {pipe['seconds']:.1f} s",
        ),
        (
            "RSS",
            f"peak {pipe['peak']:.1f} MiB",
            "",
            "",
            f"{pipe['rss_after_tenth']:.1f} -> {pipe['rss_after_all']:.1f} MiB over the pipe run",
        ),
    ]
    for extra in EXTRAS:
        rows += extra.rows(report[extra.key])
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    goals = [f"- {'met' if ok else 'MISSED'}: {goal}" for goal, ok in report["goals_met"].items()]
    machine = report["machine"]
    header = (
        f"{machine['platform']}, Python {machine['python']}, {machine['cpus']} CPUs, {machine['openssl']} "
        f"(TLS group {machine['tls_group']}, {machine['tls_group_source']}); {report['rounds']} interleaved "
        f"rounds; the run took {report['seconds']:.0f} s"
    )
    return "\n".join([header, "", *lines, "", *goals])
