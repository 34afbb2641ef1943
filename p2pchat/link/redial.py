"""Calling again: exponential backoff with jitter, for a dialer that lost its link or was refused."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..errors import NetworkError

log = logging.getLogger("p2pchat")

BACKOFF_START = 0.5  # seconds before the first attempt again: a blip is over by then
BACKOFF_CAP = 15.0  # never wait longer than this between attempts: the peer may be back any moment
JITTER = 0.2  # +-20 %: two dialers that lost the same network do not call in lockstep

T = TypeVar("T")


def delays(uniform: Callable[[float, float], float] = random.uniform) -> Iterator[float]:
    """0.5 s, 1 s, 2 s, ... up to 15 s, each with +-20 % jitter."""
    delay = BACKOFF_START
    while True:
        yield delay * uniform(1 - JITTER, 1 + JITTER)
        delay = min(delay * 2, BACKOFF_CAP)


def retry(
    attempt: Callable[[], T],
    for_seconds: float,
    on_wait: Callable[[int, float, NetworkError], None],
    stop: threading.Event | None = None,
) -> T:
    """Call *attempt* until it succeeds, retrying network failures with backoff for *for_seconds*.

    *on_wait(attempt_number, delay, error)* hears about each wait. The last error is raised
    when time is up (or *stop* is set); other errors are raised at once.
    """
    deadline = time.monotonic() + for_seconds
    stop = stop or threading.Event()
    for number, delay in enumerate(delays(), 1):
        try:
            return attempt()
        except NetworkError as exc:
            # Refused, unreachable, cut during the handshake: worth another try. A security failure
            # (a wrong key, a differing passphrase) is not, and ends the wait at once.
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.is_set():
                raise
            delay = min(delay, remaining)
            log.debug("attempt %d failed: %s; again in %.1f s", number, exc, delay)
            on_wait(number, delay, exc)
            if stop.wait(delay):
                raise
    raise AssertionError("unreachable")  # delays() never ends
