"""A real network for end-to-end tests: two Linux network namespaces joined by a veth pair.

``with NetLab() as lab:`` creates namespaces ``p2pt-<pid>-<n>-a`` and ``-b`` (10.201.0.1 and
10.201.0.2, loopback up, no route anywhere else: no packet can leave the machine), starts real
``python -m p2pchat`` processes inside them (:meth:`NetLab.run`), and breaks the link the way real
links break: :meth:`NetLab.cut` silently drops every packet arriving over the veth on both sides (a
dead link, not a closed one: no reset, no ICMP, the senders' own stacks see nothing), and
:meth:`NetLab.restore` lifts the cut. Leaving the ``with`` block, even by an exception, kills every
process it started and deletes both namespaces (which destroys the veth pair).

It needs root (or an unprivileged ``unshare -Urnm`` shell in which ``ip netns add`` works), ``ip``
(iproute2) and ``nft`` or ``iptables``; :func:`unavailable` says why not, for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import TracebackType

from .procs import TIMEOUT, Proc

PREFIX = "p2pt-"  # every namespace this lab creates, and only those, starts with this
DEVICE = "veth0"  # the same name in both namespaces: each end lives only in its own namespace
ADDRESSES = ("10.201.0.1", "10.201.0.2")  # private, and reachable only through the veth
CUT_TABLE = "p2pt_cut"
_counter = itertools.count()
# Run inside a namespace by NetLab.probe: one TCP connection attempt, and how it ended.
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""


class LabError(RuntimeError):
    """A lab command failed: the message holds the command and what it printed."""


def _ip(*args: str, batch: str | None = None) -> None:
    cmd = ["ip", *args] + (["-batch", "-"] if batch is not None else [])
    done = subprocess.run(cmd, input=batch, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed: {done.stderr.strip()} (batch: {batch!r})")


def _netns_names() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Delete namespaces left by a lab whose test process died (killed before its clean-up ran)."""
    for name in _netns_names():
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(LabError):
                _ip("netns", "delete", name)


@cache
def firewall() -> str | None:
    """The tool :meth:`NetLab.cut` uses: ``nft``, else ``iptables``, else None."""
    return next((tool for tool in ("nft", "iptables") if shutil.which(tool)), None)


@cache
def unavailable() -> str | None:
    """Why this machine cannot run the lab (a skip reason), or None when it can.

    Probes by creating and deleting one namespace, so an unprivileged ``unshare -Urnm`` shell where
    that works counts as able, and root in a container without CAP_SYS_ADMIN does not.
    """
    if shutil.which("ip") is None:
        return "network-namespace tests need `ip` (iproute2)"
    if firewall() is None:
        return "network-namespace tests need `nft` or `iptables` to cut a link (apt-get install nftables)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except LabError as exc:
        return f"network namespaces are not allowed here (run as root): {exc}"
    _ip("netns", "delete", probe)
    remove_stale()
    return None


class NetLab:
    """Two namespaces, ``a`` and ``b``, joined by a veth pair; see the module docstring."""

    def __init__(self) -> None:
        tag = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.names = (f"{tag}-a", f"{tag}-b")
        self.procs: list[Proc] = []
        self.is_cut = False

    @property
    def a(self) -> str:
        return self.names[0]

    @property
    def b(self) -> str:
        return self.names[1]

    def address(self, side: str) -> str:
        """The address of namespace ``side`` (its name, or "a"/"b") on the veth."""
        return ADDRESSES[self._index(side)]

    def _index(self, side: str) -> int:
        if side in ("a", "b"):
            return "ab".index(side)
        return self.names.index(side)

    def __enter__(self) -> NetLab:
        a, b = self.names
        try:
            veth = f"link add {DEVICE} netns {a} type veth peer name {DEVICE} netns {b}"
            _ip(batch=f"netns add {a}\nnetns add {b}\n{veth}\n")
            for name, address in zip(self.names, ADDRESSES, strict=True):
                _ip("-n", name, batch=f"addr add {address}/24 dev {DEVICE}\nlink set {DEVICE} up\nlink set lo up\n")
        except BaseException:
            self._delete()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill every process started here, then delete both namespaces (the veth pair goes with them)."""
        try:
            for proc in self.procs:
                with contextlib.suppress(Exception):
                    proc.kill()
        finally:
            self._delete()

    def _delete(self) -> None:
        errors = []
        for name in self.names:
            try:
                _ip("netns", "delete", name)
            except LabError as exc:
                if name in _netns_names():  # it exists, yet could not be deleted: say so
                    errors.append(str(exc))
        if errors:
            raise LabError("; ".join(errors))

    def run(self, side: str, args: list[str], home: Path, env: dict[str, str] | None = None) -> Proc:
        """Start ``python -m p2pchat ARGS`` inside namespace ``side``; it is killed when the lab closes.

        ``ip netns exec`` replaces itself with Python, so the Proc's pid is p2pchat's own (kill -9 hits it).
        """
        name = self.names[self._index(side)]
        proc = Proc(args, home, env, prefix=["ip", "netns", "exec", name])
        self.procs.append(proc)
        return proc

    def probe(self, side: str, port: int, timeout: float) -> str:
        """Try a TCP connection from ``side`` to the other side's *port*: "connected", "refused" or "timeout".

        On a port nothing listens on, "refused" shows the link carries packets (and resets);
        "timeout" shows it is cut silently.
        """
        index = self._index(side)
        cmd = ["ip", "netns", "exec", self.names[index], sys.executable, "-c", PROBE]
        cmd += [ADDRESSES[1 - index], str(port), str(timeout)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if done.returncode != 0:
            raise LabError(f"probe failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def cut(self) -> None:
        """Drop, silently, every packet that arrives over the veth, in both namespaces (both directions)."""
        for name in self.names:
            self._firewall(name, add=True)
        self.is_cut = True

    def restore(self) -> None:
        """Lift :meth:`cut`: packets flow again (connections that were not given up on carry on)."""
        for name in self.names:
            self._firewall(name, add=False)
        self.is_cut = False

    def _firewall(self, name: str, add: bool) -> None:
        if firewall() == "nft":
            if add:
                # A new table of our own, so that deleting it restores exactly what was there.
                rules = (
                    f"add table inet {CUT_TABLE}\n"
                    f"add chain inet {CUT_TABLE} input {{ type filter hook input priority -300; }}\n"
                    f'add rule inet {CUT_TABLE} input iifname "{DEVICE}" drop\n'
                )
            else:
                rules = f"delete table inet {CUT_TABLE}\n"
            cmd = ["ip", "netns", "exec", name, "nft", "-f", "-"]
            done = subprocess.run(cmd, input=rules, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        else:
            flag = "-I" if add else "-D"
            cmd = ["ip", "netns", "exec", name, "iptables", "-w", flag, "INPUT", "-i", DEVICE, "-j", "DROP"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if done.returncode != 0:
            raise LabError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
