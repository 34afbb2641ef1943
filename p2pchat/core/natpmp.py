"""NAT-PMP (RFC 6886), sans-IO: the requests a client sends and the parsing of the gateway's answers.

Only what a listener needs: the gateway's external address (opcode 0), and mapping a TCP port
(opcode 2) for a lifetime; a mapping is removed by asking again with lifetime 0 (section 3.4).
All integers are big-endian. The UDP exchange (port 5351, retries) is in ``link/portmap.py``.

Answers come from the network and are validated here: wrong size, version, opcode or port is a
:class:`NatPmpError`, never an exception of another kind.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

PORT = 5351  # the gateway's NAT-PMP port (section 3.1)
VERSION = 0
OP_EXTERNAL_ADDRESS = 0
OP_MAP_UDP = 1
OP_MAP_TCP = 2
RESPONSE_BIT = 128  # a response's opcode is the request's plus 128
RECOMMENDED_LIFETIME = 7200  # seconds (section 3.3); we ask for less, see link/portmap.py

RESULTS = {  # section 3.5
    0: "success",
    1: "unsupported version",
    2: "not authorized or refused (NAT-PMP is switched off on the router?)",
    3: "network failure (the router has no external address yet)",
    4: "out of resources (no ports left)",
    5: "unsupported opcode",
}

_EXTERNAL_RESPONSE = struct.Struct("!BBHI4s")  # version, opcode, result, epoch, address
_MAP_REQUEST = struct.Struct("!BBHHHI")  # version, opcode, reserved, internal, suggested external, lifetime
_MAP_RESPONSE = struct.Struct("!BBHIHHI")  # version, opcode, result, epoch, internal, external, lifetime
_HEADER = struct.Struct("!BBH")  # version, opcode, result: enough to read an error answer


class NatPmpError(Exception):
    """The gateway's answer is malformed, or says no."""

    def __init__(self, message: str, result: int | None = None) -> None:
        super().__init__(message)
        self.result = result  # the result code, when the gateway answered with one


@dataclass(frozen=True)
class ExternalAddress:
    epoch: int  # seconds since the gateway's mappings were (re)started
    address: ipaddress.IPv4Address


@dataclass(frozen=True)
class Mapping:
    epoch: int
    internal_port: int
    external_port: int  # may differ from the one suggested
    lifetime: int  # seconds granted; 0: the mapping was removed


def external_address_request() -> bytes:
    return bytes([VERSION, OP_EXTERNAL_ADDRESS])


def map_request(internal_port: int, external_port: int, lifetime: int) -> bytes:
    """Ask for TCP *internal_port* to be reachable at *external_port* (a wish) for *lifetime* s."""
    if not 1 <= internal_port <= 0xFFFF or not 0 <= external_port <= 0xFFFF or not 0 <= lifetime <= 0xFFFFFFFF:
        raise ValueError("port or lifetime out of range")
    return _MAP_REQUEST.pack(VERSION, OP_MAP_TCP, 0, internal_port, external_port, lifetime)


def unmap_request(internal_port: int) -> bytes:
    """Remove our mapping of TCP *internal_port* (lifetime 0, external port 0: section 3.4)."""
    return map_request(internal_port, 0, 0)


def parse_external_address(data: bytes) -> ExternalAddress:
    _check(data, OP_EXTERNAL_ADDRESS, _EXTERNAL_RESPONSE.size)
    _, _, _, epoch, raw = _EXTERNAL_RESPONSE.unpack(data)
    return ExternalAddress(epoch, ipaddress.IPv4Address(raw))


def parse_map(data: bytes, internal_port: int) -> Mapping:
    """The answer to :func:`map_request` or :func:`unmap_request` for *internal_port*."""
    _check(data, OP_MAP_TCP, _MAP_RESPONSE.size)
    _, _, _, epoch, internal, external, lifetime = _MAP_RESPONSE.unpack(data)
    if internal != internal_port:
        raise NatPmpError(f"the answer is about port {internal}, not {internal_port}")
    return Mapping(epoch, internal, external, lifetime)


def _check(data: bytes, opcode: int, size: int) -> None:
    if len(data) < _HEADER.size:
        raise NatPmpError(f"a NAT-PMP answer of {len(data)} bytes is too short")
    version, got, result = _HEADER.unpack_from(data)
    if version != VERSION:
        raise NatPmpError(f"NAT-PMP version {version} is not 0")
    if got != opcode + RESPONSE_BIT:
        raise NatPmpError(f"NAT-PMP opcode {got} does not answer {opcode}")
    if result != 0:
        meaning = RESULTS.get(result, "unknown result")
        raise NatPmpError(f"the router said no: {meaning} (NAT-PMP result {result})", result)
    if len(data) != size:  # checked after the result: an error answer may be short (section 3.5)
        raise NatPmpError(f"a NAT-PMP answer of {len(data)} bytes, expected {size}")
