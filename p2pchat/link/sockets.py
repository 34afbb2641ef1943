"""Sockets: addresses, listening and dialing, with one clear line for every failure."""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import NetworkError, UsageError

CONNECT_TIMEOUT = 10.0  # seconds to wait for TCP connect before saying the host is unreachable
ATTEMPT_DELAY = 0.25  # RFC 8305's "Connection Attempt Delay": the next address starts after this long


@dataclass(frozen=True)
class Address:
    host: str | None  # None: every interface (listen only)
    port: int

    def __str__(self) -> str:
        host = self.host or "*"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_address(text: str, *, listening: bool) -> Address:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; UsageError otherwise."""
    host: str | None
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise UsageError(f"bad address {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        host, port_text = inside, rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise UsageError(f"bad address {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    elif listening:
        host, port_text = None, text
    else:
        raise UsageError(f"bad address {text!r}: expected HOST:PORT")
    if not port_text.isdigit() or not (0 if listening else 1) <= int(port_text) <= 65535:
        raise UsageError(f"bad port {port_text!r}: expected a number from {0 if listening else 1} to 65535")
    if host == "" and not listening:
        raise UsageError(f"bad address {text!r}: expected HOST:PORT")
    return Address(host or None, int(port_text))


def listen(address: Address) -> socket.socket:
    """A listening socket; with no host, every interface, IPv6 and IPv4 where the machine has them."""
    try:
        if address.host is None:
            return _listen_any(address.port)
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, sockaddr = infos[0]
        return _bound(socket.socket(family, kind, proto), sockaddr)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot listen on {address}: unknown host {address.host}") from exc
    except OSError as exc:
        raise _listen_error(address, exc) from exc


def _listen_any(port: int) -> socket.socket:
    if socket.has_dualstack_ipv6():
        with contextlib.suppress(OSError):  # IPv6 configured off at run time: fall back to IPv4
            return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("0.0.0.0", port))


def _bound(sock: socket.socket, sockaddr: tuple[object, ...]) -> socket.socket:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a chat
        sock.bind(sockaddr)
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


def _listen_error(address: Address, exc: OSError) -> NetworkError:
    if exc.errno == errno.EADDRINUSE:
        return NetworkError(f"cannot listen on {address}: port {address.port} is already in use")
    if exc.errno == errno.EACCES:
        return NetworkError(f"cannot listen on {address}: permission denied (ports below 1024 need privileges)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return NetworkError(f"cannot listen on {address}: that address is not on this machine")
    return NetworkError(f"cannot listen on {address}: {exc.strerror or exc}")


def listening_address(sock: socket.socket) -> str:
    """The address a listener really got (the real port when 0 was asked for)."""
    host, port = sock.getsockname()[:2]
    if host in ("::", "0.0.0.0"):
        return f"*:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Resolver = Callable[[str, int], list[tuple[int, tuple[Any, ...]]]]  # host, port -> [(family, sockaddr)]


def resolve(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    """Every TCP address *host* resolves to, in the system's order of preference (RFC 6724)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos if family in (socket.AF_INET, socket.AF_INET6)]


def dial(address: Address, timeout: float = CONNECT_TIMEOUT, resolver: Resolver = resolve) -> socket.socket:
    """A TCP connection to *address*, trying every address its host resolves to (happy eyeballs)."""
    return dial_first([address], timeout, resolver)


def dial_first(
    addresses: Sequence[Address], timeout: float = CONNECT_TIMEOUT, resolver: Resolver = resolve
) -> socket.socket:
    """A TCP connection to the first of *addresses* that answers; NetworkError with one clear line.

    RFC 8305 ("happy eyeballs"), simplified: every host is resolved, its addresses ordered IPv6
    first and then alternating families; the first attempt starts at once, the next one
    ATTEMPT_DELAY later or as soon as an attempt fails, and the first connection made wins: the
    others are closed. The whole race has one deadline, *timeout*.
    """
    if not addresses:
        raise UsageError("no address to dial")
    where = ", ".join(str(address) for address in addresses)
    deadline = time.monotonic() + timeout
    candidates, unknown = _candidates(addresses, resolver)
    if not candidates:
        raise NetworkError(f"cannot reach {where}: unknown host {', '.join(unknown)}")
    race = _Race(candidates, deadline)
    try:
        sock = race.run()
    except OSError as exc:  # creating a socket failed: out of descriptors, say
        raise NetworkError(f"cannot reach {where}: {exc.strerror or exc}") from exc
    if sock is None:
        reason, cause = race.failure(timeout)
        raise NetworkError(f"cannot reach {where}: {reason}") from cause
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _candidates(
    addresses: Sequence[Address], resolver: Resolver
) -> tuple[list[tuple[int, tuple[Any, ...]]], list[str]]:
    """Every socket address to try, in order, without repeats; and the hosts that did not resolve."""
    found: list[tuple[int, tuple[Any, ...]]] = []
    unknown: list[str] = []
    for address in addresses:
        assert address.host is not None
        try:
            resolved = resolver(address.host, address.port)
        except (socket.gaierror, UnicodeError):  # UnicodeError: a name IDNA cannot encode
            unknown.append(address.host)
            continue
        for candidate in _interleave(resolved):
            if candidate not in found:
                found.append(candidate)
    return found, unknown


def _interleave(resolved: list[tuple[int, tuple[Any, ...]]]) -> list[tuple[int, tuple[Any, ...]]]:
    """IPv6 first, then the families in turn (RFC 8305 section 4, "First Address Family Count" 1)."""
    six = [item for item in resolved if item[0] == socket.AF_INET6]
    four = [item for item in resolved if item[0] != socket.AF_INET6]
    out: list[tuple[int, tuple[Any, ...]]] = []
    for index in range(max(len(six), len(four))):
        out += six[index : index + 1] + four[index : index + 1]
    return out


class _Race:
    """Connection attempts, started one by one, watched by one selector in this thread."""

    def __init__(self, candidates: list[tuple[int, tuple[Any, ...]]], deadline: float) -> None:
        self.waiting = list(candidates)
        self.deadline = deadline
        self.errors: list[OSError] = []
        self.timed_out = False
        self.selector = selectors.DefaultSelector()

    def run(self) -> socket.socket | None:
        try:
            return self._run()
        finally:
            for key in list(self.selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]  # the losers, and any still trying
            self.selector.close()

    def _run(self) -> socket.socket | None:
        next_start = time.monotonic()
        while self.waiting or self.selector.get_map():
            now = time.monotonic()
            if now >= self.deadline:
                self.timed_out = True
                return None
            if self.waiting and (now >= next_start or not self.selector.get_map()):
                self._start(*self.waiting.pop(0))
                next_start = now + ATTEMPT_DELAY
                continue
            wake = self.deadline if not self.waiting else min(self.deadline, next_start)
            for key, _ in self.selector.select(max(0.0, wake - now)):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                self.selector.unregister(sock)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error == 0:
                    sock.setblocking(True)
                    return sock
                sock.close()
                self.errors.append(OSError(error, os.strerror(error)))
                next_start = time.monotonic()  # a failed attempt starts the next one at once
        return None

    def _start(self, family: int, sockaddr: tuple[Any, ...]) -> None:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        error = sock.connect_ex(sockaddr)
        if error in (0, errno.EINPROGRESS):
            self.selector.register(sock, selectors.EVENT_WRITE)
        else:  # no route, say: known at once
            sock.close()
            self.errors.append(OSError(error, os.strerror(error)))

    def failure(self, timeout: float) -> tuple[str, OSError | None]:
        """Why nothing connected, in words (the most telling error), and that error for -v."""
        for error in self.errors:
            if error.errno == errno.ECONNREFUSED:
                return "connection refused (is p2pchat listening there?)", error
        last = self.errors[-1] if self.errors else None
        if self.timed_out or last is None:
            return f"no answer within {timeout:g} s", last
        return last.strerror or str(last), last


def peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except (OSError, ValueError):  # gone already, or not an IP socket
        return "unknown address"
    host = host.removeprefix("::ffff:")  # an IPv4 caller on a dual-stack listener
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
