"""Asking the home router to forward a port to us: UPnP-IGD, else NAT-PMP; kept, renewed, removed.

``map_port()`` finds a router (UPnP first, through the ``miniupnpc`` binding, imported only
here; then NAT-PMP, RFC 6886, whose codec is ``core/natpmp.py``) and returns a
:class:`KeptMapping`: a thread renews the lease at half its lifetime, and ``close()`` removes the
mapping. The lease is short (LEASE) so that a p2pchat that dies without cleaning up (SIGKILL,
power cut) leaves the port open for minutes, not forever.

Every failure is a :class:`PortMapError` with one line for people; the listener keeps listening.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..core import natpmp

LEASE = 1200  # seconds asked for: a crashed p2pchat leaves the port open at most 20 minutes
RENEW_FRACTION = 0.5  # renew when half the lease granted has passed (RFC 6886 section 3.3 says so too)
MIN_RENEW = 0.5  # seconds between renewals at least, whatever lifetime a router grants
RETRY_AFTER = 30.0  # seconds before trying again when a renewal failed (the lease may still run)
UPNP_DISCOVERY_MS = 1000  # SSDP answers on a LAN come in milliseconds; miniupnpc waits this long per search
FIND_TIMEOUT = 15.0  # seconds for finding a router: miniupnpc makes up to 4 searches of UPNP_DISCOVERY_MS
NATPMP_WAITS = (0.25, 0.5, 1.0)  # RFC 6886 3.1: first wait 250 ms, doubling; we stop after 1.75 s
CONFLICT_TRIES = 4  # external ports tried when the one we want is taken by another machine
JOIN_TIMEOUT = 10.0  # seconds to wait for a renewal in progress to end (a UPnP call has its own timeouts)
DESCRIPTION = "p2pchat"  # how the mapping is named in the router's list

log = logging.getLogger("p2pchat")


class PortMapError(Exception):
    """The router did not map the port; the message is one line for people."""


@dataclass(frozen=True)
class Lease:
    """One mapping the router granted."""

    protocol: str  # "UPnP" or "NAT-PMP"
    external_address: ipaddress.IPv4Address | None  # None: the router would not say
    external_port: int
    internal_port: int
    lifetime: int  # seconds granted; 0: until removed (a router that only knows permanent mappings)

    def __str__(self) -> str:
        return f"{self.external_address or 'the router'}:{self.external_port}"


class Router(Protocol):
    """A router that maps ports: what UPnP and NAT-PMP have in common."""

    name: str

    def open(self, internal_port: int, external_port: int, lifetime: int) -> Lease:
        """Map (or renew); PortMapError when refused."""
        ...

    def close(self, lease: Lease) -> None:
        """Remove the mapping; PortMapError when the router fails."""
        ...


def map_port(
    port: int,
    *,
    lifetime: int = LEASE,
    routers: Sequence[Callable[[], Router]] | None = None,
) -> KeptMapping:
    """Find a router, map TCP *port* to the same external port if free, keep it until close().

    The protocols are asked all at once (UPnP discovery waits for answers; NAT-PMP answers in
    milliseconds or not at all), and the first in order of preference that found a router is used.
    """
    finders = routers if routers is not None else (UPnPRouter.find, NatPmpRouter.find)
    if not finders:
        raise PortMapError("no router to ask")
    found: list[Router | PortMapError | None] = [None] * len(finders)

    def find(index: int) -> None:
        try:
            found[index] = finders[index]()
        except PortMapError as exc:
            found[index] = exc
        except Exception as exc:  # a bug here must not end the listener: one line, details with -v
            log.debug("finding a router failed", exc_info=exc)
            found[index] = PortMapError(f"looking for a router failed ({_clean(repr(exc))})")

    threads = [threading.Thread(target=find, args=(index,), daemon=True) for index in range(len(finders))]
    reasons: list[str] = []
    deadline = time.monotonic() + FIND_TIMEOUT
    with _c_stderr_to_log():  # until the first (UPnP, the one that prints) has finished
        for thread in threads:
            thread.start()
        threads[0].join(max(0.0, deadline - time.monotonic()))
    for index, thread in enumerate(threads):  # in order of preference; the first that maps wins
        thread.join(max(0.0, deadline - time.monotonic()))
        result = found[index]
        if isinstance(result, PortMapError) or result is None:
            reasons.append(str(result or "the router did not answer in time"))
            continue
        try:
            lease = _open_free(result, port, lifetime)
        except PortMapError as exc:  # refused: another protocol (another box, even) may still say yes
            reasons.append(str(exc))
            continue
        kept = KeptMapping(result, lease, lifetime)
        kept.start()
        return kept
    raise PortMapError("; ".join(reasons))


@contextlib.contextmanager
def _c_stderr_to_log() -> Iterator[None]:
    """File descriptor 2 into a temporary file while routers are searched, then into the -v log.

    miniupnpc's C code reports socket errors with perror() ("sendto: Network is unreachable"),
    which would land between p2pchat's own one-line messages. This runs in the main thread and
    restores stderr in ``finally``, so a Ctrl-C meanwhile still prints its line.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr at all: nothing to protect
        yield
        return
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                capture.seek(0)
                said = capture.read(4096).decode("utf-8", "replace").strip()
                if said:
                    log.debug("the UPnP library said: %s", said.replace("\n", "; "))
    finally:
        os.close(saved)


def _open_free(router: Router, port: int, lifetime: int) -> Lease:
    """The same external port as ours if we may; else a few random ones (another machine has ours)."""
    wanted = [port] + [random.randrange(20000, 60000) for _ in range(CONFLICT_TRIES - 1)]
    for external in wanted:
        try:
            return router.open(port, external, lifetime)
        except PortConflict:
            log.debug("external port %d is taken on the router", external)
    raise PortMapError(f"the router ({router.name}) has no free external port for us")


class PortConflict(PortMapError):
    """The external port is mapped to another machine already."""


class KeptMapping:
    """A lease kept alive: a thread renews it; close() stops the thread and removes the mapping."""

    def __init__(self, router: Router, lease: Lease, lifetime: int) -> None:
        self.router = router
        self.lease = lease
        self.lifetime = lifetime  # what we ask for at each renewal
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="portmap-renew", daemon=True)
        self._closed = False
        self._lock = threading.Lock()  # one router call at a time

    def start(self) -> None:
        if self.lease.lifetime > 0:  # a permanent mapping needs no renewal, only removal
            self._thread.start()

    def _keep(self) -> None:
        wait = max(MIN_RENEW, self.lease.lifetime * RENEW_FRACTION)
        while not self._stop.wait(wait):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self.lease = self.router.open(self.lease.internal_port, self.lease.external_port, self.lifetime)
                    self.renewals += 1
                    if self.lease.lifetime == 0:  # now permanent: nothing more to renew, only to remove
                        return
                    wait = max(MIN_RENEW, self.lease.lifetime * RENEW_FRACTION)
                    log.debug("port mapping %s renewed for %d s", self.lease, self.lease.lifetime)
                except PortMapError as exc:  # the router rebooted, say: try again while the lease may run
                    wait = max(MIN_RENEW, min(RETRY_AFTER, self.lease.lifetime * RENEW_FRACTION))
                    log.warning("could not renew the port mapping at %s: %s", self.lease, exc)

    def close(self) -> None:
        """Remove the mapping (once); failures are logged, not raised: we are on our way out."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT)
        expiry = f"it expires within {self.lease.lifetime} s" if self.lease.lifetime else "remove it by hand"
        if not self._lock.acquire(timeout=JOIN_TIMEOUT):  # a renewal hangs: the router is not answering
            log.warning("could not remove the port mapping at %s (%s): the router does not answer", self.lease, expiry)
            return
        try:
            self.router.close(self.lease)
            log.debug("port mapping %s removed", self.lease)
        except PortMapError as exc:
            log.warning("could not remove the port mapping at %s (%s): %s", self.lease, expiry, exc)
        finally:
            self._lock.release()


def _clean(text: object) -> str:
    """Text from a library or router, safe for one line: printable ASCII, bounded."""
    return re.sub(r"[^ -~]", "?", str(text))[:120]


class UPnPRouter:
    """An Internet Gateway Device found by SSDP, spoken to through miniupnpc."""

    name = "UPnP"

    def __init__(self, upnp: Any) -> None:
        self.upnp = upnp  # a miniupnpc.UPnP with an IGD selected
        self.internal_host = str(upnp.lanaddr)  # our address on the router's side
        self.external: ipaddress.IPv4Address | None = None
        with contextlib.suppress(Exception, ValueError):  # miniupnpc raises bare Exception
            self.external = ipaddress.IPv4Address(str(upnp.externalipaddress()))

    @classmethod
    def find(cls, discovery_ms: int = UPNP_DISCOVERY_MS) -> UPnPRouter:
        try:
            import miniupnpc  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise PortMapError("UPnP needs the miniupnpc module (pip install miniupnpc)") from exc
        upnp = miniupnpc.UPnP()
        upnp.discoverdelay = discovery_ms
        try:  # miniupnpc signals every failure with a bare Exception and a message
            if not upnp.discover():
                raise PortMapError("no UPnP router answered")
            upnp.selectigd()
        except PortMapError:
            raise
        except Exception as exc:
            raise PortMapError(f"no UPnP router answered ({_clean(exc)})") from exc
        return cls(upnp)

    def open(self, internal_port: int, external_port: int, lifetime: int) -> Lease:
        try:
            self.upnp.addportmapping(external_port, "TCP", self.internal_host, internal_port, DESCRIPTION, "", lifetime)
        except Exception as exc:
            reason = _clean(exc)
            if "OnlyPermanentLeasesSupported" in reason and lifetime:
                log.debug("this router maps only permanently: the mapping lives until we remove it")
                return self.open(internal_port, external_port, 0)
            if "Conflict" in reason:
                raise PortConflict(f"the router (UPnP) has port {external_port} mapped already") from exc
            why = f"the router (UPnP) refused to map port {external_port}: {reason}"
            if self.external is not None and not self.external.is_global:
                why += f" (its own external address {self.external} is not public: is another NAT in front of it?)"
            raise PortMapError(why) from exc
        return Lease(self.name, self.external, external_port, internal_port, lifetime)

    def close(self, lease: Lease) -> None:
        try:
            self.upnp.deleteportmapping(lease.external_port, "TCP")
        except Exception as exc:
            raise PortMapError(f"the router (UPnP) did not remove the mapping: {_clean(exc)}") from exc


class NatPmpRouter:
    """A NAT-PMP gateway: our default route's next hop, UDP port 5351."""

    name = "NAT-PMP"

    def __init__(self, gateway: str, waits: Sequence[float] = NATPMP_WAITS, port: int = natpmp.PORT) -> None:
        self.gateway = gateway
        self.waits = waits
        self.port = port
        self.external: ipaddress.IPv4Address | None = None

    @classmethod
    def find(cls, gateway: str | None = None, port: int = natpmp.PORT) -> NatPmpRouter:
        gateway = gateway or default_gateway()
        if gateway is None:
            raise PortMapError("no default gateway to ask with NAT-PMP")
        router = cls(gateway, port=port)
        try:
            router.external = natpmp.parse_external_address(router.exchange(natpmp.external_address_request())).address
        except natpmp.NatPmpError as exc:
            raise PortMapError(f"the gateway {gateway} refused NAT-PMP: {exc}") from exc
        return router

    def exchange(self, request: bytes) -> bytes:
        """Send *request*, resending with doubling waits; the first well-formed answer.

        A connected UDP socket only receives from the gateway's port 5351; an answer that does
        not parse is ignored (someone else's packet), and the wait goes on.
        """
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:
            raise PortMapError(f"cannot ask the gateway {self.gateway} ({exc.strerror or exc})") from exc
        with sock:
            try:
                sock.connect((self.gateway, self.port))
                for wait in self.waits:
                    sock.send(request)
                    deadline = time.monotonic() + wait
                    while (left := deadline - time.monotonic()) > 0:
                        sock.settimeout(left)
                        try:
                            data = sock.recv(64)
                        except TimeoutError:
                            break
                        if _answers(request, data):
                            return data
            except OSError as exc:  # refused (ICMP port unreachable): no NAT-PMP there
                raise PortMapError(f"no NAT-PMP at the gateway {self.gateway} ({exc.strerror or exc})") from exc
        raise PortMapError(f"no NAT-PMP answer from the gateway {self.gateway}")

    def open(self, internal_port: int, external_port: int, lifetime: int) -> Lease:
        answer = self.exchange(natpmp.map_request(internal_port, external_port, lifetime))
        try:
            mapping = natpmp.parse_map(answer, internal_port)
        except natpmp.NatPmpError as exc:
            raise PortMapError(f"the router (NAT-PMP) refused to map port {external_port}: {exc}") from exc
        return Lease(self.name, self.external, mapping.external_port, internal_port, mapping.lifetime)

    def close(self, lease: Lease) -> None:
        try:
            natpmp.parse_map(self.exchange(natpmp.unmap_request(lease.internal_port)), lease.internal_port)
        except natpmp.NatPmpError as exc:
            raise PortMapError(f"the router (NAT-PMP) did not remove the mapping: {exc}") from exc


def _answers(request: bytes, data: bytes) -> bool:
    """Whether *data* is a NAT-PMP answer to *request* (its opcode + 128), well-formed or an error."""
    return len(data) >= 4 and data[0] == natpmp.VERSION and data[1] == request[1] + natpmp.RESPONSE_BIT


def default_gateway() -> str | None:
    """The IPv4 next hop of the default route: /proc/net/route on Linux, `route -n get` elsewhere."""
    try:
        with open("/proc/net/route", encoding="ascii") as table:
            return parse_proc_route(table.read())
    except OSError:
        pass
    try:
        done = subprocess.run(["route", "-n", "get", "default"], capture_output=True, text=True, timeout=2.0)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"gateway:\s*(\S+)", done.stdout)
    if found is None:
        return None
    try:
        return str(ipaddress.IPv4Address(found.group(1)))
    except ValueError:
        return None


def parse_proc_route(text: str) -> str | None:
    """The default route's gateway in /proc/net/route (hex, little-endian), or None."""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[1] != "00000000":
            continue
        try:
            flags, gateway = int(fields[3], 16), int(fields[2], 16)
        except ValueError:
            continue
        if flags & 0x1 and flags & 0x2 and gateway:  # RTF_UP and RTF_GATEWAY
            return str(ipaddress.IPv4Address(gateway.to_bytes(4, "little")))
    return None
