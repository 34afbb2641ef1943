"""One chat from start to end: identity, listen or dial, trust checks, an interface, a clean exit.

A chat outlives the connections under it (issue: links that drop): the interface talks to a
:class:`~p2pchat.link.conversation.Conversation`; a dialer redials after a loss, a listener keeps its
port open and takes back only the same peer key, each time with a full, fresh handshake.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import CLIENT, identity, reach
from .core import binary, filewire
from .core.messages import DONE, RESUME, Hello
from .core.messages import KEEPALIVE as KEEPALIVE_FEATURE
from .core.noise import public_bytes
from .core.session import Event, HandshakeComplete, Session, derive_psk
from .errors import (
    ExitCode,
    KeyMismatchError,
    LocalError,
    NetworkError,
    P2PChatError,
    PassphraseMismatch,
    RemoteProtocolError,
)
from .events import ChatEvent, Ending, LinkFailed, PeerLeft, Reconnecting
from .link import handshake, sockets
from .link.acceptor import Acceptor, Closed, Interrupted
from .link.connection import Connection
from .link.conversation import RESUME_FOR, Conversation
from .link.redial import retry
from .term.sanitize import clean_name, preview
from .term.say import status

if TYPE_CHECKING:  # Tor and SOCKS are imported only by the chats that use them: listen starts sooner
    from .link.tor import OnionService, TorOptions

PIPE_ACK_WAIT = 30.0  # seconds a pipe waits at stdin EOF for its last texts to be acknowledged
QUIT_ACK_WAIT = 3.0  # seconds /quit waits for the same before leaving
QUIET_WAIT = 0.5  # a wait shorter than this is not worth a line on stderr
KEEPALIVE = 15  # seconds of silence before a keepalive (--keepalive); a link is lost after 3 x the peer's
STOP_TIMEOUT = 5.0  # seconds to wait for the take-back thread beyond a handshake in progress
REDIAL_STOP_WAIT = 0.5  # seconds an ending chat gives a redial in progress to notice

# The extensions this version speaks. Half-close (done) only in pipe mode: there the end of stdin
# ends our input but not the chat; in the terminal, leaving (/quit) is the only way to stop typing.
FEATURES = (binary.FEATURE, KEEPALIVE_FEATURE, RESUME, filewire.FEATURE)


@dataclass(frozen=True)
class ChatOptions:
    listening: bool
    address: str
    name: str
    peer: str | None = None  # a pinned fingerprint
    passphrase: str | None = None
    wait: float | None = None  # seconds to wait for acks at the end; None: the mode's default
    handshake_timeout: float = handshake.HANDSHAKE_TIMEOUT
    keepalive: int = KEEPALIVE  # seconds of silence before we send a keepalive (--keepalive)
    resume_for: float = RESUME_FOR  # seconds to wait for the link to come back; 0: never (--resume-for)
    keep: bool = False  # listen: serve callers one after another (--keep)
    retry: float = 0.0  # dial: keep trying a refused or unreachable address this long (--retry)
    tor: TorOptions | None = None  # listen --tor: publish an onion service (listening on 127.0.0.1)
    proxy: str | None = None  # dial --proxy socks5://HOST:PORT
    tor_control: str | None = None  # --tor-control: where Tor's control port is
    also: tuple[str, ...] = ()  # dial: more addresses of the same peer, raced with the first (happy eyeballs)
    quiet: bool = False  # listen: no invitation
    upnp: bool = False  # listen: ask the router to forward the port (UPnP-IGD, else NAT-PMP)
    bell: bool = True  # the full-screen interface rings on incoming messages
    code: str | None = None  # --code: the short code (a fresh one when listening)
    send_files: tuple[Path, ...] = ()  # --send: offered once connected
    save_to: Path | None = None  # --save-to: where pipe mode accepts files (the terminal's /accept default)


def _interactive_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()  # full screen only on a terminal both ways


@dataclass
class _Setup:
    """What every chat of one run shares: our key, known peers, the checks on the peer's key."""

    options: ChatOptions
    key: X25519PrivateKey
    known: identity.KnownPeers
    psk: bytes | None
    pinned: str | None
    dialed: str | None  # the address as typed, normalised (dialer only)
    reached: list[str] = dataclasses.field(default_factory=list)  # the IP:port a direct dial reached
    via: list[str] = dataclasses.field(default_factory=list)  # "X.onion:9090 through Tor", for people

    def hello_for(self, conversation: Conversation) -> Callable[[], Hello]:
        def hello() -> Hello:
            resume = conversation.hello_fields()
            return Hello(
                self.options.name,
                CLIENT,
                FEATURES if _interactive_terminal() else (*FEATURES, DONE),
                keepalive=self.options.keepalive,
                conversation=resume.conversation,
                peer_conversation=resume.peer_conversation,
                received=resume.received,
            )

        return hello

    def verify(self, done: HandshakeComplete) -> None:
        # Runs before we send anything after learning the peer's key.
        seen = identity.fingerprint(done.remote_static)
        if done.remote_static == public_bytes(self.key):
            raise KeyMismatchError("the peer has your own key: you reached yourself, not a peer; refusing")
        if self.pinned is not None and seen != self.pinned:
            raise KeyMismatchError(f"the peer's key {seen} is not the one given with --peer ({self.pinned})")
        # The name as typed (normalised) and the IP:port it reached: a new key at either is the hard stop.
        changed = self.known.conflicts([self.dialed, *self.reached], done.remote_static) if self.dialed else []
        if changed:
            where = " and ".join(address for address, _ in changed)
            old = identity.fingerprint(changed[0][1].key)
            raise KeyMismatchError(
                f"the key at {where} has changed! remembered {old}, now {seen}; someone may be in the middle. "
                f"If you know why it changed, forget the old key with: p2pchat forget {' '.join(a for a, _ in changed)}"
            )

    def make_session(self, conversation: Conversation, code_psk: bytes | None = None) -> Session:
        return Session(
            initiator=not self.options.listening,
            static_key=self.key,
            hello=self.hello_for(conversation),
            psk=code_psk or self.psk,
        )


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
    if options.code is not None:
        # A short code works once: a lost link cannot be taken back with it, so such a chat ends at
        # the first loss (the keys are verified by then: the next chat pins them with --peer).
        options = dataclasses.replace(options, resume_for=0)
    address = sockets.parse_address(options.address, listening=options.listening)
    others: list[sockets.Address] = []
    if not options.listening:
        from .link import proxy

        address = proxy.check_destination(address)  # a .onion in one spelling: known_peers matches it
        others = [proxy.check_destination(sockets.parse_address(text, listening=False)) for text in options.also]
    pinned = identity.parse_fingerprint(options.peer) if options.peer else None
    directory = identity.home()
    key, created = identity.load_or_create_identity(directory)
    if created:
        status(f"created your identity key in {directory}")
    known = identity.KnownPeers(directory)
    psk = derive_psk(options.passphrase) if options.passphrase is not None else None
    dialed = None if options.listening else identity.address_key(address.host or "", address.port)
    setup = _Setup(options, key, known, psk, pinned, dialed)
    if not options.listening:
        return _one_chat(setup, _Dialing(setup, [address, *others]))
    mine = identity.fingerprint(public_bytes(key))
    listener = sockets.listen(address)
    try:
        status(f"listening on {sockets.listening_address(listener)}")
        # The port mapping and the onion service last as long as the listener: callers may come back.
        with reach.Reach(
            mine, quiet=options.quiet, passphrase=psk is not None, upnp=options.upnp, code=options.code
        ) as reachable:
            onions = []
            if onion is not None:
                onion.publish(listener.getsockname()[1], directory, public_bytes(key))
                onions = [onion.address] if onion.address else []
            reachable.listening(listener, onions)  # --upnp mapping, and the invitation
            listening = _Listening(setup, listener)
            try:
                while True:
                    status("waiting for a peer to dial in; Ctrl-C to stop")
                    code = _one_chat(setup, listening)
                    if not options.keep:
                        return code
                    status(f"the chat ended (exit {code}); waiting for the next caller")
            finally:
                listening.close()
    finally:
        listener.close()  # later callers are refused by the system


class _Listening:
    """How a listener gets its first connection and takes the peer back after a loss.

    One :class:`Acceptor` serves the whole run: concurrent handshakes with deadlines and
    throttling; during a chat a thread keeps asking it for the same peer's next connection.
    """

    def __init__(self, setup: _Setup, listener: socket.socket) -> None:
        self.setup = setup
        self.listener = listener
        self.conversation: Conversation | None = None  # the chat whose hello a caller's session carries
        self.stopping = threading.Event()
        self.taker: threading.Thread | None = None
        self.acceptor: Acceptor | None = None  # made by the first chat: callers wait in the backlog till then

    def _session(self, code_psk: bytes | None = None) -> Session:
        # The hello is made at the end of the handshake: it names the conversation current by then
        # (with --keep, a caller may knock while one chat ends and the next begins).
        def hello() -> Hello:
            assert self.conversation is not None
            return self.setup.hello_for(self.conversation)()

        return Session(initiator=False, static_key=self.setup.key, hello=hello, psk=code_psk or self.setup.psk)

    def _rejected(self, caller: str, error: P2PChatError) -> None:
        if self.setup.options.code is not None and isinstance(error, PassphraseMismatch):
            from .link import codes

            error = codes.CodeMismatch("the short code did not match")  # the psk is the code's
        status(f"dropped a caller from {caller}: {error}")

    def _acceptor(self) -> Acceptor:
        if self.acceptor is None:
            options = self.setup.options
            gate = None
            if options.code is not None:
                from .link import codes

                gate = codes.CodeGate(options.code, self._session)
                port = self.listener.getsockname()[1]
                status(
                    f"short code {options.code}: your peer adds --code {options.code} to the dial command "
                    f"(p2pchat dial HOST:{port} --code {options.code}); it works once"
                )
            self.acceptor = Acceptor(
                self.listener,
                self._session,
                self._rejected,
                timeout=options.handshake_timeout,
                gate=gate,
                admit=self.setup.verify,
            )
        return self.acceptor

    def first(self, conversation: Conversation) -> tuple[socket.socket, Session, handshake.Peer, list[Event]]:
        self.conversation = conversation
        accepted = self._acceptor().next(self.setup.verify)
        return accepted.sock, accepted.session, accepted.peer, accepted.early

    def start(self, conversation: Conversation, peer: handshake.Peer) -> None:
        def same_key(done: HandshakeComplete) -> None:
            if done.remote_static != peer.remote_static:
                raise KeyMismatchError("a chat with another peer is in progress")

        def take_back() -> None:
            while not self.stopping.is_set():
                try:
                    accepted = self._acceptor().next(same_key)
                except (Closed, Interrupted):
                    return
                except P2PChatError as exc:  # the listening socket failed: nobody can call back now
                    status(f"no longer taking callers: {exc}")
                    return
                if self.stopping.is_set():  # the chat ended while this caller was let in
                    handshake.say_bye_quietly(accepted.sock, accepted.session)
                    accepted.sock.close()
                    return
                conversation.adopt(_connection(self.setup, accepted.sock, accepted.session), accepted.early)

        self.stopping.clear()
        conversation.on_link_down = conversation.waiting_for_peer
        self.taker = threading.Thread(target=take_back, name="p2pchat-takeback", daemon=True)
        self.taker.start()

    def stop(self) -> None:
        """The chat is over: stop taking its peer back (the acceptor stays, for --keep)."""
        self.stopping.set()
        if self.acceptor is not None:
            self.acceptor.interrupt()
        if self.taker is not None:
            self.taker.join(self.setup.options.handshake_timeout + STOP_TIMEOUT)
            self.taker = None
        if self.acceptor is not None:
            self.acceptor.clear_interrupt()

    def close(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()


class _Dialing:
    """How a dialer gets its first connection (retrying with --retry) and redials after a loss."""

    def __init__(self, setup: _Setup, addresses: list[sockets.Address]) -> None:
        self.setup = setup
        self.addresses = addresses
        self.stopping = threading.Event()
        self.redialer: threading.Thread | None = None

    def _dial(self) -> socket.socket:
        from .link import proxy

        options = self.setup.options
        addresses = self.addresses
        if options.proxy is not None or any(proxy.needs_proxy(a, None) for a in addresses):
            failure: P2PChatError | None = None
            for one in addresses:  # through a proxy, in the order given: the proxy does the connecting
                try:
                    sock = proxy.dial(one, options.proxy, options.tor_control)
                except P2PChatError as exc:
                    failure = exc
                    continue
                if proxy.needs_proxy(one, options.proxy):
                    self.setup.via[:] = [proxy.describe(one, options.proxy)]  # the socket's peer is the proxy
                else:
                    self.setup.reached[:] = [_reached(sock)]
                return sock
            assert failure is not None
            raise failure
        sock = sockets.dial_first(addresses)
        # The IP:port actually reached joins the key check (through a proxy it would be the proxy's).
        self.setup.reached[:] = [_reached(sock)]
        return sock

    def _connect(
        self, conversation: Conversation, verify: Callable[[HandshakeComplete], None]
    ) -> tuple[socket.socket, Session, handshake.Peer, list[Event]]:
        code = self.setup.options.code
        timeout = self.setup.options.handshake_timeout
        session = self.setup.make_session(conversation)  # before dialing: the ephemeral key is ready
        sock = self._dial()  # directly (happy eyeballs), through --proxy, or through Tor for a .onion
        try:
            if code is not None:
                from .core.pake import CodeExchange
                from .link import codes

                code_psk = codes.exchange(sock, CodeExchange(code, dialer=True), time.monotonic() + timeout)
                session = self.setup.make_session(conversation, code_psk)
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

    def first(self, conversation: Conversation) -> tuple[socket.socket, Session, handshake.Peer, list[Event]]:
        def waiting(attempt: int, delay: float, error: NetworkError) -> None:
            if attempt == 1:
                status(f"{error}; trying again for up to {self.setup.options.retry:g} s")

        return retry(lambda: self._connect(conversation, self.setup.verify), self.setup.options.retry, waiting)

    def start(self, conversation: Conversation, peer: handshake.Peer) -> None:
        if self.setup.options.code is not None:
            return  # a short code works once: a lost link is not redialed with it (the keys are verified now)

        def same_key(done: HandshakeComplete) -> None:
            self.setup.verify(done)
            if done.remote_static != peer.remote_static:
                raise KeyMismatchError(
                    f"a different key answered ({identity.fingerprint(done.remote_static)}); "
                    "someone may be in the middle"
                )

        def redial() -> None:
            def waiting(attempt: int, delay: float, error: NetworkError) -> None:
                conversation.report(Reconnecting(attempt + 1, delay))

            try:
                conversation.report(Reconnecting(1, 0.0))
                sock, session, _, early = retry(
                    lambda: self._connect(conversation, same_key), self.setup.options.resume_for, waiting, self.stopping
                )
            except P2PChatError as exc:
                if not isinstance(exc, NetworkError):
                    conversation.fail(exc)  # a wrong key: a security failure, not something to wait out
                return  # a network failure: the resume deadline ends the conversation
            conversation.adopt(_connection(self.setup, sock, session), early)

        def link_down() -> None:
            if self.stopping.is_set():
                return
            self.redialer = threading.Thread(target=redial, name="p2pchat-redial", daemon=True)
            self.redialer.start()

        conversation.on_link_down = link_down

    def stop(self) -> None:
        self.stopping.set()
        if self.redialer is not None:
            # A redial blocked in connect() on a dead link cannot be woken; it is a daemon thread that
            # holds nothing of the chat's, so the chat ends without waiting out its connect deadline.
            self.redialer.join(REDIAL_STOP_WAIT)


def _reached(sock: socket.socket) -> str:
    return identity.parse_address_key(sockets.peer_name(sock)) or sockets.peer_name(sock)


def _connection(setup: _Setup, sock: socket.socket, session: Session) -> Connection:
    return Connection(sock, session, setup.options.keepalive)


def _one_chat(setup: _Setup, role: _Listening | _Dialing) -> int:
    options = setup.options
    interactive = _interactive_terminal()
    wait = (QUIT_ACK_WAIT if interactive else PIPE_ACK_WAIT) if options.wait is None else options.wait
    conversation = Conversation(resume_for=options.resume_for, ack_wait=wait)
    sock, session, peer, early = role.first(conversation)
    conversation.adopt(_connection(setup, sock, session), early)  # from here every way out says bye
    try:
        if options.code is not None:
            setup.known.remember(peer.remote_static, peer.hello.name, None).verified = True  # the code vouched
            status(f"the short code matched: {clean_name(peer.hello.name)}'s key is saved as verified")
        if setup.via:
            peer = dataclasses.replace(peer, address=setup.via[0])  # not the proxy's address
        intro, trust = _introduce(peer, setup.known, setup.dialed, options.listening, interactive, setup.reached)
        role.start(conversation, peer)
        if interactive:
            me = (options.name, public_bytes(setup.key))
            return _interactive(conversation, peer, intro, trust, me, setup.known, wait, options)
        return _pipe(conversation, peer, intro, wait, options)
    finally:
        role.stop()
        conversation.close(say_bye=True)  # a no-op after a normal end; on any other way out, bye


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
    conversation: Conversation,
    peer: handshake.Peer,
    intro: list[tuple[str, bool]],
    trust: list[str],
    me: tuple[str, bytes],  # our name and public key
    known: identity.KnownPeers,
    wait: float,
    options: ChatOptions,
) -> int:
    from .cli import HANDLER
    from .events import FileNotice
    from .term.filecommands import FileCommands, complete_path
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

    files = FileCommands(
        them.name,
        notify=lambda line, warning: ui.on_event(FileNotice(line, warning)),
        progress=lambda line: ui.on_event(FileNotice("")),  # redraws the status bar
        files_in_use=lambda: conversation.files_in_use,
        directory=options.save_to,
    )
    conversation.use_files(files.engine)
    ui = ChatUI(
        conversation,
        myself,
        them,
        trust=lambda: trust[0],
        commands={"/verify": verify_command, **files.table()},
        bell=options.bell,
        completers={"/send": complete_path},
        activity=lambda: files.activity,
    )
    for text, warning in intro:
        ui.system(text, warning)
    if not conversation.files_in_use:
        ui.system(f"{them.name}'s p2pchat does not do file transfer: /send is off")
    for path in options.send_files:
        for line in files.send(str(path)):
            ui.system(line)
    HANDLER.hold_records()  # the screen is the interface's now: -v details wait until it closes
    try:
        conversation.start(ui.on_event)
        ending = ui.run()
    finally:
        HANDLER.release_records()
    if ending is Ending.QUIT:
        settle(conversation, wait, half_close=False)
    exit_code = finish(conversation, ending, lambda: ui.ended, them.name)
    unfinished = files.engine.close()
    for line in unfinished:  # what did not finish: said, never silent
        status(line)
    failed = unfinished or files.failed  # a file sent or accepted that did not arrive
    return ExitCode.NETWORK if failed and exit_code == ExitCode.OK else exit_code


def _pipe(
    conversation: Conversation, peer: handshake.Peer, intro: list[tuple[str, bool]], wait: float, options: ChatOptions
) -> int:
    from .term.filepipe import FilePipe
    from .term.pipe import Pipe

    for text, _ in intro:
        status(text)
    name = clean_name(peer.hello.name)
    pipe = Pipe(name)
    files = FilePipe(name, options.save_to)
    conversation.use_files(files.engine)

    def transfers_over() -> None:
        files.wait(gone=lambda: conversation.is_ended, connected=lambda: conversation.connected)

    try:
        try:
            conversation.start(pipe.on_event)
            files.offer(list(options.send_files), conversation.files_in_use)
            ending = Ending.QUIT if pipe.run(conversation) else Ending.LINK_ENDED
            both_done = False
            if ending is Ending.QUIT:
                # Input ended; the transfers go on. "done" goes only after ours are over (no more from us).
                transfers_over()
                both_done = settle(conversation, wait, half_close=True)
                if not conversation.half_close and options.save_to is not None and conversation.files_in_use:
                    # A peer without half-close (the terminal) decides when it has sent everything: stay
                    # until it leaves, receiving what it sends.
                    conversation.wait_finished()
                transfers_over()  # an offer that came while we settled
        except KeyboardInterrupt:
            ending, both_done = Ending.INTERRUPTED, False
        code = finish(conversation, ending, lambda: pipe.ended, name, both_done)
        files.close()
        return ExitCode.NETWORK if files.failed and code == ExitCode.OK else code
    finally:
        conversation.close(say_bye=True)  # the threads must end before the wake-up pipe closes
        pipe.close()


def settle(conversation: Conversation, wait: float, half_close: bool) -> bool:
    """Our side is done: wait up to *wait* for acks; with *half_close*, then until the peer is done too.

    With half-close (extension done) the peer learns that our input ended, and we keep
    receiving and acknowledging until its input ends as well: a message it sends is never
    lost because we left first.
    """
    half = half_close and conversation.input_ended()
    quiet = min(wait, QUIET_WAIT)
    if not conversation.wait_acknowledged(quiet) and conversation.ended is None:
        waiting = conversation.unacknowledged_count()
        status(f"waiting up to {wait - quiet:g} s more for the peer to acknowledge {waiting} message(s)")
        conversation.wait_acknowledged(wait - quiet)
    return bool(half and not conversation.unacknowledged_count() and conversation.wait_finished())


def finish(
    conversation: Conversation,
    ending: Ending,
    ended: Callable[[], ChatEvent | None],
    peer: str,
    both_done: bool = False,  # the peer's input ended too (half-close): it has left as well
) -> int:
    """Close the conversation and report how the chat ended; return the exit code."""
    conversation.close(say_bye=ending is not Ending.LINK_ENDED)
    event = ended()
    code: int = ExitCode.INTERRUPTED if ending is Ending.INTERRUPTED else ExitCode.OK
    if isinstance(event, LinkFailed):
        status(str(event.error))
        code = event.error.exit_code
    elif isinstance(event, PeerLeft) or both_done:
        status(f"{peer} left the chat")
    undelivered = conversation.unacknowledged()
    for text in undelivered.values():
        status(f"not delivered: {preview(text)}")
    if (undelivered or conversation.lost) and code == ExitCode.OK:
        code = ExitCode.NETWORK
    return code
