"""How often a listener serves callers whose handshakes fail (sans-IO: the clock is a parameter).

Every failed handshake is, at worst, one online guess at a passphrase or a short code.
A few failures are free (a typo, a peer with an old setting); after that, each further
failure makes callers wait longer, doubling up to a ceiling, and a quiet spell forgets
them. The same rule runs twice: per source (an IPv4 address, an IPv6 /64, which one
machine usually holds whole) and overall, so that many addresses do not buy many guesses.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

PER_SOURCE_FREE = 3  # failures from one source before any wait: a typo or two is not an attack
PER_SOURCE_MAX_DELAY = 300.0  # seconds: at most 12 guesses an hour from one source, once it is sustained
OVERALL_FREE = 20  # failures from all sources together before everyone waits
OVERALL_MAX_DELAY = 60.0  # seconds: the real peer waits at most this long during a distributed attack
FIRST_DELAY = 1.0  # seconds after the first failure past the free ones; doubles with each one after
FORGET_AFTER = 900.0  # seconds without a failure after which a source (or the whole) starts afresh


@dataclass
class Backoff:
    """Failures counted since the last quiet spell, and until when callers must wait."""

    free: int
    max_delay: float
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0

    def delay(self) -> float:
        """The wait imposed by the latest failure: 0 while free, then 1, 2, 4 ... seconds up to the ceiling."""
        extra = self.failures - self.free
        if extra <= 0:
            return 0.0
        return min(self.max_delay, FIRST_DELAY * 2.0 ** min(extra - 1, 32))

    def fail(self, now: float) -> None:
        if now - self.last_failure > FORGET_AFTER:
            self.failures = 0
        self.failures += 1
        self.last_failure = now
        self.blocked_until = now + self.delay()

    def wait(self, now: float) -> float:
        return max(0.0, self.blocked_until - now)


def source_of(host: str) -> str:
    """The throttling unit for a caller's address: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Throttle:
    """Failed handshakes per source and overall; how long a new caller from a source must wait.

    ``wait(source)`` is 0 when a caller may be served now; a listener refuses callers from a
    source (or all callers) while it is not. Report each outcome with ``failed`` or ``succeeded``.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        per_source_free: int = PER_SOURCE_FREE,
        overall_free: int = OVERALL_FREE,
    ) -> None:
        self._clock = clock
        self._per_source_free = per_source_free
        self._sources: dict[str, Backoff] = {}
        self.overall = Backoff(overall_free, OVERALL_MAX_DELAY)

    def wait(self, source: str) -> float:
        """Seconds before a caller from *source* may be served (0: now)."""
        now = self._clock()
        backoff = self._sources.get(source_of(source))
        own = backoff.wait(now) if backoff is not None else 0.0
        return max(own, self.overall.wait(now))

    def failed(self, source: str) -> None:
        now = self._clock()
        key = source_of(source)
        backoff = self._sources.get(key)
        if backoff is None:
            self._forget_quiet(now)
            backoff = self._sources[key] = Backoff(self._per_source_free, PER_SOURCE_MAX_DELAY)
        backoff.fail(now)
        self.overall.fail(now)

    def succeeded(self, source: str) -> None:
        """A caller from *source* completed the handshake: its own failures are forgiven."""
        self._sources.pop(source_of(source), None)

    def _forget_quiet(self, now: float) -> None:
        # Bounded memory: sources quiet for FORGET_AFTER are dropped when a new one arrives.
        for key in [k for k, b in self._sources.items() if now - b.last_failure > FORGET_AFTER]:
            del self._sources[key]
