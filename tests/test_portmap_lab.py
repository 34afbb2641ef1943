"""Port mapping against a real router: miniupnpd in network namespaces.

    LAN namespace  192.168.77.2 ── 192.168.77.1  ROUTER namespace  45.33.10.1 ── 45.33.10.2  WAN namespace
    (p2pchat listen --upnp)         (NAT, miniupnpd: UPnP-IGD and NAT-PMP)            (p2pchat dial, the invitation)

The WAN side's addresses look public because miniupnpd refuses to map behind a private or
reserved external address; they exist only inside these namespaces, which have no link to the
machine's own namespace or to anything else: no packet leaves the lab. Every namespace is
deleted and miniupnpd stopped on the way out, whatever happens.

Needs root, ``ip``, ``nft`` and ``miniupnpd`` (Debian: ``apt-get install -y miniupnpd nftables``,
the nftables flavour); skipped with the reason otherwise. Debian's nft_init.sh is broken, so the
lab makes miniupnpd's table and chains itself. The UPnP test takes ~4 s (SSDP discovery waits
2 s); the others (NAT-PMP fallback, a router that will not map) run with P2PCHAT_SLOW=1.
"""

from __future__ import annotations

import itertools
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import uuid
from pathlib import Path
from types import TracebackType

import pytest

from .procs import TIMEOUT, Proc, _read, _wait

PREFIX = f"p2pr-{os.getpid()}-"  # every namespace this lab makes starts with this
LAN, ROUTER_LAN, ROUTER_WAN, WAN = "192.168.77.2", "192.168.77.1", "45.33.10.1", "45.33.10.2"
PRIVATE_WAN = ("10.99.0.1", "10.99.0.2")  # a router whose own address is private: miniupnpd will not map
TABLE = "p2pclab"
_counter = itertools.count()

NFT_RULES = f"""
table inet {TABLE} {{
  chain forward {{ type filter hook forward priority 0; policy accept; jump miniupnpd; }}
  chain miniupnpd {{ }}
  chain prerouting {{ type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd; oifname "rwan" masquerade;
  }}
  chain prerouting_miniupnpd {{ }}
  chain postrouting_miniupnpd {{ }}
}}
"""


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the port-mapping lab needs root (network namespaces)"
    for tool in ("ip", "nft", "miniupnpd"):
        if shutil.which(tool) is None:
            return f"the port-mapping lab needs {tool} (apt-get install -y miniupnpd nftables iproute2)"
    return None


def slow_only() -> pytest.MarkDecorator:
    return pytest.mark.skipif(os.environ.get("P2PCHAT_SLOW") != "1", reason="slow lab test: set P2PCHAT_SLOW=1")


pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


def _run(*cmd: str, stdin: str | None = None) -> str:
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


class RouterLab:
    """Three namespaces, a NATing router between them, and miniupnpd on it."""

    def __init__(self, tmp: Path, *, upnp: bool = True, natpmp: bool = True, private_wan: bool = False) -> None:
        n = next(_counter)
        self.ns = {side: f"{PREFIX}{n}-{side}" for side in ("lan", "rtr", "wan")}
        self.tmp = tmp
        self.upnp, self.natpmp = upnp, natpmp
        self.router_wan, self.wan = PRIVATE_WAN if private_wan else (ROUTER_WAN, WAN)
        self.daemon: subprocess.Popen[bytes] | None = None
        self.lines: queue.Queue[str] = queue.Queue()  # miniupnpd's log, line by line
        self.record: list[str] = []
        self.procs: list[Proc] = []

    def __enter__(self) -> RouterLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _build(self) -> None:
        lan, rtr, wan = self.ns["lan"], self.ns["rtr"], self.ns["wan"]
        for name in self.ns.values():
            _run("ip", "netns", "add", name)
        _run("ip", "link", "add", "lan0", "netns", lan, "type", "veth", "peer", "name", "rlan", "netns", rtr)
        _run("ip", "link", "add", "wan0", "netns", wan, "type", "veth", "peer", "name", "rwan", "netns", rtr)
        for name, device, address in (
            (lan, "lan0", LAN),
            (rtr, "rlan", ROUTER_LAN),
            (rtr, "rwan", self.router_wan),
            (wan, "wan0", self.wan),
        ):
            _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", device)
            _run("ip", "-n", name, "link", "set", device, "up")
        for name in self.ns.values():
            _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", lan, "route", "add", "default", "via", ROUTER_LAN)  # the WAN side has no default route
        _run("ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _run("ip", "netns", "exec", rtr, "nft", "-f", "-", stdin=NFT_RULES)
        config = self.tmp / "miniupnpd.conf"
        config.write_text(
            "ext_ifname=rwan\nlistening_ip=rlan\nport=0\nsecure_mode=yes\nsystem_uptime=no\n"
            f"enable_upnp={'yes' if self.upnp else 'no'}\nenable_natpmp={'yes' if self.natpmp else 'no'}\n"
            f"uuid={uuid.uuid4()}\nupnp_table_name={TABLE}\nupnp_nat_table_name={TABLE}\n"
            "upnp_forward_chain=miniupnpd\nupnp_nat_chain=prerouting_miniupnpd\n"
            "upnp_nat_postrouting_chain=postrouting_miniupnpd\n"
            "allow 1024-65535 192.168.77.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
        )
        self.daemon = subprocess.Popen(  # -d: in the foreground, so this lab owns the process
            ["ip", "netns", "exec", rtr, "miniupnpd", "-d", "-f", str(config), "-P", str(self.tmp / "miniupnpd.pid")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.daemon.stdout is not None
        self.reader = threading.Thread(target=_read, args=(self.daemon.stdout, self.lines, self.record), daemon=True)
        self.reader.start()
        _wait(self.lines, "Listening for NAT-PMP" if self.natpmp else "HTTP listening on port", TIMEOUT, self.record)

    def log(self) -> str:
        return "".join(self.record)

    def run(self, side: str, args: list[str], home: Path) -> Proc:
        proc = Proc(args, home, prefix=["ip", "netns", "exec", self.ns[side]])
        self.procs.append(proc)
        return proc

    def redirects(self) -> str:
        """The DNAT rules miniupnpd keeps: one per mapping."""
        return _run(
            "ip", "netns", "exec", self.ns["rtr"], "nft", "list", "chain", "inet", TABLE, "prerouting_miniupnpd"
        )

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(TIMEOUT)
            self.reader.join(TIMEOUT)
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=TIMEOUT, check=False)


def _invitation(proc: Proc) -> list[str]:
    words = shlex.split(proc.wait_err(r"^p2pchat dial .*").group(0))
    return words[1:]


def test_upnp_maps_the_wan_side_chats_through_it_and_the_mapping_goes_at_exit(tmp_path: Path) -> None:
    with RouterLab(tmp_path) as lab:
        lis = lab.run("lan", ["listen", "--upnp", "0", "--name", "lis"], tmp_path / "lan")
        port = lis.port()
        lis.wait_err(rf"the router \(UPnP\) forwards {ROUTER_WAN}:{port} to this listener")
        assert f"dport {port}" in lab.redirects()
        command = _invitation(lis)
        assert command[1:3] == [f"{ROUTER_WAN}:{port}", f"{LAN}:{port}"]  # the mapped address first
        dia = lab.run("wan", [*command, "--name", "wan"], tmp_path / "wan")  # the invitation, as is
        lis.wait_err(rf"wan joined from {WAN}:")
        dia.write("hello through the router\n")
        lis.wait_out(r"^wan: hello through the router$")
        lis.write("and back\n")
        dia.wait_out(r"^lis: and back$")
        dia.write("got it\n")  # sent after the ack of "and back": once it is here, so is that ack
        lis.wait_out(r"^wan: got it$")
        assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0, lis.stderr_text
        assert f"dport {port}" not in lab.redirects()  # removed, and the chat went on over the open connection
        assert "is not the one given with --peer" not in dia.stderr_text


@slow_only()
def test_natpmp_when_the_router_has_no_upnp_and_sigterm_removes_the_mapping(tmp_path: Path) -> None:
    with RouterLab(tmp_path, upnp=False) as lab:
        lis = lab.run("lan", ["listen", "--upnp", "0", "--name", "lis"], tmp_path / "lan")
        port = lis.port()
        lis.wait_err(rf"the router \(NAT-PMP\) forwards {ROUTER_WAN}:{port} to this listener, renewed every")
        assert f"dport {port}" in lab.redirects()
        lis.signal(signal.SIGTERM)
        assert lis.finish() == 130
        assert f"dport {port}" not in lab.redirects()


@slow_only()
def test_a_router_that_will_not_map_is_one_line_and_the_listener_still_listens(tmp_path: Path) -> None:
    with RouterLab(tmp_path, private_wan=True) as lab:
        lis = lab.run("lan", ["listen", "--upnp", "0", "--name", "lis", "--quiet"], tmp_path / "lan")
        port = lis.port()
        refusal = lis.wait_err(r"^p2pchat: no port mapping: (.*); still listening").group(1)
        assert "\n" not in refusal and "(UPnP) refused" in refusal and "NAT-PMP" in refusal, refusal
        lis.wait_err("waiting for a peer")
        dia = lab.run("lan", ["dial", f"{LAN}:{port}", "--name", "dia"], tmp_path / "dia")  # same network
        dia.write("on the same network\n")
        lis.wait_out(r"^dia: on the same network$")
        assert dia.finish() == 0 and lis.finish() == 0
        assert "dport" not in lab.redirects()
