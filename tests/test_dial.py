"""Happy eyeballs: dialing tries every address a name resolves to, and the first to connect wins.

A black hole is made on loopback without any firewall: a listener whose accept queue is full
drops further SYNs, so a connect to it neither succeeds nor fails until its deadline.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from p2pchat.errors import NetworkError
from p2pchat.link import sockets
from p2pchat.link.sockets import Address

Resolved = list[tuple[int, tuple[Any, ...]]]


@contextlib.contextmanager
def black_hole() -> Iterator[tuple[str, int]]:
    """A loopback address:port where connects hang: the listener's accept queue is full."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        address = hole.getsockname()
        fillers = []
        try:
            for _ in range(8):  # the queue takes backlog + 1; then SYNs are dropped
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                if filler.connect_ex(address) not in (0, 115):  # 115: EINPROGRESS
                    break
            probe = socket.socket()
            probe.settimeout(0.3)
            try:
                probe.connect(address)
                pytest.skip("this system does not drop SYNs to a full accept queue")
            except TimeoutError:
                pass
            finally:
                probe.close()
            yield address
        finally:
            for filler in fillers:
                filler.close()


@contextlib.contextmanager
def server(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen()
        yield listener


def refused_port() -> int:
    with socket.socket() as probe:  # free a moment ago, nobody listening now
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fake_resolver(table: dict[str, Resolved]) -> sockets.Resolver:
    def resolve(host: str, port: int) -> Resolved:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def test_a_black_holed_first_address_does_not_hold_up_a_working_second() -> None:
    with black_hole() as hole, server() as good:
        where = good.getsockname()
        # "peer.example" resolves to the black hole (tried first) and to the working listener.
        resolver = fake_resolver({"peer.example": [(socket.AF_INET, hole), (socket.AF_INET, where)]})
        started = time.monotonic()
        sock = sockets.dial(Address("peer.example", where[1]), timeout=20.0, resolver=resolver)
        took = time.monotonic() - started
        with sock:
            accepted, _ = good.accept()
            accepted.close()
            assert sock.getpeername() == where
        assert took < 10.0  # nowhere near the 20 s deadline: the second attempt started after 250 ms


def test_ipv6_is_tried_first_then_families_alternate() -> None:
    six = [(socket.AF_INET6, (f"2001:db8::{n}", 1, 0, 0)) for n in (1, 2)]
    four = [(socket.AF_INET, (f"192.0.2.{n}", 1)) for n in (1, 2, 3)]
    order = sockets._interleave(four + six)
    assert [item[1][0] for item in order] == ["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "192.0.2.3"]


def test_a_refused_address_starts_the_next_at_once() -> None:
    with server() as good:
        where = good.getsockname()
        refused = ("127.0.0.1", refused_port())
        resolver = fake_resolver({"a.example": [(socket.AF_INET, refused)], "b.example": [(socket.AF_INET, where)]})
        with sockets.dial_first([Address("a.example", 1), Address("b.example", 1)], 5.0, resolver) as sock:
            assert sock.getpeername() == where


def test_several_addresses_the_first_to_answer_wins_and_an_unknown_name_is_skipped() -> None:
    def resolver(host: str, port: int) -> Resolved:
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return sockets.resolve(host, port)  # literals only: no lookup leaves the machine

    with black_hole() as hole, server() as good:
        where = good.getsockname()
        addresses = [Address("nowhere.invalid", 1), Address(*hole), Address(*where)]
        with sockets.dial_first(addresses, 20.0, resolver) as sock:
            assert sock.getpeername() == where


def test_nothing_answers_one_line_with_the_deadline() -> None:
    with black_hole() as hole:
        resolver = fake_resolver({"hole.example": [(socket.AF_INET, hole)]})
        with pytest.raises(NetworkError, match=r"^cannot reach hole\.example:\d+: no answer within 0\.5 s$"):
            sockets.dial(Address("hole.example", hole[1]), timeout=0.5, resolver=resolver)


def test_refused_everywhere_says_refused_and_keeps_the_cause() -> None:
    port = refused_port()
    resolver = fake_resolver({"x.example": [(socket.AF_INET, ("127.0.0.1", port))]})
    with pytest.raises(NetworkError, match="connection refused") as caught:
        sockets.dial_first([Address("x.example", port), Address("127.0.0.1", port)], 5.0, resolver)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_unknown_host() -> None:
    with pytest.raises(NetworkError, match=r"^cannot reach nowhere\.invalid:9: unknown host nowhere\.invalid$"):
        sockets.dial(Address("nowhere.invalid", 9), resolver=fake_resolver({}))
