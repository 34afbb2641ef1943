"""Talking to a running Tor: find its control port, authenticate, publish an onion service.

The protocol itself (commands, replies, SAFECOOKIE hashes) is in ``core/torcontrol.py``;
this module moves its bytes over a TCP or unix socket, each wait with a deadline.
An onion service added here is not detached: Tor removes it when the control
connection closes, so it never outlives p2pchat, however p2pchat ends.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core import torcontrol as tc
from ..errors import LocalError, NetworkError, P2PChatError, UsageError
from . import onionkey

log = logging.getLogger("p2pchat")

CONNECT_TIMEOUT = 3.0  # seconds to open a control connection: Tor is on this machine
REPLY_TIMEOUT = 10.0  # seconds for Tor to answer a command: milliseconds usually, more on a busy machine
PUBLISH_TIMEOUT = 120.0  # seconds to wait for the descriptor upload: ~1.5 s, a minute while Tor bootstraps
RECV_SIZE = 64 * 1024
DEFAULT_ONION_PORT = 9090  # the onion's port when no port is given at all
PASSWORD_VARIABLE = "P2PCHAT_TOR_PASSWORD"
# Where a Tor usually listens: Debian's packaged tor (a unix socket, no TCP port), a torrc with
# "ControlPort 9051", and Tor Browser's own tor.
DEFAULT_CONTROL = ("/run/tor/control", "127.0.0.1:9051", "127.0.0.1:9151")
START_TOR = (
    "start Tor: 'sudo apt install tor' (Debian, Ubuntu: it starts at once) or "
    "'brew install tor && brew services start tor' (macOS, then add 'ControlPort 9051' and "
    "'CookieAuthentication 1' to its torrc), or open Tor Browser; or name the port with --tor-control"
)


@dataclass(frozen=True)
class ControlAddress:
    """A control port: a unix socket *path*, or *host* and *port*."""

    path: str | None = None
    host: str = "127.0.0.1"
    port: int = 0

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_control_address(text: str, what: str = "Tor control address") -> ControlAddress:
    """``/path/to/socket``, ``unix:/path``, ``PORT`` (on 127.0.0.1), ``HOST:PORT`` or ``[IPv6]:PORT``."""
    if text.startswith("unix:"):
        text = text[len("unix:") :]
        if not text:
            raise UsageError(f"bad {what} 'unix:': expected unix:/path/to/socket")
        return ControlAddress(path=text)
    if text.startswith(("/", "./", "~")):
        return ControlAddress(path=os.path.expanduser(text))
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if colon else "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536 or (colon and not host):
        raise UsageError(f"bad {what} {text!r}: expected HOST:PORT, PORT or a unix socket path")
    return ControlAddress(host=host, port=int(port))


def control_candidates(explicit: str | None) -> list[ControlAddress]:
    """Where to look for Tor: --tor-control, else $TOR_CONTROL_PORT, else the usual places."""
    if explicit:
        return [parse_control_address(explicit)]
    from_env = os.environ.get("TOR_CONTROL_PORT")
    if from_env:
        return [parse_control_address(from_env)]
    return [parse_control_address(text) for text in DEFAULT_CONTROL]


class TorControl:
    """One control connection: send a command, get its reply; events are kept for :meth:`next_event`."""

    def __init__(self, sock: socket.socket, where: ControlAddress) -> None:
        self.sock = sock
        self.where = where
        self._parser = tc.ReplyParser()
        self._replies: deque[tc.Reply] = deque()
        self._events: deque[tc.Reply] = deque()

    def request(self, command: bytes, timeout: float = REPLY_TIMEOUT) -> tc.Reply:
        deadline = time.monotonic() + timeout
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(command)
        except OSError as exc:
            raise NetworkError(f"Tor's control connection at {self.where} failed: {exc.strerror or exc}") from exc
        while True:
            reply = self._next(deadline)
            if reply is None:
                raise NetworkError(f"Tor at {self.where} did not answer within {timeout:g} s")
            if reply.is_event:
                self._events.append(reply)
            else:
                return reply

    def next_event(self, deadline: float) -> tc.Reply | None:
        """The next asynchronous event, or None when *deadline* (time.monotonic) passes first."""
        while not self._events:
            reply = self._next(deadline)
            if reply is None:
                return None
            if not reply.is_event:
                raise tc.ControlProtocolError(f"Tor at {self.where} sent a reply nobody asked for")
            self._events.append(reply)
        return self._events.popleft()

    def _next(self, deadline: float) -> tc.Reply | None:
        while not self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                self.sock.settimeout(remaining)
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                return None
            except OSError as exc:
                raise NetworkError(f"Tor's control connection at {self.where} failed: {exc.strerror or exc}") from exc
            if not data:
                raise NetworkError(f"Tor closed the control connection at {self.where}")
            self._replies.extend(self._parser.receive_data(data))
        return self._replies.popleft()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def connect(where: ControlAddress, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A socket to *where*; OSError as the system says it (the caller decides what it means)."""
    if where.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(where.path)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((where.host, where.port), timeout=timeout)


def _group_hint(path: str) -> str:
    """How to get access to a file of Tor's: join its group (Debian: debian-tor), or its directory's."""
    for candidate in (path, os.path.dirname(path)):
        try:
            group = grp.getgrgid(os.stat(candidate).st_gid).gr_name
        except (OSError, KeyError):
            continue
        return f"join the group {group}: 'sudo adduser $USER {group}', then log out and in again"
    return "run p2pchat as a user allowed to use Tor"


def open_control(
    explicit: str | None = None,
    password: str | None = None,
    methods: tuple[str, ...] = ("SAFECOOKIE", "COOKIE"),
) -> TorControl:
    """An authenticated control connection to the first Tor that answers; one clear line if none does.

    *methods*: the cookie methods to use, in order of preference (tests pin one).
    """
    candidates = control_candidates(explicit)
    denied: str | None = None
    for where in candidates:
        try:
            sock = connect(where)
        except (ConnectionRefusedError, FileNotFoundError, TimeoutError) as exc:
            log.debug("no Tor control port at %s: %s", where, exc)
            continue
        except PermissionError:
            denied = f"cannot open Tor's control socket {where}: permission denied; {_group_hint(str(where))}"
            continue
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ENETUNREACH):
                log.debug("no Tor control port at %s: %s", where, exc)
                continue
            raise NetworkError(f"cannot open Tor's control port {where}: {exc.strerror or exc}") from exc
        control = TorControl(sock, where)
        try:
            authenticate(control, password, methods)
        except BaseException:
            control.close()
            raise
        log.debug("authenticated to Tor at %s", where)
        return control
    if denied is not None:
        raise NetworkError(denied)
    tried = ", ".join(str(where) for where in candidates)
    raise NetworkError(f"no Tor control port answers at {tried}: {START_TOR}")


def authenticate(
    control: TorControl,
    password: str | None,
    methods: tuple[str, ...] = ("SAFECOOKIE", "COOKIE"),
    client_nonce: bytes | None = None,
) -> None:
    """PROTOCOLINFO, then the best method both sides know: none, a password, SAFECOOKIE, COOKIE."""
    where = control.where
    try:
        info = tc.parse_protocolinfo(control.request(tc.protocolinfo()))
    except tc.ControlProtocolError as exc:
        raise NetworkError(f"{where} does not speak Tor's control protocol (is it Tor's control port?)") from exc
    if "NULL" in info.methods:
        control.request(tc.authenticate()).check()
        return
    if password is not None and "HASHEDPASSWORD" in info.methods:
        reply = control.request(tc.authenticate_password(password))
        if not reply.ok:
            raise NetworkError(f"Tor at {where} refused the password in {PASSWORD_VARIABLE}")
        return
    usable = [method for method in methods if method in info.methods]
    if usable and info.cookie_file:
        cookie = _read_cookie(info.cookie_file)
        if usable[0] == "SAFECOOKIE":
            _safecookie(control, cookie, info.cookie_file, client_nonce or os.urandom(tc.NONCE_SIZE))
        else:
            reply = control.request(tc.authenticate(cookie))
            if not reply.ok:
                raise NetworkError(
                    f"Tor at {where} refused the cookie in {tc.printable(info.cookie_file)} "
                    f"({tc.printable(reply.text)}): is that file this Tor's?"
                )
        return
    if "HASHEDPASSWORD" in info.methods:
        raise NetworkError(f"Tor at {where} wants a password: set {PASSWORD_VARIABLE}")
    offered = ",".join(sorted(info.methods))
    raise NetworkError(f"Tor at {where} offers no authentication p2pchat can use ({tc.printable(offered)})")


def _read_cookie(path: str) -> bytes:
    shown = tc.printable(path)  # the path comes from whatever answered on the control port
    try:
        with open(path, "rb") as file:
            cookie = file.read(tc.COOKIE_SIZE + 1)
    except PermissionError as exc:
        raise LocalError(f"cannot read Tor's cookie file {shown}: permission denied; {_group_hint(path)}") from exc
    except OSError as exc:
        raise LocalError(f"cannot read Tor's cookie file {shown}: {exc.strerror or exc}") from exc
    if len(cookie) != tc.COOKIE_SIZE:
        raise LocalError(f"{shown} is not a Tor cookie file (it should hold {tc.COOKIE_SIZE} bytes)")
    return cookie


def _safecookie(control: TorControl, cookie: bytes, cookie_file: str, client_nonce: bytes) -> None:
    server_hash, server_nonce = tc.parse_authchallenge(control.request(tc.authchallenge(client_nonce)).check())
    expected, client_hash = tc.safecookie_hashes(cookie, client_nonce, server_nonce)
    if not tc.server_hash_matches(expected, server_hash):
        # Tor does not know our cookie: a stale cookie file, or not the Tor we think. Send nothing more.
        raise NetworkError(
            f"Tor at {control.where} does not know the cookie in {tc.printable(cookie_file)}: "
            "the file is stale or belongs to another Tor"
        )
    reply = control.request(tc.authenticate(client_hash))
    if not reply.ok:
        raise NetworkError(f"Tor at {control.where} refused our SAFECOOKIE answer ({tc.printable(reply.text)})")


def socks_listeners(explicit: str | None = None) -> list[tuple[str, int]]:
    """The SOCKS ports the local Tor reports, or [] when no Tor control port can be used."""
    try:
        control = open_control(explicit, os.environ.get(PASSWORD_VARIABLE))
    except P2PChatError as exc:
        log.debug("cannot ask Tor for its SOCKS port: %s", exc)
        return []
    try:
        values = tc.parse_getinfo(control.request(tc.getinfo("net/listeners/socks")))
        return tc.parse_listeners(values.get("net/listeners/socks", ""))
    except P2PChatError as exc:
        log.debug("cannot ask Tor for its SOCKS port: %s", exc)
        return []
    finally:
        control.close()


# -- onion service -----------------------------------------------------------------


@dataclass(frozen=True)
class TorOptions:
    """``listen --tor``: where Tor is, and what kind of address to publish."""

    port: int = DEFAULT_ONION_PORT  # the onion's port: what the peer dials after ".onion:"
    control: str | None = None  # --tor-control
    ephemeral: bool = False  # a one-off address instead of the kept one
    publish_timeout: float = PUBLISH_TIMEOUT


def plan(address: str | None, port: int | None, control: str | None, ephemeral: bool) -> tuple[str, TorOptions]:
    """``listen [ADDRESS] --tor [PORT]``: where to listen (127.0.0.1 only: Tor connects there, nobody
    else may) and what to publish. The onion's port is PORT, else the listening port, else 9090.
    """
    if address is None:
        local = "0"
    else:
        host, colon, local = address.rpartition(":")
        if colon and host not in ("127.0.0.1", "localhost"):
            raise UsageError(f"with --tor p2pchat listens on 127.0.0.1 only: give just the port, not {address!r}")
    if not local.isdigit() or int(local) > 65535:
        raise UsageError(f"bad port {local!r}: expected a number from 0 to 65535")
    onion_port = port or int(local) or DEFAULT_ONION_PORT
    return f"127.0.0.1:{int(local)}", TorOptions(onion_port, control, ephemeral)


class OnionService:
    """A v3 onion service forwarding to our listener, for as long as this object is open.

    After :meth:`publish`, :attr:`address` is ``<id>.onion:PORT`` (for the invitation), and
    :attr:`published` says whether a directory has its descriptor (reachable from anywhere).
    """

    def __init__(self, options: TorOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.address: str | None = None
        self.published = False
        self._control: TorControl | None = None
        self._service_id: str | None = None

    def publish(self, local_port: int, directory: Path, identity: bytes) -> None:
        """Add the service (forwarding to 127.0.0.1:*local_port*) and wait until it is reachable.

        The kept key is in *directory*, for the identity whose public key is *identity*.
        """
        started = time.monotonic()
        control = self._control = open_control(self.options.control, os.environ.get(PASSWORD_VARIABLE))
        control.request(tc.setevents("HS_DESC")).check()  # before ADD_ONION: no event can be missed
        key = None if self.options.ephemeral else onionkey.load(directory, identity)
        virtual_port = self.options.port
        reply = control.request(
            tc.add_onion(key, virtual_port, ("127.0.0.1", local_port), keep_key=not self.options.ephemeral)
        )
        if reply.status == 550 and "collision" in reply.text.lower():
            raise NetworkError(
                "this onion address is already published on this Tor (another 'p2pchat listen --tor' "
                "still running?); stop that one, or use --tor-ephemeral for a one-off address"
            )
        try:
            added = tc.parse_add_onion(reply)
        except tc.ControlReplyError as exc:
            raise NetworkError(f"Tor refused to add the onion service: {exc}") from exc
        self._service_id = added.service_id
        self.address = f"{added.service_id}.onion:{virtual_port}"
        if added.private_key is not None and not self.options.ephemeral:
            onionkey.save(directory, identity, added.private_key)
        self._wait_published(control, added.service_id, started)

    def _wait_published(self, control: TorControl, service_id: str, started: float) -> None:
        try:
            self._wait_upload(control, service_id, started)
        finally:
            # Nobody reads this connection during the chat: no more events, so none pile up in Tor.
            with contextlib.suppress(P2PChatError):
                control.request(tc.setevents()).check()

    def _wait_upload(self, control: TorControl, service_id: str, started: float) -> None:
        conf = tc.parse_getconf(control.request(tc.getconf("DisableNetwork")))
        if conf.get("DisableNetwork") == "1":
            # Nothing will be uploaded until Tor may use the network: say so instead of waiting.
            self.say(
                f"onion service {self.address} is set up but not published: "
                "Tor's network is disabled (DisableNetwork 1)"
            )
            return
        self.say("publishing the onion service through Tor (usually a few seconds)")
        watch = tc.PublishWatch(service_id)
        deadline = started + self.options.publish_timeout
        while not watch.uploaded:
            event = control.next_event(deadline)
            if event is None:
                failures = f"; uploads failed: {', '.join(sorted(set(watch.failures)))}" if watch.failures else ""
                self.say(
                    f"Tor has not published the onion service after {self.options.publish_timeout:g} s "
                    f"(is Tor connected to the network? see its log{failures}); "
                    f"it will be reachable at {self.address} once published"
                )
                return
            watch.observe(event)
        self.published = True
        self.say(f"onion address: {self.address} (published in {time.monotonic() - started:.1f} s)")

    def close(self) -> None:
        """Remove the service now (closing the connection would too; this is quicker); never raises."""
        control, self._control = self._control, None
        if control is None:
            return
        if self._service_id is not None:
            with contextlib.suppress(P2PChatError):
                control.request(tc.del_onion(self._service_id), timeout=CONNECT_TIMEOUT)
        control.close()
