"""Sockets: addresses, listening and dialing, with one clear line for every failure."""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass

from ..errors import NetworkError, UsageError

CONNECT_TIMEOUT = 10.0  # seconds to wait for TCP connect before saying the host is unreachable


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


def dial(address: Address, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A TCP connection to *address*; NetworkError with one clear line on failure."""
    assert address.host is not None
    try:
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot reach {address}: unknown host {address.host}") from exc
    except ConnectionRefusedError as exc:
        raise NetworkError(f"cannot reach {address}: connection refused (is p2pchat listening there?)") from exc
    except TimeoutError as exc:
        raise NetworkError(f"cannot reach {address}: no answer within {timeout:g} s") from exc
    except OSError as exc:
        raise NetworkError(f"cannot reach {address}: {exc.strerror or exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except (OSError, ValueError):  # gone already, or not an IP socket
        return "unknown address"
    host = host.removeprefix("::ffff:")  # an IPv4 caller on a dual-stack listener
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
