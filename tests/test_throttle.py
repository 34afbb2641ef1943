"""The throttle's policy with a fake clock: free failures, doubling waits, a ceiling, forgetting, overall."""

from __future__ import annotations

from p2pchat.core.throttle import (
    FORGET_AFTER,
    OVERALL_MAX_DELAY,
    PER_SOURCE_FREE,
    PER_SOURCE_MAX_DELAY,
    Throttle,
    source_of,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_few_failures_are_free_then_waits_double_up_to_a_ceiling() -> None:
    clock = Clock()
    throttle = Throttle(clock)
    for _ in range(PER_SOURCE_FREE):
        throttle.failed("10.0.0.1")
        assert throttle.wait("10.0.0.1") == 0
    waits = []
    for _ in range(12):
        throttle.failed("10.0.0.1")
        waits.append(throttle.wait("10.0.0.1"))
        clock.now += waits[-1]  # the next guess comes as soon as it may
    assert waits[:5] == [1, 2, 4, 8, 16]
    assert max(waits) == PER_SOURCE_MAX_DELAY
    assert throttle.wait("10.0.0.2") == 0  # another source is not blocked


def test_success_forgives_and_quiet_forgets() -> None:
    clock = Clock()
    throttle = Throttle(clock)
    for _ in range(PER_SOURCE_FREE + 2):
        throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 2
    clock.now += 1
    assert throttle.wait("10.0.0.1") == 1  # the wait runs down with time
    throttle.succeeded("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 0
    for _ in range(PER_SOURCE_FREE + 1):
        throttle.failed("10.0.0.3")
    clock.now += FORGET_AFTER + 1
    throttle.failed("10.0.0.3")  # after a quiet spell this is the first failure again: free
    assert throttle.wait("10.0.0.3") == 0


def test_many_sources_are_throttled_together() -> None:
    clock = Clock()
    throttle = Throttle(clock, overall_free=5)
    for n in range(5):
        throttle.failed(f"10.0.1.{n}")  # one failure each: no source is over its own limit
    assert throttle.wait("10.9.9.9") == 0
    throttle.failed("10.0.1.99")
    assert throttle.wait("10.9.9.9") == 1  # now everyone waits, even a newcomer
    for n in range(40):
        clock.now += throttle.wait("x")
        throttle.failed(f"10.0.2.{n}")
    assert throttle.wait("10.9.9.9") == OVERALL_MAX_DELAY


def test_sources_are_addresses_and_ipv6_64s() -> None:
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("[2001:db8:1:2:bbbb::9]") == "2001:db8:1:2::/64"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"
    throttle = Throttle(Clock())
    for n in range(PER_SOURCE_FREE + 1):
        throttle.failed(f"2001:db8:1:2::{n + 1}")  # a new address each time, the same /64
    assert throttle.wait("2001:db8:1:2::ffff") == 1
