"""The invitation: one command a listener gives its peer, ready to paste into a shell.

``p2pchat dial ADDRESS... --peer 'FINGERPRINT'``: every address that may reach this listener,
best first (the dialer races them, see ``link/sockets.dial_first``), and the listener's key
pinned, so the peer who runs it is safe from a man in the middle on first contact.

Addresses come from the system, the router (UPnP, NAT-PMP) and Tor, none of which we trust to
be well-formed: each must be an IP address, an onion address or a plain host name, or it is left
out; every argument is shell-quoted (``[2001:db8::1]:9090`` would be a glob pattern).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable, Sequence

PROGRAM = "p2pchat"
_ONION = re.compile(r"[a-z2-7]{56}\.onion\Z")  # a v3 onion address (rend-spec-v3)
_HOST_NAME = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+\Z")  # RFC 1123 labels

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ordered(
    port: int,
    *,
    onions: Iterable[str] = (),
    mapped: tuple[IPAddress, int] | None = None,
    interfaces: Iterable[IPAddress] = (),
) -> list[str]:
    """The addresses to put in the invitation, as ``HOST:PORT``, best first, each once.

    Onion services first (they reach through any NAT and hide both sides' addresses), then
    public IPv6 interface addresses (two IPv6 hosts need no port mapping), the router's mapped
    address, public IPv4 interface addresses, and last the local ones (same network only).
    """
    own = list(dict.fromkeys(interfaces))
    public_six = [a for a in own if a.version == 6 and a.is_global]
    public_four = [a for a in own if a.version == 4 and a.is_global]
    local = sorted((a for a in own if not a.is_global), key=lambda a: -a.version)  # IPv6 first
    found = []
    for onion in onions:  # "xxx.onion" or "xxx.onion:PORT" (the service's port may differ from ours)
        host, _, given = onion.partition(":")
        if _ONION.match(host) and (not given or given.isdigit()):
            found.append(f"{host}:{given or port}")
    found += [host_port(a, port) for a in public_six]
    if mapped is not None:
        found.append(host_port(*mapped))
    found += [host_port(a, port) for a in public_four + local]
    return list(dict.fromkeys(found))


def host_port(host: IPAddress | str, port: int) -> str:
    text = str(host)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def command(addresses: Sequence[str], fingerprint: str, *, passphrase: bool = False, code: str | None = None) -> str:
    """The shell command for the peer; addresses that are not plainly addresses are left out.

    ValueError if no address is left: there is nothing to invite to.
    """
    safe = [address for address in addresses if is_safe_address(address)]
    if not safe:
        raise ValueError("no address to put in the invitation")
    words = [PROGRAM, "dial", *safe, "--peer", fingerprint]
    if passphrase:
        words.append("--passphrase")  # the flag only: the passphrase itself goes by another way
    if code is not None:
        words += ["--code", code]  # single-use: it is worth nothing once the peer has used it
    return shlex.join(words)


def is_safe_address(address: str) -> bool:
    """``HOST:PORT`` or ``[IPv6]:PORT`` with an IP address, a v3 onion or an RFC 1123 host name."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("[") and host.endswith("]"):
        if "%" in host:  # a scope (fe80::1%eth0) names an interface of ours, meaningless to the peer
            return False
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    if ":" in host:
        return False
    return bool(_ONION.match(host) or _HOST_NAME.match(host)) and host.isascii()
