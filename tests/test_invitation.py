"""The invitation: which addresses, in which order, safely quoted; and the printed command, run as is."""

from __future__ import annotations

import ipaddress
import shlex
import socket
from pathlib import Path

import pytest

from p2pchat import reach
from p2pchat.link import interfaces
from p2pchat.term import invitation

from .procs import Proc

IP = ipaddress.ip_address
ONION = "a" * 56 + ".onion"
FINGERPRINT = "12345 67890 12345 67890 12345 67890"

# `ip -j addr show` on a laptop: loopback, a LAN with a stable and a temporary IPv6, a down interface.
IP_JSON = """[
 {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"addr_info":[
   {"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"},
   {"family":"inet6","local":"::1","prefixlen":128,"scope":"host"}]},
 {"ifindex":2,"ifname":"wlan0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"addr_info":[
   {"family":"inet","local":"192.168.1.20","prefixlen":24,"scope":"global","dynamic":true},
   {"family":"inet6","local":"2a01:4f8:1:2::20","prefixlen":64,"scope":"global","dynamic":true,"mngtmpaddr":true},
   {"family":"inet6","local":"2a01:4f8:1:2:abcd::9","prefixlen":64,"scope":"global","temporary":true},
   {"family":"inet6","local":"2a01:4f8:1:2::99","prefixlen":64,"scope":"global","deprecated":true},
   {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]},
 {"ifindex":3,"ifname":"eth1","flags":["BROADCAST","MULTICAST"],"addr_info":[
   {"family":"inet","local":"10.0.0.5","prefixlen":8,"scope":"global"}]},
 {"ifindex":4,"ifname":"odd","flags":["UP"],"addr_info":[{"family":"inet","local":"not an address","scope":"global"}]}
]"""

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
2a0104f8000100020000000000000020 04 40 00 00     eth0
2a0104f80001000200000000abcd0009 04 40 00 01     eth0
fd000000000000000000000000000002 04 40 00 82     eth0
2a0104f8000100020000000000000077 04 40 00 40     eth0
garbage line
"""


def test_ip_json_keeps_stable_global_addresses_of_interfaces_that_are_up() -> None:
    assert interfaces.parse_ip_json(IP_JSON) == [IP("192.168.1.20"), IP("2a01:4f8:1:2::20")]


def test_ip_json_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ValueError):
        interfaces.parse_ip_json("Option -j is unknown")


def test_proc_if_inet6_skips_loopback_link_local_temporary_and_tentative() -> None:
    assert interfaces.parse_if_inet6(IF_INET6) == [IP("2a01:4f8:1:2::20"), IP("fd00::2")]


def test_this_machines_addresses_are_usable_ones() -> None:
    for address in interfaces.interface_addresses():
        assert not (address.is_loopback or address.is_link_local or address.is_unspecified)


def test_order_onion_public_ipv6_mapped_public_ipv4_then_local() -> None:
    own = [IP("192.168.1.20"), IP("fd00::2"), IP("2a01:4f8::20"), IP("8.8.4.4"), IP("2a01:4f8::20")]
    onions = [ONION, f"{'b' * 56}.onion:80", "evil$(rm).onion", f"{ONION}:x"]
    got = invitation.ordered(9090, onions=onions, mapped=(IP("203.0.113.7"), 40000), interfaces=own)
    assert got == [
        f"{ONION}:9090",
        f"{'b' * 56}.onion:80",
        "[2a01:4f8::20]:9090",
        "203.0.113.7:40000",
        "8.8.4.4:9090",
        "[fd00::2]:9090",
        "192.168.1.20:9090",
    ]


def test_command_is_quoted_for_a_shell_and_runs_as_one_line() -> None:
    line = invitation.command(["[2a01:4f8::20]:9090", "192.168.1.20:9090"], FINGERPRINT, passphrase=True)
    assert line == (
        "p2pchat dial '[2a01:4f8::20]:9090' 192.168.1.20:9090 --peer '12345 67890 12345 67890 12345 67890' --passphrase"
    )
    assert shlex.split(line)[2:4] == ["[2a01:4f8::20]:9090", "192.168.1.20:9090"]


@pytest.mark.parametrize(
    "address",
    [
        "1.2.3.4;reboot:9090",
        "$(id):9090",
        "host\x1b[2J:9090",
        "exa mple.org:9090",
        "[fe80::1%eth0]:9090",
        "[1.2.3.4]:9090",
        "1.2.3.4:0",
        "1.2.3.4:99999",
        "1.2.3.4:\uff19\uff10",  # fullwidth digits
        "\uff45xample.org:9090",  # a fullwidth e
        "::1:9090",
        "",
    ],
)
def test_hostile_addresses_are_left_out(address: str) -> None:
    assert not invitation.is_safe_address(address)
    expected = f"p2pchat dial 192.0.2.1:9 --peer '{FINGERPRINT}'"
    assert invitation.command([address, "192.0.2.1:9"], FINGERPRINT) == expected


def test_no_address_no_invitation() -> None:
    with pytest.raises(ValueError):
        invitation.command(["$(id):1"], FINGERPRINT)


def _listener(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    return sock


def test_reach_lists_interfaces_for_a_wildcard_listener_and_only_the_onion_behind_tor() -> None:
    lines: list[str] = []
    own = [IP("2a01:4f8::20"), IP("192.168.1.20")]
    with _listener("0.0.0.0") as any4, _listener("127.0.0.1") as loop:
        port = any4.getsockname()[1]
        with reach.Reach(FINGERPRINT, status=lines.append, addresses=lambda: own) as r:
            r.listening(any4)
            assert r.invitation == f"p2pchat dial 192.168.1.20:{port} --peer '{FINGERPRINT}'"  # IPv4-only socket
        with reach.Reach(FINGERPRINT, status=lines.append, addresses=lambda: own) as r:
            r.listening(loop, onions=[f"{ONION}:9090"])  # the service's virtual port, not the listener's
            assert r.invitation == f"p2pchat dial {ONION}:9090 --peer '{FINGERPRINT}'"
        with reach.Reach(FINGERPRINT, status=lines.append, quiet=True) as r:
            r.listening(loop)
            assert r.invitation is None


def _invitation(proc: Proc) -> list[str]:
    proc.wait_err(r"your peer can join you with this command")
    words = shlex.split(proc.wait_err(r"^p2pchat dial .*").group(0))
    assert words[:2] == ["p2pchat", "dial"]
    return words[1:]


def test_the_printed_command_run_as_is_connects_and_pins_the_key(homes: tuple[Path, Path], tmp_path: Path) -> None:
    lis = Proc(["listen", "0", "--name", "lis"], homes[0])
    with lis:
        command = _invitation(lis)
        assert "--peer" in command
        with Proc([*command, "--name", "dia"], homes[1]) as dia:
            dia.write("hello from the invitation\n")
            assert dia.finish() == 0, dia.stderr_text
            assert lis.finish() == 0
        assert lis.out == ["dia: hello from the invitation\n"]
        port = int(command[1].rpartition(":")[2])
    # Someone else listens on that port now: the same command refuses their key before any text.
    impostor = Proc(["listen", str(port), "--name", "lis", "--quiet"], tmp_path / "impostor")
    with impostor:
        impostor.wait_err("waiting for a peer")
        assert "your peer can join" not in impostor.stderr_text  # --quiet
        with Proc([*command, "--name", "dia"], homes[1]) as dia:
            dia.write("must not arrive\n")
            assert dia.finish() == 3
        assert "is not the one given with --peer" in dia.stderr_text
    assert impostor.out == []


def test_behind_tor_the_invitation_names_only_the_onion_address(homes: tuple[Path, Path], tmp_path: Path) -> None:
    from .torprocs import start_tor  # a real tor without network, as in test_tor.py (skips without tor)

    tor = start_tor(tmp_path / "tor", "--CookieAuthentication", "1")
    try:
        lis = Proc(["listen", "--tor", "--tor-control", tor.control, "--name", "lis"], homes[0])
        with lis:
            onion = lis.wait_err(r"onion service ([a-z2-7]{56}\.onion:9090) is set up")[1]
            assert _invitation(lis)[:3] == ["dial", onion, "--peer"]  # no loopback, no interface address
    finally:
        tor.stop()


def test_upnp_and_tor_together_is_a_usage_error(tmp_path: Path) -> None:
    with Proc(["listen", "--tor", "--upnp", "--tor-control", "127.0.0.1:9"], tmp_path) as proc:
        assert proc.finish() == 2
    assert proc.err == [
        "p2pchat: --upnp and --tor do not go together: an onion service needs no open port on the router\n"
    ]
