"""Dialing through SOCKS5: a real microsocks, a recording proxy, .onion names, and every refusal."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pchat.errors import NetworkError, UsageError
from p2pchat.link import proxy
from p2pchat.link.sockets import Address

from .procs import Proc, listener
from .socks import Microsocks, RecordingSocks, Request
from .torprocs import FakeTor

NULL_AUTH = {
    "PROTOCOLINFO": b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n",
    "AUTHENTICATE": b"250 OK\r\n",
}


def onion(seed: int) -> str:
    """A valid v3 onion name (rend-spec-v3: base32 of key, checksum, version 3)."""
    key = bytes([seed]) * 32
    checksum = hashlib.sha3_256(b".onion checksum" + key + b"\x03").digest()[:2]
    return base64.b32encode(key + checksum + b"\x03").decode().lower() + ".onion"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def microsocks() -> Iterator[Microsocks]:
    server = Microsocks()
    yield server
    server.close()


def test_a_chat_through_microsocks(microsocks: Microsocks, homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    # "localhost": the proxy looks the name up, not us.
    with lis, Proc(["dial", f"localhost:{port}", "--name", "dia", "--proxy", microsocks.url], homes[1]) as dia:
        dia.write("through the proxy\n")
        lis.wait_out(r"^dia: through the proxy$")
        lis.write("and back\n")
        dia.wait_out(r"^lis: and back$")
        assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0, lis.stderr_text
    assert f"connected to lis at localhost:{port} through {microsocks.url}\n" in dia.stderr_text


def test_the_proxy_cannot_connect(microsocks: Microsocks) -> None:
    port = free_port()
    with pytest.raises(NetworkError) as caught:
        proxy.dial(Address("127.0.0.1", port), microsocks.url)
    assert str(caught.value) == (
        f"cannot reach 127.0.0.1:{port} through {microsocks.url}: connection refused (is p2pchat listening there?)"
    )


def test_a_proxy_that_wants_a_password() -> None:
    server = Microsocks("-u", "alice", "-P", "sesame")
    try:
        with pytest.raises(NetworkError, match="the proxy wants a user name and password: socks5://USER:PASSWORD@"):
            proxy.dial(Address("127.0.0.1", 9), server.url)
        wrong = server.url.replace("socks5://", "socks5://alice:nope@")
        with pytest.raises(NetworkError, match="the proxy refused the user name and password") as caught:
            proxy.dial(Address("127.0.0.1", 9), wrong)
        assert "nope" not in str(caught.value)  # a password is never shown
        with socket.create_server(("127.0.0.1", 0)) as target:
            right = server.url.replace("socks5://", "socks5://alice:sesame@")
            proxy.dial(Address("127.0.0.1", target.getsockname()[1]), right).close()
    finally:
        server.close()


def test_a_proxy_that_is_not_there(homes: tuple[Path, Path]) -> None:
    port = free_port()
    with Proc(["dial", "example.org:9090", "--proxy", f"socks5h://127.0.0.1:{port}"], homes[0]) as dia:
        assert dia.finish() == 1
    assert dia.stderr_text == (
        f"p2pchat: created your identity key in {homes[0]}\n"
        f"p2pchat: cannot reach the proxy socks5://127.0.0.1:{port}: connection refused (is it running?)\n"
    )


def test_names_are_resolved_by_the_proxy() -> None:
    target = socket.create_server(("127.0.0.1", 0))
    port = target.getsockname()[1]
    recorder = RecordingSocks(lambda request: port)
    try:
        proxy.dial(Address("localhost", port), recorder.url).close()
        proxy.dial(Address("127.0.0.1", port), recorder.url).close()
    finally:
        target.close()  # first: the relayed connections it never accepted are reset, so the relays end
        recorder.close()
    # A name travels as a name (address type 3): no DNS query from this machine.
    assert recorder.requests == [Request(3, "localhost", port), Request(1, "127.0.0.1", port)]


def test_an_onion_through_tor_and_its_key_remembered(homes: tuple[Path, Path], tmp_path: Path) -> None:
    name = onion(7)
    listening: list[int] = []
    recorder = RecordingSocks(lambda request: listening[-1] if request.host == name else None)
    env = {"TOR_SOCKS_PORT": str(recorder.port)}  # where "Tor" is: replaces the default search
    try:
        lis, port = listener(homes[0])
        listening.append(port)
        with lis, Proc(["dial", f"{name}:9090", "--name", "dia"], homes[1], env) as dia:
            dia.write("hello onion\n")
            lis.wait_out(r"^dia: hello onion$")
            assert dia.finish() == 0, dia.stderr_text
            assert lis.finish() == 0
        assert f"connected to lis at {name}:9090 through Tor\n" in dia.stderr_text
        assert name + ":9090" in (homes[1] / "known_peers").read_text()
        # Another key behind the same onion (another home): the key-change check stops it.
        impostor, port = listener(tmp_path / "impostor")
        listening.append(port)
        with impostor, Proc(["dial", name.upper()], homes[1], env) as dia:  # the port defaults to 9090
            assert dia.finish() == 3
            impostor.kill()
        assert f"the key at {name}:9090 has changed!" in dia.stderr_text
        assert f"p2pchat forget {name}:9090" in dia.stderr_text
    finally:
        recorder.close()
    assert {request.host for request in recorder.requests} == {name}
    assert {request.address_type for request in recorder.requests} == {3}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0x04, "the onion service is not reachable (not published yet, or the listener is not running)"),
        (0x01, "the onion service is not reachable"),
        (0xF0, "Tor found no descriptor for this onion: it is not published (yet), or the address is wrong"),
        (0xF2, "Tor could not reach the onion's introduction points"),
    ],
)
def test_an_onion_that_is_not_reachable(code: int, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordingSocks(lambda request: None, reply=code)
    monkeypatch.setenv("TOR_SOCKS_PORT", str(recorder.port))
    try:
        with pytest.raises(NetworkError) as caught:
            proxy.dial(Address(onion(1), 9090))
    finally:
        recorder.close()
    assert str(caught.value).startswith(f"cannot reach {onion(1)}:9090 through Tor: {expected}")


def test_a_proxy_refusal_by_rule() -> None:
    recorder = RecordingSocks(lambda request: None, reply=0x02)
    try:
        with pytest.raises(NetworkError, match="the proxy refused: its rules do not allow this connection"):
            proxy.dial(Address("example.org", 80), recorder.url)
    finally:
        recorder.close()


def test_an_onion_without_tor(homes: tuple[Path, Path]) -> None:
    port = free_port()
    env = {"TOR_SOCKS_PORT": f"127.0.0.1:{port}"}
    with Proc(["dial", f"{onion(2)}:9090"], homes[0], env) as dia:
        assert dia.finish() == 1
    assert f"p2pchat: cannot reach {onion(2)}:9090: no Tor SOCKS port answers (tried 127.0.0.1:{port}); start Tor" in (
        dia.stderr_text
    )
    assert "--proxy socks5://HOST:PORT" in dia.stderr_text


def test_an_onion_with_a_typo_is_a_usage_error(homes: tuple[Path, Path]) -> None:
    typo = onion(3).replace("a", "b", 1)
    with Proc(["dial", f"{typo}:9090"], homes[0]) as dia:
        assert dia.finish() == 2
    assert "is not a valid onion address" in dia.stderr_text


def test_proxy_urls() -> None:
    assert proxy.parse_proxy("socks5://127.0.0.1:9050") == proxy.Proxy("127.0.0.1", 9050)
    assert proxy.parse_proxy("socks5h://[::1]:9050") == proxy.Proxy("::1", 9050)
    assert proxy.parse_proxy("SOCKS5H://a%40b:p%3Aw@host:1") == proxy.Proxy("host", 1, "a@b", "p:w")
    assert str(proxy.parse_proxy("socks5://u:secret@host:1")) == "socks5://host:1"
    for bad in ("http://host:8080", "socks4://host:1", "socks5://host", "socks5://:1", "host:1", "socks5://h:0"):
        with pytest.raises(UsageError):
            proxy.parse_proxy(bad)


def test_destinations() -> None:
    name = onion(4)
    assert proxy.with_default_port(name) == name + ":9090"
    assert proxy.with_default_port(name + ":80") == name + ":80"
    assert proxy.with_default_port("example.org") == "example.org"
    assert proxy.check_destination(Address(name.upper() + ".", 80)) == Address(name, 80)
    assert proxy.check_destination(Address("www." + name, 80)) == Address("www." + name, 80)
    assert proxy.check_destination(Address("Example.org", 80)) == Address("Example.org", 80)
    with pytest.raises(UsageError, match="not a valid onion address"):
        proxy.check_destination(Address("facebookcorewwwi.onion", 80))  # v2: gone from Tor
    assert proxy.needs_proxy(Address(name, 80), None)
    assert not proxy.needs_proxy(Address("example.org", 80), None)
    assert proxy.needs_proxy(Address("example.org", 80), "socks5://h:1")


def test_an_onion_goes_to_the_socks_port_tor_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordingSocks(lambda request: None, reply=0x04)
    listeners = f'250-net/listeners/socks="unix:/run/tor/socks" "127.0.0.1:{recorder.port}"\r\n250 OK\r\n'
    fake = FakeTor({**NULL_AUTH, "GETINFO": listeners.encode()})
    monkeypatch.delenv("TOR_SOCKS_PORT", raising=False)
    monkeypatch.setenv("TOR_CONTROL_PORT", str(fake.port))
    try:
        with pytest.raises(NetworkError, match="the onion service is not reachable"):
            proxy.dial(Address(onion(5), 9090))
    finally:
        fake.close()
        recorder.close()
    assert fake.commands[-1] == "GETINFO net/listeners/socks"
    assert recorder.requests == [Request(3, onion(5), 9090)]
