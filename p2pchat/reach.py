"""Being reachable: the router's port mapping and the invitation, for a listener.

Wiring, like chat.py: it knows the link layer (interfaces, port mapping) and the terminal
(the invitation's text). chat.py makes one :class:`Reach` per run and calls
:meth:`Reach.listening` once the listening socket exists; leaving the ``with`` block removes
any port mapping, whatever the way out.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from types import TracebackType

from .link import interfaces, portmap
from .term import invitation, say

log = logging.getLogger("p2pchat")


class Reach:
    """What a listener does to be found: map the port (``--upnp``), print the invitation."""

    def __init__(
        self,
        fingerprint: str,
        *,
        quiet: bool = False,
        passphrase: bool = False,
        upnp: bool = False,
        code: str | None = None,
        status: Callable[[str], None] = say.status,
        addresses: Callable[[], list[interfaces.IPAddress]] = interfaces.interface_addresses,
        map_port: Callable[[int], portmap.KeptMapping] = portmap.map_port,
    ) -> None:
        self.fingerprint = fingerprint
        self.quiet = quiet
        self.passphrase = passphrase
        self.upnp = upnp
        self.code = code  # listen --code: the invitation carries it, so pasting it as is works
        self.status = status
        self.addresses = addresses
        self.map_port = map_port
        self.mapping: portmap.KeptMapping | None = None  # the router's port mapping, while listening
        self.invitation: str | None = None  # the command printed, once listening

    def __enter__(self) -> Reach:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Remove the port mapping, if any. Safe to call more than once."""
        if self.mapping is not None:
            self.mapping.close()

    def listening(self, listener: socket.socket, onions: Sequence[str] = ()) -> None:
        """The listener is ready: print the invitation (unless quiet).

        *onions*: onion addresses (``xxx.onion``) of a Tor service forwarding to this listener;
        with them, loopback addresses are left out (a listener behind Tor binds 127.0.0.1).
        """
        host, port = listener.getsockname()[:2]
        host = str(host).partition("%")[0]
        mapped = None
        if self.upnp and ipaddress.ip_address(host).is_loopback:
            self.status("no port mapping: the listener is on a loopback address, which the router cannot reach")
        elif self.upnp and self.mapping is None:
            mapped = self._map(port)
        if self.quiet:
            return
        own = self._own_addresses(host, bool(onions))
        addresses = invitation.ordered(port, onions=onions, mapped=mapped, interfaces=own)
        try:
            self.invitation = invitation.command(
                addresses, self.fingerprint, passphrase=self.passphrase, code=self.code
            )
        except ValueError:
            log.debug("no address to invite to")
            return
        self.status("your peer can join you with this command (it pins your key; --quiet hides it):")
        sys.stderr.write(self.invitation + "\n")
        sys.stderr.flush()

    def _map(self, port: int) -> tuple[interfaces.IPAddress, int] | None:
        """Ask the router to forward *port*; one line either way. The external address, if public."""
        self.status("asking the router to forward the port (UPnP, else NAT-PMP)...")
        try:
            self.mapping = self.map_port(port)
        except portmap.PortMapError as exc:
            self.status(f"no port mapping: {exc}; still listening (see README: Reaching someone outside your network)")
            return None
        lease = self.mapping.lease
        how_long = f"renewed every {lease.lifetime // 2} s" if lease.lifetime else "until p2pchat exits"
        self.status(f"the router ({lease.protocol}) forwards {lease} to this listener, {how_long}")
        external = lease.external_address
        if external is None:
            return None
        if not external.is_global:
            self.status(
                f"the router's own external address {external} is not public: another NAT is in front of it "
                "(your provider's?), so the mapping does not make you reachable from the internet"
            )
            return None
        return external, lease.external_port

    def _own_addresses(self, host: str, behind_tor: bool) -> list[interfaces.IPAddress]:
        bound = ipaddress.ip_address(host)
        if bound.version == 6 and bound.ipv4_mapped is not None:
            bound = bound.ipv4_mapped
        if bound.is_unspecified:
            found = self.addresses()
            if bound.version == 4:  # an IPv4-only listener cannot be dialed over IPv6
                found = [address for address in found if address.version == 4]
            if not found and not behind_tor:  # no network at all: at least this machine can dial in
                found = [ipaddress.ip_address("::1" if bound.version == 6 else "127.0.0.1")]
            return found
        if behind_tor and bound.is_loopback:
            return []
        return [bound]
