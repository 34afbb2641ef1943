"""A real network for end-to-end tests: two Linux network namespaces joined by a veth pair.

``with NetLab() as lab:`` creates namespaces ``p2pt-<pid>-<n>-a`` and ``-b`` (10.201.0.1 and
10.201.0.2, fd00:201::1 and fd00:201::2, loopback up, no route anywhere else: no packet can leave
the machine), starts real
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
ADDRESSES6 = ("fd00:201::1", "fd00:201::2")  # unique local; "nodad": usable at once, no 1 s wait
CUT_TABLE = "p2pt_cut"
_counter = itertools.count()
# Run inside a namespace by NetLab.probe: TCP connection attempts to each HOST at once, and how each ended.
PROBE = """
import socket, sys, threading
port, timeout, hosts = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
results = [""] * len(hosts)
def attempt(i):
    try:
        socket.create_connection((hosts[i], port), timeout=timeout).close()
        results[i] = "connected"
    except ConnectionRefusedError:
        results[i] = "refused"
    except TimeoutError:
        results[i] = "timeout"
threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(hosts))]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(" ".join(results))
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
def firewalls() -> tuple[str, ...]:
    """The tools :meth:`NetLab.cut` can use here: "nft", and "iptables" (with ip6tables beside it)."""
    have = [shutil.which("nft") is not None, all(shutil.which(tool) for tool in ("iptables", "ip6tables"))]
    return tuple(tool for tool, present in zip(("nft", "iptables"), have, strict=True) if present)


def firewall() -> str | None:
    """The tool :meth:`NetLab.cut` uses by default: nft, else iptables, else None."""
    return next(iter(firewalls()), None)


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

    def __init__(self, tool: str | None = None) -> None:
        """*tool* cuts the link: "nft" or "iptables" (default: :func:`firewall`, nft where there is one)."""
        self.tool = tool or firewall()
        tag = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.names = (f"{tag}-a", f"{tag}-b")
        self.procs: list[Proc] = []
        self.is_cut = False
        self._cut_matches: list[str] = []

    @property
    def a(self) -> str:
        return self.names[0]

    @property
    def b(self) -> str:
        return self.names[1]

    def address(self, side: str, ipv6: bool = False) -> str:
        """The address of namespace ``side`` (its name, or "a"/"b") on the veth, ready for ``HOST:PORT``."""
        return f"[{ADDRESSES6[self._index(side)]}]" if ipv6 else ADDRESSES[self._index(side)]

    def _index(self, side: str) -> int:
        if side in ("a", "b"):
            return "ab".index(side)
        return self.names.index(side)

    def __enter__(self) -> NetLab:
        a, b = self.names
        try:
            veth = f"link add {DEVICE} netns {a} type veth peer name {DEVICE} netns {b}"
            _ip(batch=f"netns add {a}\nnetns add {b}\n{veth}\n")
            for name, address, address6 in zip(self.names, ADDRESSES, ADDRESSES6, strict=True):
                addresses = f"addr add {address}/24 dev {DEVICE}\naddr add {address6}/64 dev {DEVICE} nodad\n"
                _ip("-n", name, batch=f"{addresses}link set {DEVICE} up\nlink set lo up\n")
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

    def probe(self, side: str, port: int, timeout: float, ipv6: bool = False) -> str:
        """Try a TCP connection from ``side`` to the other side's *port*: "connected", "refused" or "timeout".

        On a port nothing listens on, "refused" shows the link carries packets (and resets);
        "timeout" shows it is cut silently.
        """
        return self.probe_all(port, timeout, sides=(side,), families=("ipv6" if ipv6 else "ipv4",))[0]

    def probe_all(
        self,
        port: int,
        timeout: float,
        sides: tuple[str, ...] = ("a", "b"),
        families: tuple[str, ...] = ("ipv4", "ipv6"),
    ) -> list[str]:
        """:meth:`probe` from each side to the other, over each family, all at once; results in that order."""
        runs = []
        for side in sides:
            index = self._index(side)
            hosts = [(ADDRESSES6 if family == "ipv6" else ADDRESSES)[1 - index] for family in families]
            cmd = ["ip", "netns", "exec", self.names[index], sys.executable, "-c", PROBE, str(port), str(timeout)]
            runs.append(subprocess.Popen([*cmd, *hosts], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = []
        for run in runs:
            out, err = run.communicate(timeout=TIMEOUT)
            if run.returncode != 0:
                raise LabError(f"probe failed: {err.strip()}")
            results += out.split()
        return results

    def cut(self, port: int | None = None) -> None:
        """Drop, silently, every packet that arrives over the veth, in both namespaces (both directions).

        With *port*, only TCP packets from or to that port: give a dialer's own port to leave one
        connection dead for good (a ghost) while new connections get through.
        """
        if self.is_cut:
            raise LabError("the link is already cut")
        matches = [""] if port is None else [f"tcp sport {port} ", f"tcp dport {port} "]
        for name in self.names:
            if self.tool == "nft":
                # A table of our own, so that deleting it restores exactly what was there.
                rules = f"add table inet {CUT_TABLE}\n"
                rules += f"add chain inet {CUT_TABLE} input {{ type filter hook input priority -300; }}\n"
                rules += "".join(f'add rule inet {CUT_TABLE} input iifname "{DEVICE}" {m}drop\n' for m in matches)
                self._nft(name, rules)
            else:
                for match in matches:
                    self._iptables(name, "-I", match.split())
        self.is_cut = True
        self._cut_matches = matches

    def shape(self, side: str, rate: str) -> None:
        """Limit what namespace *side* sends over the veth to *rate* (tc's words: "16mbit"), a slow uplink."""
        name = self.names[self._index(side)]
        cmd = ["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", DEVICE, "root", "tbf"]
        cmd += ["rate", rate, "burst", "32kbit", "latency", "400ms"]
        self._check(cmd, subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT))

    def restore(self) -> None:
        """Lift :meth:`cut`: packets flow again (connections that were not given up on carry on)."""
        for name in self.names:
            if self.tool == "nft":
                self._nft(name, f"delete table inet {CUT_TABLE}\n")
            else:
                for match in self._cut_matches:
                    self._iptables(name, "-D", match.split())
        self.is_cut = False

    def _nft(self, name: str, rules: str) -> None:
        cmd = ["ip", "netns", "exec", name, "nft", "-f", "-"]
        self._check(cmd, subprocess.run(cmd, input=rules, capture_output=True, text=True, timeout=TIMEOUT))

    def _iptables(self, name: str, action: str, match: list[str]) -> None:
        """*match*: nft words ("tcp sport 80"), or none; the same rule for IPv4 and IPv6."""
        spec = ["-p", "tcp", f"--{match[1]}", match[2]] if match else []
        for tool in ("iptables", "ip6tables"):
            cmd = ["ip", "netns", "exec", name, tool, "-w", action, "INPUT", "-i", DEVICE, *spec, "-j", "DROP"]
            self._check(cmd, subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT))

    @staticmethod
    def _check(cmd: list[str], done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            raise LabError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
