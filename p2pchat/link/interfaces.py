"""This machine's own IP addresses, for the invitation, without any extra dependency.

Sources, best first (the first that answers wins):

1. ``ip -j addr show`` (iproute2, on every Linux): every address of every interface, with its
   scope and flags, so temporary (privacy) and deprecated IPv6 addresses can be left out.
2. ``/proc/net/if_inet6`` for IPv6 (Linux without iproute2), plus, for IPv4, the address the
   system would send from towards the internet: a UDP socket "connected" to a TEST-NET address
   (connecting a UDP socket only picks a route; no packet is sent).
3. Elsewhere (macOS, BSD): that same route probe, for IPv4 and IPv6, and the addresses the
   host name resolves to.

Loopback, link-local (they need the dialer's interface name), multicast and unspecified
addresses are never returned: the parsers below keep only what a peer could dial.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import shutil
import socket
import subprocess
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IP_COMMAND_TIMEOUT = 2.0  # seconds for `ip -j addr`: it answers in milliseconds, or something is wrong
ROUTE_PROBES = ("192.0.2.1", "2001:db8::1")  # TEST-NET-1 and IPv6 documentation: never really sent to

# /proc/net/if_inet6 flags (linux/if_addr.h) for addresses a peer should not be given.
IFA_F_TEMPORARY = 0x01  # privacy address: changes daily, and exists for outgoing connections
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
_UNWANTED_FLAGS = IFA_F_TEMPORARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE
_UNWANTED_IP_FLAGS = {"temporary", "dadfailed", "deprecated", "tentative"}

log = logging.getLogger("p2pchat")


def interface_addresses() -> list[IPAddress]:
    """The addresses of this machine a peer could dial: no loopback, no link-local; no duplicates."""
    ip = shutil.which("ip")
    if ip is not None:
        try:
            done = subprocess.run(
                [ip, "-j", "addr", "show"], capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT, check=True
            )
            return parse_ip_json(done.stdout)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:  # old iproute2 without -j, say
            log.debug("ip -j addr failed (%s); reading /proc instead", exc)
    found: list[IPAddress] = []
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as lines:
        found += parse_if_inet6(lines.read())
    found += _route_probe()
    with contextlib.suppress(OSError, UnicodeError):
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
        found += usable(ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos)
    return _unique(found)


def parse_ip_json(text: str) -> list[IPAddress]:
    """The usable addresses in the output of ``ip -j addr show``; ValueError if it is not that."""
    found: list[IPAddress] = []
    for interface in json.loads(text):
        if not isinstance(interface, dict) or "UP" not in interface.get("flags", []):
            continue
        for info in interface.get("addr_info", []):
            if not isinstance(info, dict) or info.get("scope") != "global":
                continue
            if any(info.get(flag) for flag in _UNWANTED_IP_FLAGS):  # ip -j spells flags as "temporary": true
                continue
            with contextlib.suppress(ValueError, TypeError):
                found += usable([ipaddress.ip_address(str(info.get("local")))])
    return _unique(found)


def parse_if_inet6(text: str) -> list[IPAddress]:
    """The usable addresses in ``/proc/net/if_inet6``: 32 hex digits, index, prefix, scope, flags, name."""
    found: list[IPAddress] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or len(fields[0]) != 32:
            continue
        try:
            address = ipaddress.IPv6Address(int(fields[0], 16))
            flags = int(fields[4], 16)
        except ValueError:
            continue
        if not flags & _UNWANTED_FLAGS:
            found += usable([address])
    return _unique(found)


def usable(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    """Only the addresses a peer could dial."""
    return [
        address
        for address in addresses
        if not (address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified)
    ]


def _route_probe() -> list[IPAddress]:
    found: list[IPAddress] = []
    for target in ROUTE_PROBES:
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))  # UDP connect picks the source address and sends nothing
            found += usable([ipaddress.ip_address(probe.getsockname()[0])])
    return found


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(addresses))
