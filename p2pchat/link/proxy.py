"""Dialing through a SOCKS5 proxy: ``--proxy socks5://HOST:PORT``, and ``.onion`` through Tor.

Names are sent to the proxy as names (SOCKS5 address type DOMAINNAME), never looked up
here: no DNS query leaves this machine, and ``.onion`` names only mean something to Tor.
``python-socks`` is imported only when a proxy is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..core.torcontrol import is_onion, is_service_id
from ..errors import NetworkError, UsageError
from . import sockets, tor

if TYPE_CHECKING:
    from .sockets import Address

log = logging.getLogger("p2pchat")

PROXY_TIMEOUT = 30.0  # seconds for a proxy to connect us (it may have to look the name up first)
ONION_TIMEOUT = 60.0  # seconds for Tor to reach an onion: a few usually, tens on a slow network
# Tor's SOCKS port as packaged (9050), and Tor Browser's (9150), after the port Tor itself reports.
DEFAULT_TOR_SOCKS = (("127.0.0.1", 9050), ("127.0.0.1", 9150))
SCHEMES = ("socks5", "socks5h")  # socks5h is curl's spelling for "the proxy resolves names": we always do

# SOCKS5 reply codes (RFC 1928 section 6), and Tor's extended ones (SocksPort flag ExtendedErrors,
# Tor proposal 304), as the end of "cannot reach X: ...".
REPLIES = {
    0x01: "the proxy failed (general SOCKS server failure)",
    0x02: "the proxy refused: its rules do not allow this connection",
    0x03: "network unreachable (said the proxy)",
    0x04: "host unreachable (said the proxy)",
    0x05: "connection refused (is p2pchat listening there?)",
    0x06: "the proxy gave up waiting (TTL expired)",
    0x07: "the proxy does not support CONNECT",
    0x08: "the proxy does not support this kind of address",
    0xF0: "Tor found no descriptor for this onion: it is not published (yet), or the address is wrong",
    0xF1: "Tor got an invalid descriptor for this onion",
    0xF2: "Tor could not reach the onion's introduction points (is the listener still running?)",
    0xF3: "Tor could not complete the rendezvous with the onion",
    0xF4: "this onion needs client authorization",
    0xF5: "this onion refused our client authorization",
    0xF6: "Tor says this is not a valid onion address",
    0xF7: "the onion's introduction timed out (is the listener still running?)",
}
ONION_UNREACHABLE = (
    "the onion service is not reachable (not published yet, or the listener is not running); "
    "if the listener just started, try again in a few seconds"
)


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:  # never shows the password
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"socks5://{host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """``socks5://[USER:PASS@]HOST:PORT`` (or ``socks5h://``); UsageError for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad proxy {url!r}: expected socks5://HOST:PORT") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise UsageError(f"bad proxy {url!r}: only SOCKS5 proxies are supported (socks5://HOST:PORT)")
    if not parts.hostname or port is None or port == 0 or parts.path not in ("", "/"):
        raise UsageError(f"bad proxy {url!r}: expected socks5://HOST:PORT")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return Proxy(parts.hostname, port, username, password)


def with_default_port(text: str) -> str:
    """``X.onion`` without a port means ``X.onion:9090``, the port ``listen --tor`` publishes by default."""
    if is_onion(text) and not text.startswith("["):
        return f"{text}:{tor.DEFAULT_ONION_PORT}"
    return text


def check_destination(address: Address) -> Address:
    """*address*, with an onion name in its canonical form (lower case, no final dot) and checked.

    The canonical form matters: known_peers remembers keys by the address string.
    """
    if address.host is None or not is_onion(address.host):
        return address
    host = address.host.lower().rstrip(".")
    service_id = host.removesuffix(".onion").rpartition(".")[2]  # a subdomain reaches the same service
    if not is_service_id(service_id):
        raise UsageError(
            f"{address.host} is not a valid onion address: a v3 address is 56 letters and digits "
            "before .onion (check for a typo)"
        )
    return type(address)(host, address.port)


def needs_proxy(address: Address, proxy: str | None) -> bool:
    return proxy is not None or (address.host is not None and is_onion(address.host))


def describe(address: Address, proxy: str | None) -> str:
    """Where a proxied connection goes, for people: the peer's address and the way there."""
    return f"{address} through {parse_proxy(proxy)}" if proxy is not None else f"{address} through Tor"


def dial(address: Address, proxy: str | None = None, tor_control: str | None = None) -> socket.socket:
    """Connect to *address*: directly, through *proxy*, or through Tor for a ``.onion`` name."""
    if not needs_proxy(address, proxy):
        return sockets.dial(address)
    onion = address.host is not None and is_onion(address.host)
    timeout = ONION_TIMEOUT if onion else PROXY_TIMEOUT
    if proxy is not None:
        chosen = parse_proxy(proxy)
        return _through(chosen, address, timeout, onion, f"through {chosen}")
    tried: list[str] = []
    for host, port in _tor_socks_ports(tor_control):
        candidate = Proxy(host, port)
        try:
            return _through(candidate, address, timeout, onion, "through Tor", absent_ok=True)
        except _ProxyAbsent:
            tried.append(f"{host}:{port}")
    raise NetworkError(
        f"cannot reach {address}: no Tor SOCKS port answers (tried {', '.join(tried)}); "
        f"{tor.START_TOR}, or give --proxy socks5://HOST:PORT"
    )


def _tor_socks_ports(tor_control: str | None) -> list[tuple[str, int]]:
    """$TOR_SOCKS_PORT alone if set (Tor Browser's convention), else what Tor reports, then the defaults."""
    from_env = os.environ.get("TOR_SOCKS_PORT")
    if from_env:
        where = tor.parse_control_address(from_env, "TOR_SOCKS_PORT")  # the same PORT / HOST:PORT syntax
        if where.path is not None:
            raise UsageError(f"TOR_SOCKS_PORT={from_env!r}: expected PORT or HOST:PORT")
        return [(where.host, where.port)]
    reported = tor.socks_listeners(tor_control)
    ports = [*reported, *DEFAULT_TOR_SOCKS]
    return list(dict.fromkeys(ports))  # in order, without repeats


class _ProxyAbsent(Exception):
    """Nothing listens at this proxy address (try the next one)."""


def _through(
    proxy: Proxy, address: Address, timeout: float, onion: bool, via: str, absent_ok: bool = False
) -> socket.socket:
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.sync import Proxy as SocksProxy

    assert address.host is not None
    client = SocksProxy(ProxyType.SOCKS5, proxy.host, proxy.port, proxy.username, proxy.password, rdns=True)
    try:
        sock = client.connect(address.host, address.port, timeout=timeout)
    except ProxyConnectionError as exc:
        if absent_ok:
            raise _ProxyAbsent from exc
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        reason = "connection refused (is it running?)" if isinstance(cause, ConnectionRefusedError) else cause
        raise NetworkError(f"cannot reach the proxy {proxy}: {reason}") from exc
    except ProxyTimeoutError as exc:
        raise NetworkError(f"cannot reach {address} {via}: no answer within {timeout:g} s") from exc
    except ProxyError as exc:
        raise NetworkError(f"cannot reach {address} {via}: {_reason(exc, onion)}") from exc
    except OSError as exc:  # the proxy hung up in the middle of its answer
        raise NetworkError(f"cannot reach {address} {via}: {exc.strerror or exc}") from exc
    sock.settimeout(None)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    log.debug("connected to %s %s", address, via)
    return sock


def _reason(exc: Exception, onion: bool) -> str:
    """The end of "cannot reach X: ..." for a proxy's refusal."""
    code = getattr(exc, "error_code", None)
    if code is None:  # python-socks raises unknown codes (Tor's extended errors) with the code in the text
        match = re.search(r"reply code: 0x([0-9A-F]{2})", str(exc), re.IGNORECASE)
        code = int(match[1], 16) if match else None
    text = str(exc).lower()
    if code is None and "authentication" in text:
        if "no acceptable" in text:
            return "the proxy wants a user name and password: socks5://USER:PASSWORD@HOST:PORT"
        return "the proxy refused the user name and password"
    if onion and code in (0x01, 0x04, 0x05, 0x06):
        return ONION_UNREACHABLE  # what Tor answers while the descriptor cannot be found or the service is gone
    if isinstance(code, int) and code in REPLIES:
        return REPLIES[code]
    return f"the proxy failed: {exc}"
