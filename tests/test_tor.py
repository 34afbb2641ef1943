"""listen --tor against a real tor (no network): authentication, the kept onion key, cleanup, errors."""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pchat.core import torcontrol as tc
from p2pchat.errors import LocalError, NetworkError, SecurityError, UsageError
from p2pchat.link import onionkey
from p2pchat.link import tor as torlink

from .procs import Proc
from .torprocs import FakeTor, Tor, hashed_password, on_tor, start_tor

IDENTITY = bytes(range(32))  # a public key: the onion key is kept per identity


@pytest.fixture
def tor(tmp_path: Path) -> Iterator[Tor]:
    started = start_tor(tmp_path / "tor", "--CookieAuthentication", "1")
    yield started
    started.stop()


def key_address(tor: Tor, key: str) -> str:
    """The address a key publishes (added and removed again on a connection of its own)."""
    control = torlink.open_control(tor.control)
    try:
        return tc.parse_add_onion(control.request(tc.add_onion(key, 1, ("127.0.0.1", 1), keep_key=False))).service_id
    finally:
        control.close()


def publish(tor: Tor, home: Path, ephemeral: bool = False, identity: bytes = IDENTITY) -> torlink.OnionService:
    said: list[str] = []
    onion = torlink.OnionService(torlink.TorOptions(9090, tor.control, ephemeral), said.append)
    onion.publish(4321, home, identity)
    assert said == [
        f"onion service {onion.address} is set up but not published: Tor's network is disabled (DisableNetwork 1)"
    ]
    return onion


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_address_is_kept_across_runs(tor: Tor, tmp_path: Path) -> None:
    first = publish(tor, tmp_path)
    first.close()
    second = publish(tor, tmp_path)
    second.close()
    assert first.address == second.address and first.address is not None
    assert first.address.endswith(".onion:9090") and not first.published
    path = onionkey.path_for(tmp_path, IDENTITY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    other = publish(tor, tmp_path, identity=bytes(32))  # another identity: another address
    other.close()
    assert other.address != first.address


def test_ephemeral_addresses_are_new_and_not_kept(tor: Tor, tmp_path: Path) -> None:
    kept = publish(tor, tmp_path)
    kept.close()
    one = publish(tor, tmp_path, ephemeral=True)
    two = publish(tor, tmp_path, ephemeral=True)
    one.close()
    two.close()
    assert len({kept.address, one.address, two.address}) == 3
    assert len(list((tmp_path / onionkey.DIRECTORY).iterdir())) == 1  # only the kept one


def test_a_second_listener_with_the_same_key_is_told_why(tor: Tor, tmp_path: Path) -> None:
    first = publish(tor, tmp_path)
    try:
        with pytest.raises(NetworkError, match=r"already published on this Tor.*--tor-ephemeral"):
            publish(tor, tmp_path)
    finally:
        first.close()


@pytest.mark.parametrize("method", ["SAFECOOKIE", "COOKIE"])
def test_cookie_authentication(tor: Tor, method: str) -> None:
    control = torlink.open_control(tor.control, methods=(method,))
    try:
        assert tc.parse_getinfo(control.request(tc.getinfo("version")))["version"].startswith("0.")
    finally:
        control.close()


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("SAFECOOKIE", "does not know the cookie in .*: the file is stale or belongs to another Tor"),
        ("COOKIE", "refused the cookie in .*Authentication cookie did not match"),
    ],
)
def test_a_wrong_cookie(tor: Tor, method: str, message: str) -> None:
    tor.cookie.write_bytes(os.urandom(32))  # tor keeps the real one in memory
    with pytest.raises(NetworkError, match=message):
        torlink.open_control(tor.control, methods=(method,))


def test_a_cookie_file_that_is_not_one(tor: Tor) -> None:
    tor.cookie.write_bytes(b"short")
    with pytest.raises(LocalError, match="is not a Tor cookie file"):
        torlink.open_control(tor.control)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: no permission error to see")
def test_an_unreadable_cookie_says_which_group_to_join(tor: Tor) -> None:
    tor.cookie.chmod(0)
    with pytest.raises(LocalError, match=r"permission denied; join the group \S+: 'sudo adduser \$USER"):
        torlink.open_control(tor.control)


def test_password_and_no_authentication(tmp_path: Path) -> None:
    with_password = start_tor(tmp_path / "pw", "--HashedControlPassword", hashed_password("sesame"))
    without = start_tor(tmp_path / "none")
    try:
        torlink.open_control(with_password.control, password="sesame").close()
        with pytest.raises(NetworkError, match="refused the password in P2PCHAT_TOR_PASSWORD"):
            torlink.open_control(with_password.control, password="wrong")
        with pytest.raises(NetworkError, match="wants a password: set P2PCHAT_TOR_PASSWORD"):
            torlink.open_control(with_password.control)
        torlink.open_control(without.control).close()  # method NULL
    finally:
        with_password.stop()
        without.stop()


def test_no_tor_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    with pytest.raises(NetworkError, match=rf"no Tor control port answers at 127.0.0.1:{port}: start Tor: 'sudo apt"):
        torlink.open_control(f"127.0.0.1:{port}")
    monkeypatch.setenv("TOR_CONTROL_PORT", str(tmp_path / "no-socket"))
    with pytest.raises(NetworkError, match=r"no Tor control port answers at .*no-socket: start Tor"):
        torlink.open_control()


def test_not_a_tor_control_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with pytest.raises(NetworkError, match="does not speak Tor's control protocol"):
            torlink.open_control(f"127.0.0.1:{port}")
        thread.join(10)


def test_control_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = torlink.parse_control_address
    assert parse("9051") == torlink.ControlAddress(host="127.0.0.1", port=9051)
    assert parse("[::1]:9051") == torlink.ControlAddress(host="::1", port=9051)
    assert str(parse("[::1]:9051")) == "[::1]:9051"
    assert (
        parse("unix:/run/tor/control") == parse("/run/tor/control") == torlink.ControlAddress(path="/run/tor/control")
    )
    for bad in ("", "x", "host:", ":0", "unix:", "1:99999"):
        with pytest.raises(UsageError):
            parse(bad)
    monkeypatch.delenv("TOR_CONTROL_PORT", raising=False)
    assert [str(c) for c in torlink.control_candidates(None)] == list(torlink.DEFAULT_CONTROL)
    monkeypatch.setenv("TOR_CONTROL_PORT", "8007")
    assert [str(c) for c in torlink.control_candidates(None)] == ["127.0.0.1:8007"]
    assert [str(c) for c in torlink.control_candidates("/x/control")] == ["/x/control"]


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        (None, None, ("127.0.0.1:0", 9090)),
        (None, 80, ("127.0.0.1:0", 80)),
        ("7000", None, ("127.0.0.1:7000", 7000)),
        ("127.0.0.1:7000", 443, ("127.0.0.1:7000", 443)),
        ("localhost:0", None, ("127.0.0.1:0", 9090)),
    ],
)
def test_listen_plan(address: str | None, port: int | None, expected: tuple[str, int]) -> None:
    where, options = torlink.plan(address, port, None, False)
    assert (where, options.port) == expected


@pytest.mark.parametrize("address", ["0.0.0.0:9090", "[::]:9090", "example.org:1", "x"])
def test_listen_plan_refuses_other_interfaces(address: str) -> None:
    with pytest.raises(UsageError):
        torlink.plan(address, None, None, False)


SERVICE_ID = "sxlvgyipun4oyiugts554e3tfgzojnm3cdsxrvqzts523g54sd3q5xyd"
SCRIPT = {
    "PROTOCOLINFO": b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n",
    "AUTHENTICATE": b"250 OK\r\n",
    "SETEVENTS": b"250 OK\r\n",
    "ADD_ONION": f"250-ServiceID={SERVICE_ID}\r\n250 OK\r\n".encode(),
    "GETCONF": b"250 DisableNetwork=0\r\n",
    "DEL_ONION": b"250 OK\r\n",
}


def test_the_address_is_printed_once_the_descriptor_is_uploaded(tmp_path: Path) -> None:
    # Recorded from the torlab: CREATED, UPLOAD, then UPLOADED, each for every directory.
    events = (
        f"650 HS_DESC CREATED {SERVICE_ID} UNKNOWN UNKNOWN HF5EDxd+aDMBawDyHqLpwHnkWsT3+1Pr3MZaptrUjpA\r\n"
        f"650 HS_DESC UPLOAD {SERVICE_ID} UNKNOWN $2687D47FF8916BCB8286B28F33DC2E46E8B126E5~test003r "
        "HF5EDxd+aDMBawDyHqLpwHnkWsT3+1Pr3MZaptrUjpA HSDIR_INDEX=8AC157B7FB56155EB5B5D190078DA9C7D77F091B01DFA8B8\r\n"
        f"650 HS_DESC UPLOADED {SERVICE_ID} UNKNOWN $78A9EF36F5986B36D1804C39D4B984A0D88FF64B~test000a\r\n"
    ).encode()
    fake = FakeTor(SCRIPT, events)
    said: list[str] = []
    onion = torlink.OnionService(torlink.TorOptions(9090, f"127.0.0.1:{fake.port}", ephemeral=True), said.append)
    try:
        onion.publish(4321, tmp_path, IDENTITY)
        assert onion.published
    finally:
        onion.close()
        fake.close()
    assert said[0].startswith("publishing the onion service through Tor")
    assert said[1].startswith(f"onion address: {SERVICE_ID}.onion:9090 (published in ")
    assert said[1].endswith(" s)") and len(said) == 2
    assert fake.commands[2:] == [
        "SETEVENTS HS_DESC",  # before ADD_ONION: no event can be missed
        "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=9090,127.0.0.1:4321",
        "GETCONF DisableNetwork",
        "SETEVENTS",  # no more events: nobody reads them during the chat
        f"DEL_ONION {SERVICE_ID}",
    ]


def test_no_upload_in_time_is_said_and_the_listener_goes_on(tmp_path: Path) -> None:
    failed = f"650 HS_DESC FAILED {SERVICE_ID} UNKNOWN $2687D47FF~test003r REASON=UPLOAD_REJECTED\r\n".encode()
    fake = FakeTor(SCRIPT, failed)
    said: list[str] = []
    options = torlink.TorOptions(9090, f"127.0.0.1:{fake.port}", ephemeral=True, publish_timeout=0.5)
    onion = torlink.OnionService(options, said.append)
    try:
        onion.publish(4321, tmp_path, IDENTITY)
    finally:
        onion.close()
        fake.close()
    assert not onion.published
    assert "has not published the onion service after 0.5 s" in said[-1]
    assert "uploads failed: UPLOAD_REJECTED" in said[-1] and f"{SERVICE_ID}.onion:9090 once published" in said[-1]


def test_listen_tor_chats_on_loopback_and_removes_the_service_at_exit(tor: Tor, homes: tuple[Path, Path]) -> None:
    lis = Proc(["listen", "--tor", "--tor-control", tor.control, "--name", "lis"], homes[0])
    with lis:
        port = int(lis.wait_err(r"listening on 127\.0\.0\.1:(\d+)$")[1])  # loopback only
        onion = lis.wait_err(r"onion service ([a-z2-7]{56})\.onion:9090 is set up but not published")[1]
        lis.wait_err("waiting for a peer")
        key = next((homes[0] / onionkey.DIRECTORY).glob("*.key")).read_text().strip()
        add_again = tc.add_onion(key, 1, ("127.0.0.1", 1), keep_key=False)
        send = on_tor(tor)
        assert send(add_again) == b"550 Onion address collision"  # published while the listener runs
        # Tor forwards an onion's callers to 127.0.0.1:PORT; dialing that directly is what they get.
        with Proc(["dial", f"127.0.0.1:{port}", "--name", "dia"], homes[1]) as dia:
            dia.write("through the onion's door\n")
            lis.wait_out(r"^dia: through the onion's door$")
            assert dia.finish() == 0
        assert lis.finish() == 0
    reply = send(add_again)
    assert reply.startswith(b"250 OK"), reply  # gone with the listener: the same key can be added again
    assert onion in key_address(tor, key)


def test_listen_tor_interrupted_removes_the_service(tor: Tor, homes: tuple[Path, Path]) -> None:
    lis = Proc(["listen", "--tor", "80", "--tor-control", tor.control], homes[0])
    with lis:
        lis.wait_err(r"onion service [a-z2-7]{56}\.onion:80 is set up")
        lis.wait_err("waiting for a peer")
        lis.signal(signal.SIGTERM)
        assert lis.finish() == 130
    key = next((homes[0] / onionkey.DIRECTORY).glob("*.key")).read_text().strip()
    assert on_tor(tor)(tc.add_onion(key, 1, ("127.0.0.1", 1), keep_key=False)).startswith(b"250")


def test_listen_tor_without_tor(homes: tuple[Path, Path]) -> None:
    port = free_port()
    lis = Proc(["listen", "--tor", "--tor-control", f"127.0.0.1:{port}"], homes[0])
    with lis:
        assert lis.finish() == 1
    assert f"p2pchat: no Tor control port answers at 127.0.0.1:{port}: start Tor" in lis.stderr_text
    assert "Traceback" not in lis.stderr_text


def test_onion_key_file_checks(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert onionkey.load(home, IDENTITY) is None
    key = "ED25519-V3:" + "A" * 86 + "=="
    path = onionkey.save(home, IDENTITY, key)
    assert onionkey.load(home, IDENTITY) == key
    path.chmod(0o640)
    with pytest.raises(SecurityError, match=r"accessible by other users.*chmod 600"):
        onionkey.load(home, IDENTITY)
    path.chmod(0o600)
    path.write_text("ED25519-V3:not a key\n")
    with pytest.raises(LocalError, match="is corrupt"):
        onionkey.load(home, IDENTITY)
    path.unlink()
    (tmp_path / "elsewhere").write_text(key)
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LocalError, match="symbolic link"):
        onionkey.load(home, IDENTITY)
    with pytest.raises(ValueError):
        onionkey.save(home, IDENTITY, "RSA1024:AAAA")
