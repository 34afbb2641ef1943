"""The command line: parse arguments, wire the pieces together, map every failure to one line.

Heavy modules (cryptography, prompt_toolkit) are imported inside the commands,
so ``--help`` and ``--version`` start as fast as Python itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .errors import ExitCode, P2PChatError, UsageError

if TYPE_CHECKING:
    from .chat import ChatOptions
    from .identity import KnownPeer
    from .link.tor import TorOptions

log = logging.getLogger("p2pchat")

EPILOG = """\
examples:
  p2pchat listen 9090                 wait for a peer on port 9090, every interface
  p2pchat listen --upnp 9090          the same, and ask the router to forward port 9090
  p2pchat dial example.org:9090       call a peer
  p2pchat dial [2001:db8::1]:9090     call a peer over IPv6
  p2pchat dial [2001:db8::1]:9090 192.0.2.7:9090   several addresses: the first to answer wins
  p2pchat id                          show your fingerprint, to give to your peer
  p2pchat listen 9090 --code          prints a one-time code, e.g. 417-unclamped-retiree, for:
  p2pchat dial host:9090 --code 417-unclamped-retiree   first contact, verified by the code
  p2pchat peers                       the peers you know: names, fingerprints, trust
  p2pchat verify bob                  mark bob verified, after comparing fingerprints by voice
  p2pchat forget host:9090            forget who was at an address (or: forget NAME|FINGERPRINT)
  p2pchat dial host:9090 --peer '12345 67890 ...'   refuse any key but this one
  p2pchat listen --tor                publish an onion service through a running Tor
  p2pchat dial xyz...onion:9090       call an onion through Tor (its SOCKS port)
  p2pchat dial host:9090 --proxy socks5://127.0.0.1:1080   dial through a SOCKS5 proxy
  echo hello | p2pchat dial host:9090 pipe mode: stdin lines out, peer lines to stdout

exit codes: 0 clean end, 1 network failure or undelivered messages, 2 usage error,
3 security failure, 4 local file problem, 130 interrupted (Ctrl-C)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block.
        self.exit(ExitCode.USAGE, f"p2pchat: {message} (see p2pchat --help)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="details on stderr")
    parser = _Parser(
        prog="p2pchat",
        description="Encrypted chat for two people, peer to peer: no server, no account.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="details on stderr")
    parser.add_argument("--version", action="version", version=f"p2pchat {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    chat = _Parser(add_help=False, parents=[common])
    chat.add_argument("--name", help="the name your peer sees (default: your login name)")
    chat.add_argument("--peer", metavar="FINGERPRINT", help="abort unless the peer's key has this fingerprint")
    chat.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="at the end, how long to wait for the peer to acknowledge what you sent (pipe: 30, chat: 3)",
    )
    chat.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a peer gets to complete the handshake (default: 10)",
    )
    chat.add_argument(
        "--passphrase",
        action="store_true",
        help="ask for a passphrase shared with the peer (or set P2PCHAT_PASSPHRASE)",
    )
    chat.add_argument(
        "--send",
        action="append",
        default=[],
        metavar="FILE",
        help="offer FILE to the peer once connected (repeatable); the exit status says whether every file arrived",
    )
    chat.add_argument(
        "--save-to",
        metavar="DIR",
        help="pipe mode: accept the peer's files into DIR (without it, offers are declined); "
        "in the terminal, /accept's default directory",
    )
    chat.add_argument(
        "--keepalive",
        type=_keepalive,
        default=15,
        metavar="SECONDS",
        help="send a keepalive after this long with nothing to say; a peer silent for 3 times its own "
        "interval is lost (default: 15)",
    )
    chat.add_argument(
        "--resume-for",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="after a lost link, how long to wait for it to come back before giving up; 0: never resume (default: 600)",
    )
    chat.add_argument(
        "--tor-control",
        metavar="ADDRESS",
        help="Tor's control port, HOST:PORT or a unix socket path "
        "(default: $TOR_CONTROL_PORT, else /run/tor/control, 127.0.0.1:9051, 127.0.0.1:9151)",
    )
    chat.add_argument("--no-bell", action="store_true", help="no terminal bell when a message arrives")
    listen = commands.add_parser("listen", parents=[chat], help="wait for a peer to dial in")
    listen.add_argument(
        "address", nargs="?", metavar="[HOST:]PORT", help="port to listen on (0 picks a free one; optional with --tor)"
    )
    listen.add_argument(
        "--tor",
        nargs="?",
        const=0,
        type=_port,
        metavar="PORT",
        help="publish an onion service through a running Tor, on PORT (default: the listening port, else 9090); "
        "listens on 127.0.0.1 only",
    )
    listen.add_argument(
        "--tor-ephemeral", action="store_true", help="with --tor: a one-off onion address, not the kept one"
    )
    listen.add_argument(
        "--keep", action="store_true", help="after a chat ends, wait for the next caller (like ncat -lk)"
    )
    listen.add_argument("--quiet", action="store_true", help="do not print the invitation (the command for your peer)")
    listen.add_argument(
        "--upnp",
        action="store_true",
        help="ask the router to forward the port while listening (UPnP-IGD, else NAT-PMP)",
    )
    dial = commands.add_parser("dial", parents=[chat], help="call a listening peer")
    dial.add_argument(
        "address", metavar="HOST:PORT", nargs="+", help="the peer's address; with several, the first to answer wins"
    )
    listen.add_argument(
        "--code",
        action="store_true",
        help="print a one-time short code for your peer to dial with: no fingerprint to compare",
    )
    dial.add_argument("--code", metavar="CODE", help="the short code the listener printed (listen --code)")
    dial.add_argument(
        "--proxy",
        metavar="URL",
        help="dial through a SOCKS5 proxy, socks5://HOST:PORT; names are resolved by the proxy "
        "(.onion addresses go through Tor's SOCKS port without it)",
    )
    dial.add_argument(
        "--retry",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="if the peer is not listening yet (refused, unreachable), keep trying this long",
    )
    commands.add_parser("id", parents=[common], help="print your fingerprint")
    commands.add_parser("peers", parents=[common], help="list the peers you know")
    forget = commands.add_parser("forget", parents=[common], help="forget a remembered address, or a peer")
    forget.add_argument("targets", nargs="+", metavar="NAME|FINGERPRINT|HOST:PORT")
    verify = commands.add_parser("verify", parents=[common], help="mark a peer verified (compare fingerprints first)")
    verify.add_argument("target", metavar="NAME|FINGERPRINT")
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: expected a number from 1 to 65535")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _keepalive(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 3600:
        raise argparse.ArgumentTypeError(f"keepalive must be a whole number of seconds from 1 to 3600: {text!r}")
    return int(text)


class _HoldingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr, except while the full-screen interface owns the terminal."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.held: list[logging.LogRecord] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is not None:
            self.held.append(record)
        else:
            super().emit(record)

    def hold_records(self) -> None:
        self.held = []

    def release_records(self) -> None:
        held, self.held = self.held or [], None
        for record in held:
            super().emit(record)


HANDLER = _HoldingHandler()


def run(argv: Sequence[str] | None = None) -> int:
    """Run p2pchat; return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    verbose = bool(getattr(args, "verbose", False))
    HANDLER.setFormatter(logging.Formatter("p2pchat: %(message)s"))
    log.addHandler(HANDLER)
    log.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        if args.command is None:
            parser.print_help(sys.stderr)
            return ExitCode.USAGE
        if args.command == "id":
            return _id()
        if args.command == "forget":
            return _forget(args.targets)
        if args.command == "peers":
            return _peers()
        if args.command == "verify":
            return _verify(args.target)
        from .chat import chat

        # SIGTERM ends a chat as Ctrl-C does: bye to the peer, undelivered messages listed, exit 130.
        signal.signal(signal.SIGTERM, _interrupt)
        # So does SIGHUP (the terminal closed): the way out removes a router's port mapping too.
        signal.signal(signal.SIGHUP, _interrupt)
        return chat(_options(args))
    except P2PChatError as exc:
        log.debug("details:", exc_info=exc)
        sys.stderr.write(f"p2pchat: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("p2pchat: interrupted\n")
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug: still one line, with the details behind -v
        log.debug("details:", exc_info=exc)
        # The type only: an exception's text can quote data (a file's contents, a peer's bytes).
        sys.stderr.write(f"p2pchat: internal error: {type(exc).__name__} (run with -v for details)\n")
        return ExitCode.INTERNAL
    finally:
        log.removeHandler(HANDLER)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _options(args: argparse.Namespace) -> ChatOptions:
    from .chat import ChatOptions

    name = args.name
    if name is None:
        try:
            import getpass

            name = getpass.getuser()
        except Exception:  # no login name on this system: the peer sees a placeholder
            name = ""
    addresses, tor = _tor_options(args)
    if tor is not None and getattr(args, "upnp", False):
        raise UsageError("--upnp and --tor do not go together: an onion service needs no open port on the router")
    code = _code(args)
    return ChatOptions(
        listening=args.command == "listen",
        address=addresses[0],
        also=tuple(addresses[1:]),
        quiet=bool(getattr(args, "quiet", False)),
        upnp=bool(getattr(args, "upnp", False)),
        name=name,
        peer=args.peer,
        code=code,
        passphrase=None if code else _passphrase(args.passphrase),
        wait=args.wait,
        handshake_timeout=args.handshake_timeout,
        tor=tor,
        proxy=getattr(args, "proxy", None),
        tor_control=args.tor_control,
        bell=not args.no_bell,
        keepalive=args.keepalive,
        resume_for=args.resume_for,
        keep=getattr(args, "keep", False),
        retry=getattr(args, "retry", 0.0),
        send_files=_files_to_send(args.send),
        save_to=_save_to(args.save_to),
    )


def _tor_options(args: argparse.Namespace) -> tuple[list[str], TorOptions | None]:
    """The addresses to listen on or dial, and the onion service to publish (listen --tor)."""
    if args.command == "dial":
        from .link.proxy import with_default_port

        return [with_default_port(text) for text in args.address], None  # X.onion alone: port 9090
    if args.tor is None and not args.tor_ephemeral:
        if args.address is None:
            raise UsageError("listen needs a port: p2pchat listen [HOST:]PORT (or --tor)")
        return [args.address], None
    from .link.tor import plan

    address, tor = plan(args.address, args.tor or None, args.tor_control, args.tor_ephemeral)
    return [address], tor


def _files_to_send(names: list[str]) -> tuple[Path, ...]:
    """The --send files, checked now: a typo should not wait until someone has dialed in."""
    paths = tuple(Path(name).expanduser() for name in names)
    for path in paths:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"--send {path}: not a readable file")
    return paths


def _save_to(name: str | None) -> Path | None:
    if name is None:
        return None
    path = Path(name).expanduser()
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--save-to {path}: not a writable directory")
    return path


def _code(args: argparse.Namespace) -> str | None:
    """listen --code: a fresh code; dial --code CODE: the code, checked for typos. None without --code."""
    if not args.code:
        return None
    if args.passphrase or os.environ.get("P2PCHAT_PASSPHRASE"):
        raise UsageError("--code and a passphrase do not go together: the code does the passphrase's job")
    from .core import pake

    return pake.new_code() if args.command == "listen" else pake.parse_code(args.code)


def _passphrase(asked: bool) -> str | None:
    # Taken out of the environment once read: programs started later (an editor, a shell) never see it.
    from_env = os.environ.pop("P2PCHAT_PASSPHRASE", None)
    if from_env is not None:
        if not from_env:
            raise UsageError("P2PCHAT_PASSPHRASE is set but empty")
        return from_env
    if not asked:
        return None
    import getpass

    try:
        # getpass reads /dev/tty; without one it would read our stdin, which is the chat's data.
        with open("/dev/tty"):
            pass
    except OSError as exc:
        raise UsageError("--passphrase needs a terminal to ask on; set P2PCHAT_PASSPHRASE instead") from exc
    passphrase = getpass.getpass("passphrase (shared with your peer): ")
    if not passphrase:
        raise UsageError("the passphrase is empty")
    return passphrase


def _id() -> int:
    from . import identity
    from .core.noise import public_bytes

    key, created = identity.load_or_create_identity(identity.home())
    if created:
        sys.stderr.write(f"p2pchat: created your identity key in {identity.home()}\n")
    print(identity.fingerprint(public_bytes(key)))
    return ExitCode.OK


def _forget(targets: list[str]) -> int:
    from . import identity
    from .term.sanitize import clean_name

    known = identity.KnownPeers(identity.home())
    done = []
    for target in targets:
        address = identity.parse_address_key(target)
        touched = known.forget(target)
        if not touched:
            raise UsageError(f"nothing known as {clean_name(target)}")
        if address is not None:
            done.append(f"forgot the address {address}")
        else:
            done += [f"forgot {_who(peer)}" for peer in touched]
    known.save()
    for line in done:
        sys.stderr.write(f"p2pchat: {line}\n")
    return ExitCode.OK


def _who(peer: KnownPeer) -> str:
    from . import identity
    from .term.sanitize import clean_name

    names = ", ".join(clean_name(name) for name in peer.names) or "(no name)"
    return f"{names} ({identity.fingerprint(peer.key)})"


def _peers() -> int:
    import time

    from . import identity
    from .term.sanitize import clean_name

    known = identity.KnownPeers(identity.home())
    if not known.peers:
        print("p2pchat: no known peers yet", file=sys.stderr)
        return ExitCode.OK
    ordered = sorted(known.peers.values(), key=lambda peer: -(peer.last_seen or 0))
    for peer in ordered:
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(peer.last_seen)) if peer.last_seen else "never"
        print(", ".join(clean_name(name) for name in peer.names) or "(no name)")
        print(f"  fingerprint  {identity.fingerprint(peer.key)}")
        print(f"  trust        {'verified' if peer.verified else 'not verified'}")
        print(f"  addresses    {', '.join(peer.addresses) or '-'}")
        print(f"  last seen    {seen}")
    return ExitCode.OK


def _verify(target: str) -> int:
    from . import identity
    from .term.sanitize import clean_name

    known = identity.KnownPeers(identity.home())
    found = known.find(target)
    if not found:
        raise UsageError(f"no known peer is called {clean_name(target)} (see p2pchat peers)")
    if len(found) > 1:
        raise UsageError(identity.ambiguous(clean_name(target), found))
    peer = found[0]
    peer.verified = True
    known.save()
    sys.stderr.write(f"p2pchat: {_who(peer)} is now verified\n")
    return ExitCode.OK
