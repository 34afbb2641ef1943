"""One chat from start to end: identity, listen or dial, trust checks, an interface, a clean exit."""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import CLIENT, identity, reach
from .core import binary
from .core.messages import Hello
from .core.noise import public_bytes
from .core.session import Event, HandshakeComplete, Session, derive_psk
from .errors import ExitCode, KeyMismatchError, LocalError, P2PChatError, PassphraseMismatch, RemoteProtocolError
from .events import ChatEvent, Ending, LinkFailed, PeerLeft
from .link import connection, handshake, sockets
from .link.acceptor import Acceptor
from .term.sanitize import clean_name, preview

if TYPE_CHECKING:  # Tor and SOCKS are imported only by the chats that use them: listen starts sooner
    from .link.tor import OnionService, TorOptions

PIPE_ACK_WAIT = 30.0  # seconds a pipe waits at stdin EOF for its last texts to be acknowledged
QUIT_ACK_WAIT = 3.0  # seconds /quit waits for the same before leaving
QUIET_WAIT = 0.5  # a wait shorter than this is not worth a line on stderr
FEATURES = (binary.FEATURE,)  # the protocol extensions this version announces in hello


@dataclass(frozen=True)
class ChatOptions:
    listening: bool
    address: str
    name: str
    peer: str | None = None  # a pinned fingerprint
    passphrase: str | None = None
    wait: float | None = None  # seconds to wait for acks at the end; None: the mode's default
    handshake_timeout: float = handshake.HANDSHAKE_TIMEOUT
    tor: TorOptions | None = None  # listen --tor: publish an onion service (listening on 127.0.0.1)
    proxy: str | None = None  # dial --proxy socks5://HOST:PORT
    tor_control: str | None = None  # --tor-control: where Tor's control port is
    also: tuple[str, ...] = ()  # dial: more addresses of the same peer, raced with the first (happy eyeballs)
    quiet: bool = False  # listen: no invitation
    upnp: bool = False  # listen: ask the router to forward the port (UPnP-IGD, else NAT-PMP)
    bell: bool = True  # the full-screen interface rings on incoming messages
    code: str | None = None  # --code: the short code (a fresh one when listening)


def status(line: str) -> None:
    print(f"p2pchat: {line}", file=sys.stderr, flush=True)


def chat(options: ChatOptions) -> int:
    # The onion service lives as long as the chat: Tor removes it when its control connection closes.
    onion = None
    if options.tor is not None and options.listening:
        from .link.tor import OnionService

        onion = OnionService(options.tor, status)
    try:
        return _chat(options, onion)
    finally:
        if onion is not None:
            onion.close()


def _chat(options: ChatOptions, onion: OnionService | None) -> int:
    address = sockets.parse_address(options.address, listening=options.listening)
    if not options.listening:
        from .link import proxy

        address = proxy.check_destination(address)  # a .onion in one spelling: known_peers matches it
    pinned = identity.parse_fingerprint(options.peer) if options.peer else None
    directory = identity.home()
    key, created = identity.load_or_create_identity(directory)
    if created:
        status(f"created your identity key in {directory}")
    known = identity.KnownPeers(directory)
    psk = derive_psk(options.passphrase) if options.passphrase is not None else None
    hello = Hello(options.name, CLIENT, FEATURES)
    dialed = None if options.listening else identity.address_key(address.host or "", address.port)
    reached: list[str] = []  # where a dial really went (IP:port), filled in once connected

    def make_session(code_psk: bytes | None = None) -> Session:
        return Session(initiator=not options.listening, static_key=key, hello=hello, psk=code_psk or psk)

    def verify(done: HandshakeComplete) -> None:
        # Runs before we send anything after learning the peer's key.
        seen = identity.fingerprint(done.remote_static)
        if done.remote_static == public_bytes(key):
            raise KeyMismatchError("the peer has your own key: you reached yourself, not a peer; refusing")
        if pinned is not None and seen != pinned:
            raise KeyMismatchError(f"the peer's key {seen} is not the one given with --peer ({pinned})")
        # The name as typed (normalised) and the IP:port it reached: a new key at either is the hard stop.
        changed = known.conflicts([dialed, *reached], done.remote_static) if dialed else []
        if changed:
            where = " and ".join(address for address, _ in changed)
            old = identity.fingerprint(changed[0][1].key)
            raise KeyMismatchError(
                f"the key at {where} has changed! remembered {old}, now {seen}; someone may be in the middle. "
                f"If you know why it changed, forget the old key with: p2pchat forget {' '.join(a for a, _ in changed)}"
            )

    def published(listener: socket.socket, reachable: reach.Reach) -> None:
        onions = []
        if onion is not None:
            onion.publish(listener.getsockname()[1], directory, public_bytes(key))
            onions = [onion.address] if onion.address else []
        reachable.listening(listener, onions)  # --upnp mapping, and the invitation

    via: list[str] = []  # where a proxied dial went, for people: "X.onion:9090 through Tor"

    def dial(addresses: list[sockets.Address]) -> socket.socket:
        from .link import proxy

        if options.proxy is not None or any(proxy.needs_proxy(a, None) for a in addresses):
            failure: P2PChatError | None = None
            for one in addresses:  # through a proxy, in the order given: the proxy does the connecting
                try:
                    sock = proxy.dial(one, options.proxy, options.tor_control)
                except P2PChatError as exc:
                    failure = exc
                    continue
                if proxy.needs_proxy(one, options.proxy):
                    via.append(proxy.describe(one, options.proxy))  # the socket's peer is the proxy
                else:
                    reached.append(identity.parse_address_key(sockets.peer_name(sock)) or sockets.peer_name(sock))
                return sock
            assert failure is not None
            raise failure
        sock = sockets.dial_first(addresses)
        # The IP:port actually reached joins the key check (through a proxy it would be the proxy's).
        reached.append(identity.parse_address_key(sockets.peer_name(sock)) or sockets.peer_name(sock))
        return sock

    others = [proxy.check_destination(sockets.parse_address(text, listening=False)) for text in options.also]
    mine = identity.fingerprint(public_bytes(key))
    with reach.Reach(mine, quiet=options.quiet, passphrase=psk is not None, upnp=options.upnp) as reachable:
        sock, session, peer, early = _connect(
            options.listening,
            [address, *others],
            make_session,
            verify,
            options.handshake_timeout,
            lambda listener: published(listener, reachable),
            dial,
            options.code,
        )
    if options.code is not None:
        known.remember(peer.remote_static, peer.hello.name, None).verified = True  # the code vouched for the key
        status(f"the short code matched: {clean_name(peer.hello.name)}'s key is saved as verified")
    if via:
        peer = dataclasses.replace(peer, address=via[0])  # not the proxy's address
    link = connection.Link(sock, session)
    try:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()  # full screen only on a terminal both ways
        intro, trust = _introduce(peer, known, dialed, options.listening, interactive, reached)
        if interactive:
            wait = QUIT_ACK_WAIT if options.wait is None else options.wait
            me = (options.name, public_bytes(key))
            return _interactive(link, early, peer, intro, trust, me, known, wait, options.bell)
        return _pipe(link, early, peer, intro, PIPE_ACK_WAIT if options.wait is None else options.wait)
    finally:
        link.close(say_bye=True)  # a no-op after a normal end; on any other way out, bye and stop the threads


def _connect(
    listening: bool,
    addresses: list[sockets.Address],
    make_session: Callable[..., Session],  # (psk from a short code, or nothing)
    verify: Callable[[HandshakeComplete], None],
    timeout: float,
    on_listening: Callable[[socket.socket], None],
    dial: Callable[[list[sockets.Address]], socket.socket],
    code: str | None = None,
) -> tuple[socket.socket, Session, handshake.Peer, list[Event]]:
    if listening:
        listener = sockets.listen(addresses[0])
        try:
            status(f"listening on {sockets.listening_address(listener)}")
            on_listening(listener)  # --tor: publish the onion service; --upnp; the invitation
            status("waiting for a peer to dial in; Ctrl-C to stop")

            def rejected(caller: str, error: P2PChatError) -> None:
                if code is not None and isinstance(error, PassphraseMismatch):
                    error = codes.CodeMismatch("the short code did not match")  # the psk is the code's
                status(f"dropped a caller from {caller}: {error}")

            gate = None
            if code is not None:
                from .link import codes

                gate = codes.CodeGate(code, make_session)
                port = listener.getsockname()[1]
                status(
                    f"short code {code}: your peer adds --code {code} to the dial command "
                    f"(p2pchat dial HOST:{port} --code {code}); it works once"
                )
            acceptor = Acceptor(listener, make_session, rejected, timeout=timeout, gate=gate, admit=verify)
            try:
                return acceptor.next()
            finally:
                acceptor.close()
        finally:
            listener.close()  # one chat at a time: later callers are refused by the system
    session = make_session()  # before dialing: the ephemeral key is ready once connected
    sock = dial(addresses)  # directly (happy eyeballs), through --proxy, or through Tor for a .onion
    try:
        if code is not None:
            from .core.pake import CodeExchange
            from .link import codes

            psk = codes.exchange(sock, CodeExchange(code, dialer=True), time.monotonic() + timeout)
            session = make_session(psk)
        try:
            peer, early = handshake.handshake(sock, session, verify, timeout)
        except RemoteProtocolError as exc:
            if code is not None:  # with a code-bound psk, a failed handshake is a code that differs
                raise codes.CodeMismatch() from exc
            raise
    except BaseException:
        handshake.say_bye_quietly(sock, session)
        sock.close()
        raise
    return sock, session, peer, early


def _introduce(
    peer: handshake.Peer,
    known: identity.KnownPeers,
    dialed: str | None,
    listening: bool,
    interactive: bool,
    reached: list[str],
) -> tuple[list[tuple[str, bool]], list[str]]:
    """Lines to show on connect (text, is_warning), and the peer's trust state in a box."""
    name = clean_name(peer.hello.name)
    seen = identity.fingerprint(peer.remote_static)
    record = known.get(peer.remote_static)
    trust = ["verified" if record and record.verified else "unverified" if record else "new"]
    lines = [(f"{name} joined from {peer.address}" if listening else f"connected to {name} at {peer.address}", False)]
    code = identity.safety_code(peer.handshake_hash)
    if trust[0] == "new":
        lines.append((f"first contact with {name}, key {seen}", False))
        then = "then /verify confirm" if interactive else f"or pin the key: --peer '{seen}'"
        lines.append((f"safety code {code}: compare it with {name} by voice, {then}", False))
    elif trust[0] == "unverified":
        lines.append((f"{name} is known but not verified; safety code {code}", False))
    else:
        lines.append((f"{name} is verified; safety code {code}", False))
    if peer.hello.name:
        for other in known.keys_for_name(peer.hello.name):
            if other.key != peer.remote_static:
                lines.append(
                    (
                        f"WARNING: the name {name} was used before by a different key "
                        f"({identity.fingerprint(other.key)}): this may not be who you think",
                        True,
                    )
                )
    known.remember(peer.remote_static, peer.hello.name, dialed, *(reached if dialed else ()))
    known.save()
    return lines, trust


def _interactive(
    link: connection.Link,
    early: list[Event],
    peer: handshake.Peer,
    intro: list[tuple[str, bool]],
    trust: list[str],
    me: tuple[str, bytes],  # our name and public key
    known: identity.KnownPeers,
    wait: float,
    bell: bool = True,
) -> int:
    from .cli import HANDLER
    from .term.ui import COLOURS, ChatUI, Person

    myself = Person(clean_name(me[0]), identity.colour_index(me[1], len(COLOURS)))
    them = Person(clean_name(peer.hello.name), identity.colour_index(peer.remote_static, len(COLOURS)))
    code = identity.safety_code(peer.handshake_hash)

    def verify_command(argument: str) -> list[str]:
        if argument == "confirm":
            record = known.remember(peer.remote_static, peer.hello.name, None)
            record.verified = True
            try:
                known.save()
            except LocalError as exc:
                return [f"could not save: {exc}"]
            trust[0] = "verified"
            return [f"{them.name} is now verified: later chats with this key will say so"]
        return [
            f"safety code {code}",
            f"{them.name}'s key {identity.fingerprint(peer.remote_static)}",
            "if the safety code is the same on both screens, type /verify confirm",
        ]

    ui = ChatUI(link, myself, them, trust=lambda: trust[0], commands={"/verify": verify_command}, bell=bell)
    for text, warning in intro:
        ui.system(text, warning)
    HANDLER.hold_records()  # the screen is the interface's now: -v details wait until it closes
    try:
        link.start(ui.on_event, early)
        ending = ui.run()
    finally:
        HANDLER.release_records()
    return finish(link, ending, lambda: ui.ended, them.name, wait)


def _pipe(
    link: connection.Link,
    early: list[Event],
    peer: handshake.Peer,
    intro: list[tuple[str, bool]],
    wait: float,
) -> int:
    from .term.pipe import Pipe

    for text, _ in intro:
        status(text)
    name = clean_name(peer.hello.name)
    pipe = Pipe(name)
    try:
        try:
            link.start(pipe.on_event, early)
            ending = Ending.QUIT if pipe.run(link) else Ending.LINK_ENDED
        except KeyboardInterrupt:
            ending = Ending.INTERRUPTED
        return finish(link, ending, lambda: pipe.ended, name, wait)
    finally:
        link.close(say_bye=True)  # the threads must end before the wake-up pipe closes
        pipe.close()


def finish(link: connection.Link, ending: Ending, ended: Callable[[], ChatEvent | None], peer: str, wait: float) -> int:
    """Close the link and report how the chat ended; return the exit code."""
    if ending is Ending.QUIT:
        quiet = min(wait, QUIET_WAIT)
        if not link.wait_acknowledged(quiet) and not link.ended:
            waiting = len(link.unacknowledged())
            status(f"waiting up to {wait - quiet:g} s more for the peer to acknowledge {waiting} message(s)")
            link.wait_acknowledged(wait - quiet)
    link.close(say_bye=ending is not Ending.LINK_ENDED)
    event = ended()
    code: int = ExitCode.INTERRUPTED if ending is Ending.INTERRUPTED else ExitCode.OK
    if isinstance(event, LinkFailed):
        status(str(event.error))
        code = event.error.exit_code
    elif isinstance(event, PeerLeft):
        status(f"{peer} left the chat")
    undelivered = link.unacknowledged()
    for text in undelivered.values():
        status(f"not delivered: {preview(text)}")
    if undelivered and code == ExitCode.OK:
        code = ExitCode.NETWORK
    return code
