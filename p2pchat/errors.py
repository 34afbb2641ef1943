"""Every failure p2pchat can report, with the line a user sees and the exit code.

One base class, :class:`P2PChatError`. Each subclass says who is to blame
(the network, the peer, this machine, the user) and carries a message written
for people: the command line prints ``str(error)`` as one line and exits with
``error.exit_code``. Details for ``-v`` travel in ``__cause__``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes (README, "Exit codes")."""

    OK = 0  # clean end: either side left with bye, /quit, Ctrl-D
    NETWORK = 1  # refused, unreachable, connection lost without bye, undelivered messages
    USAGE = 2  # bad command line
    SECURITY = 3  # handshake or authentication failure, tampering, wrong key
    LOCAL = 4  # this machine: identity or known_peers file unreadable or unwritable
    INTERNAL = 70  # a bug in p2pchat (EX_SOFTWARE); -v shows the details
    INTERRUPTED = 130  # Ctrl-C


class P2PChatError(Exception):
    """Something went wrong."""

    exit_code: ExitCode = ExitCode.NETWORK

    def __init__(self, message: str | None = None) -> None:
        # By default the docstring's first line, written for users, as a message: "connection lost: ..."
        default = (self.__doc__ or "").strip().splitlines()[0].rstrip(".")
        super().__init__(message or default[:1].lower() + default[1:])


class UsageError(P2PChatError):
    """The command line does not make sense."""

    exit_code = ExitCode.USAGE


class NetworkError(P2PChatError):
    """The network failed."""

    exit_code = ExitCode.NETWORK


class ConnectionLost(NetworkError):
    """Connection lost: the peer went away without saying goodbye."""


class HandshakeTimeout(NetworkError):
    """The peer did not complete the handshake in time."""


class LocalError(P2PChatError):
    """A file on this machine could not be read or written."""

    exit_code = ExitCode.LOCAL


class OutputClosed(LocalError):
    """Standard output was closed; stopping (what arrived since was not acknowledged)."""


class SecurityError(P2PChatError):
    """A security check failed."""

    exit_code = ExitCode.SECURITY


class RemoteProtocolError(SecurityError):
    """The peer broke the p2pchat protocol."""


class HandshakeError(RemoteProtocolError):
    """The secure handshake failed: the peer is not a p2pchat peer, or a passphrase differs."""


class PassphraseMismatch(HandshakeError):
    """The handshake failed: the passphrases may differ (or one side has none)."""


class TamperedError(RemoteProtocolError):
    """A message failed authentication: the connection may have been tampered with."""


class FrameError(RemoteProtocolError):
    """The peer sent a malformed frame."""


class MessageError(RemoteProtocolError):
    """The peer sent a malformed message."""


class KeyMismatchError(SecurityError):
    """The peer's key is not the one expected."""


class InternalError(P2PChatError):
    """Internal error: a bug in p2pchat (run with -v for details)."""

    exit_code = ExitCode.INTERNAL


class LocalProtocolError(P2PChatError):
    """This side misused the protocol (a bug in p2pchat, never the peer's doing)."""

    exit_code = ExitCode.SECURITY


class NonceExhaustedError(LocalProtocolError):
    """The cipher's nonce counter is used up; the session must end rather than reuse a nonce."""
