"""Port mapping: the NAT-PMP codec, the UDP exchange against a fake gateway on loopback, and the
kept mapping (renewal, removal on every way out) with a recording fake router."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat import reach
from p2pchat.core import natpmp
from p2pchat.link import portmap
from p2pchat.link.portmap import Lease, PortConflict, PortMapError

WAIT = 10.0  # generous deadline for events from the renewal thread
EXTERNAL = ipaddress.IPv4Address("81.2.69.160")  # public-looking; fakes only, nothing is sent to it

# --- the codec: exact bytes, from RFC 6886's layouts ---


def test_requests_pin_exact_bytes() -> None:
    assert natpmp.external_address_request() == b"\x00\x00"
    assert natpmp.map_request(9090, 9090, 1200) == bytes.fromhex("0002 0000 2382 2382 000004b0")
    assert natpmp.unmap_request(9090) == bytes.fromhex("0002 0000 2382 0000 00000000")


def test_answers_parse() -> None:
    answer = bytes.fromhex("0080 0000 00000e10 510245a0")
    assert natpmp.parse_external_address(answer) == natpmp.ExternalAddress(3600, EXTERNAL)
    mapped = bytes.fromhex("0082 0000 00000e10 2382 9c40 00000258")
    assert natpmp.parse_map(mapped, 9090) == natpmp.Mapping(3600, 9090, 40000, 600)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (bytes.fromhex("0180 0000 00000e10 510245a0"), "version 1"),
        (bytes.fromhex("0081 0000 00000e10 510245a0"), "opcode 129"),
        (bytes.fromhex("0080 0002 00000e10"), "not authorized or refused"),
        (bytes.fromhex("0080 0063 00000e10"), "unknown result"),
        (bytes.fromhex("0080 0000 00000e10 cb0071"), "11 bytes"),
    ],
)
def test_bad_external_address_answers(data: bytes, message: str) -> None:
    with pytest.raises(natpmp.NatPmpError, match=message):
        natpmp.parse_external_address(data)


def test_a_map_answer_about_another_port_is_refused() -> None:
    with pytest.raises(natpmp.NatPmpError, match="port 80, not 9090"):
        natpmp.parse_map(bytes.fromhex("0082 0000 00000e10 0050 9c40 00000258"), 9090)


@given(st.binary(max_size=24))
def test_any_bytes_parse_or_raise_natpmp_error(data: bytes) -> None:
    for parse in (natpmp.parse_external_address, lambda d: natpmp.parse_map(d, 9090)):
        with contextlib.suppress(natpmp.NatPmpError):
            parse(data)


@given(st.integers(0, 3), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.binary(min_size=4, max_size=4))
def test_answers_with_a_valid_header_parse_or_raise_natpmp_error(
    result: int, port: int, number: int, tail: bytes
) -> None:
    mapped = bytes([0, 130]) + result.to_bytes(2, "big") + number.to_bytes(4, "big") + port.to_bytes(2, "big") + tail
    with contextlib.suppress(natpmp.NatPmpError):
        answer = natpmp.parse_map(mapped + number.to_bytes(4, "big")[:2], 9090)
        assert answer.internal_port == 9090 and result == 0


def test_default_gateway_from_proc_net_route() -> None:
    table = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    )
    assert portmap.parse_proc_route(table) == "192.168.1.1"
    assert portmap.parse_proc_route(table.splitlines()[0] + "\n") is None


# --- the UDP exchange, against a fake gateway on loopback ---


class FakeGateway:
    """A NAT-PMP gateway on 127.0.0.1: answers each request, after some noise if asked to."""

    def __init__(self, *, result: int = 0, silent_first: int = 0, noise: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(WAIT)
        self.port = self.sock.getsockname()[1]
        self.result, self.silent_first, self.noise = result, silent_first, noise
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, client = self.sock.recvfrom(64)
            except OSError:
                return
            if data == b"stop":
                return
            self.requests.append(data)
            if len(self.requests) <= self.silent_first:
                continue  # lost: the client must send again
            if self.noise:
                self.sock.sendto(b"\x00\x99junk", client)  # not an answer to anything: ignored
            if data[1] == natpmp.OP_EXTERNAL_ADDRESS:
                self.sock.sendto(struct.pack("!BBHI4s", 0, 128, self.result, 5, EXTERNAL.packed), client)
            else:
                _, op, _, internal, external, lifetime = struct.unpack("!BBHHHI", data)
                granted = external or (0 if lifetime == 0 else 40000)
                answer = struct.pack("!BBHIHHI", 0, op + 128, self.result, 5, internal, granted, lifetime)
                self.sock.sendto(answer, client)

    def close(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:  # closing would not wake recvfrom
            waker.sendto(b"stop", ("127.0.0.1", self.port))
        self.thread.join(WAIT)
        self.sock.close()


@pytest.fixture
def gateway_factory() -> Iterator[list[FakeGateway]]:
    made: list[FakeGateway] = []
    yield made
    for gateway in made:
        gateway.close()


def test_natpmp_maps_renews_with_the_same_port_and_removes(gateway_factory: list[FakeGateway]) -> None:
    gateway = FakeGateway(silent_first=1, noise=True)  # the first request is lost; junk comes first
    gateway_factory.append(gateway)
    router = portmap.NatPmpRouter.find("127.0.0.1", port=gateway.port)
    assert router.external == EXTERNAL
    lease = router.open(9090, 9090, 1200)
    assert lease == Lease("NAT-PMP", EXTERNAL, 9090, 9090, 1200)
    router.close(lease)
    assert gateway.requests[-1] == natpmp.unmap_request(9090)
    assert gateway.requests[0] == gateway.requests[1] == b"\x00\x00"  # sent again after 250 ms


def test_natpmp_refusal_is_one_line(gateway_factory: list[FakeGateway]) -> None:
    gateway = FakeGateway(result=2)
    gateway_factory.append(gateway)
    with pytest.raises(PortMapError, match=r"^the gateway 127\.0\.0\.1 refused NAT-PMP: the router said no: not auth"):
        portmap.NatPmpRouter.find("127.0.0.1", port=gateway.port)


def test_no_natpmp_at_the_gateway() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    router = portmap.NatPmpRouter("127.0.0.1", waits=(0.05, 0.05), port=port)  # nobody there: ICMP unreachable
    with pytest.raises(PortMapError, match="NAT-PMP"):
        router.open(9090, 9090, 60)


# --- the kept mapping, with a recording fake router ---


class FakeRouter:
    name = "UPnP"

    def __init__(self, *, lifetime: int | None = None, taken: set[int] | None = None) -> None:
        self.lifetime = lifetime  # what the router grants; None: what was asked
        self.taken = taken or set()
        self.calls: list[tuple[str, int]] = []
        self.renewed = threading.Event()
        self.fail_renewals = 0

    def open(self, internal_port: int, external_port: int, lifetime: int) -> Lease:
        if external_port in self.taken:
            raise PortConflict("taken")
        self.calls.append(("open", external_port))
        if len([call for call in self.calls if call[0] == "open"]) > 1:
            if self.fail_renewals:
                self.fail_renewals -= 1
                raise PortMapError("router rebooting")
            self.renewed.set()
        granted = lifetime if self.lifetime is None else self.lifetime
        return Lease(self.name, EXTERNAL, external_port, internal_port, granted)

    def close(self, lease: Lease) -> None:
        self.calls.append(("close", lease.external_port))


def test_map_port_falls_back_from_upnp_to_natpmp_and_says_why_when_both_fail() -> None:
    def no_upnp() -> portmap.Router:
        raise PortMapError("no UPnP router answered")

    def no_natpmp() -> portmap.Router:
        raise PortMapError("no NAT-PMP answer from the gateway 192.0.2.1")

    router = FakeRouter()
    kept = portmap.map_port(9090, routers=[no_upnp, lambda: router])
    kept.close()
    assert router.calls == [("open", 9090), ("close", 9090)]
    with pytest.raises(
        PortMapError, match=r"^no UPnP router answered; no NAT-PMP answer from the gateway 192\.0\.2\.1$"
    ):
        portmap.map_port(9090, routers=[no_upnp, no_natpmp])


def test_a_router_that_refuses_over_upnp_is_asked_over_natpmp() -> None:
    refusing = FakeRouter(taken=set(range(65536)))  # every port "taken": UPnP gives up
    willing = FakeRouter()
    kept = portmap.map_port(9090, routers=[lambda: refusing, lambda: willing])
    kept.close()
    assert refusing.calls == [] and willing.calls == [("open", 9090), ("close", 9090)]


def test_a_taken_external_port_tries_another() -> None:
    router = FakeRouter(taken={9090})
    kept = portmap.map_port(9090, routers=[lambda: router])
    kept.close()
    assert kept.lease.external_port != 9090 and kept.lease.internal_port == 9090
    assert router.calls[-1] == ("close", kept.lease.external_port)


def test_the_lease_is_renewed_at_half_its_lifetime_and_a_failed_renewal_is_retried() -> None:
    router = FakeRouter(lifetime=1)  # the router grants 1 s: renewals every 0.5 s
    router.fail_renewals = 1
    kept = portmap.map_port(9090, routers=[lambda: router])
    try:
        assert router.renewed.wait(WAIT)
    finally:
        kept.close()
    assert kept.renewals >= 1
    assert router.calls[-1] == ("close", 9090)
    assert not kept._thread.is_alive()
    kept.close()  # twice is harmless: one removal
    assert [call for call in router.calls if call[0] == "close"] == [("close", 9090)]


def test_a_permanent_only_router_gets_no_renewals_but_a_removal() -> None:
    router = FakeRouter(lifetime=0)
    kept = portmap.map_port(9090, routers=[lambda: router])
    assert not kept._thread.is_alive()
    kept.close()
    assert router.calls == [("open", 9090), ("close", 9090)]


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))  # bound, never listening: nothing can connect
    return sock


def _with(router: FakeRouter) -> Callable[[int], portmap.KeptMapping]:
    return lambda port: portmap.map_port(port, routers=[lambda: router])


@pytest.mark.parametrize("way_out", [None, KeyboardInterrupt, ConnectionError, SystemExit])
def test_reach_removes_the_mapping_on_every_way_out(way_out: type[BaseException] | None) -> None:
    router = FakeRouter()
    lines: list[str] = []
    with _listener() as sock:
        port = sock.getsockname()[1]
        try:
            with reach.Reach("1", upnp=True, status=lines.append, map_port=_with(router)) as r:
                r.listening(sock)
                assert router.calls == [("open", port)]
                assert f"81.2.69.160:{port}" in (r.invitation or "")
                if way_out is not None:
                    raise way_out()
        except BaseException as exc:
            assert way_out is not None and isinstance(exc, way_out)
    assert router.calls == [("open", port), ("close", port)]
    assert any(f"forwards 81.2.69.160:{port} to this listener" in line for line in lines)


def test_a_router_that_will_not_map_is_one_line_and_the_invitation_still_comes() -> None:
    def refuse(port: int) -> portmap.KeptMapping:
        raise PortMapError("no UPnP router answered; no NAT-PMP answer from the gateway 192.0.2.1")

    lines: list[str] = []
    with _listener() as sock, reach.Reach("1", upnp=True, status=lines.append, map_port=refuse) as r:
        r.listening(sock)
        assert r.invitation is not None and r.mapping is None
    assert any(line.startswith("no port mapping: no UPnP router answered;") for line in lines)


def test_a_private_external_address_is_not_invited_and_is_explained() -> None:
    router = FakeRouter()
    kept = portmap.map_port(9090, routers=[lambda: router])
    kept.lease = Lease("UPnP", ipaddress.IPv4Address("100.64.0.9"), 9090, 9090, 1200)
    lines: list[str] = []
    with _listener() as sock, reach.Reach("1", upnp=True, status=lines.append, map_port=lambda p: kept) as r:
        r.listening(sock)
        assert "100.64.0.9" not in (r.invitation or "")
    assert any("is not public: another NAT is in front" in line for line in lines)
