"""Issue #11, findings 2 and 9, and the peers / forget / verify commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from p2pchat import identity

from .procs import Proc, listener


def _known(home: Path, *peers: dict[str, object]) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "known_peers"
    path.write_text(json.dumps({"version": 1, "peers": list(peers)}))
    return path


def _peer(key: bytes, names: list[str], addresses: list[str], verified: bool = False) -> dict[str, object]:
    return {"key": key.hex(), "names": names, "addresses": addresses, "verified": verified}


class Ran:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def _run(home: Path, *args: str) -> Ran:
    """The command line in this process (no chat: nothing to start up), its exit code and output."""
    import contextlib
    import io

    from p2pchat import cli

    out, err = io.StringIO(), io.StringIO()
    previous = os.environ.get("P2PCHAT_HOME")
    os.environ["P2PCHAT_HOME"] = str(home)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.run(list(args))
    finally:
        if previous is None:
            del os.environ["P2PCHAT_HOME"]
        else:
            os.environ["P2PCHAT_HOME"] = previous
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("LOCALHOST", "localhost"),
        ("localhost.", "localhost"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("[::FFFF:127.0.0.1]", "127.0.0.1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("Example.ORG.", "example.org"),
        ("abcdefghijklmnop.onion", "abcdefghijklmnop.onion"),
    ],
)
def test_hosts_are_remembered_in_one_spelling(host: str, expected: str) -> None:
    assert identity.normalise_host(host) == expected


def test_another_spelling_of_a_known_address_hits_the_hard_stop(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    old = bytes(range(32))
    with lis:
        for known_at, dial_host in [
            (["127.0.0.1"], "0x7f000001"),  # another spelling of an IP address
            (["localhost."], "LOCALHOST"),  # a trailing dot, another case
            (["localhost"], "127.0.0.1"),  # a name that resolved to it first (as p2pchat records it)
        ]:
            if dial_host == "127.0.0.1":
                known_at = [*known_at, "127.0.0.1"]
            addresses = [f"{host}:{port}" for host in known_at]
            _known(homes[1], _peer(old, ["lis"], addresses, verified=True))
            with Proc(["dial", f"{dial_host}:{port}", "--name", "dia"], homes[1]) as dia:
                dia.write("secret\n")
                assert dia.finish() == 3, (dial_host, dia.stderr_text)
            assert "has changed" in dia.err[-1] and identity.fingerprint(old) in dia.err[-1], dia.err
            assert "p2pchat forget " in dia.err[-1]
        assert lis.out == []


def test_first_contact_remembers_the_name_and_the_address_it_reached(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, Proc(["dial", f"LocalHost:{port}", "--name", "dia"], homes[1]) as dia:
        dia.write("hi\n")
        assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0
    (entry,) = json.loads((homes[1] / "known_peers").read_text())["peers"]
    assert set(entry["addresses"]) <= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    assert f"localhost:{port}" in entry["addresses"] and len(entry["addresses"]) == 2
    assert isinstance(entry["last_seen"], int)


def test_data_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o777)
    ran = _run(home, "id")
    assert ran.code == 4
    assert ran.err == (
        f"p2pchat: data directory {home} is writable by other users; refusing to trust it (fix: chmod go-w {home})\n"
    )


def test_known_peers_writable_by_others_is_refused(tmp_path: Path) -> None:
    path = _known(tmp_path, _peer(bytes(32), ["eve"], [], verified=True))
    os.chmod(path, 0o666)
    ran = _run(tmp_path, "peers")
    assert ran.code == 4
    assert f"fix: chmod go-w {path}" in ran.err and "eve" not in ran.err + ran.out


def test_known_peers_behind_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    elsewhere = _known(tmp_path / "elsewhere", _peer(bytes(32), ["eve"], [], verified=True))
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "known_peers").symlink_to(elsewhere)
    ran = _run(home, "peers")
    assert ran.code == 4
    assert "symbolic link" in ran.err


def test_peers_verify_and_forget(tmp_path: Path) -> None:
    a, b, c = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    _known(
        tmp_path,
        _peer(a, ["alice"], ["alice.example:9090"]),
        _peer(b, ["bob"], ["10.0.0.2:9090"]),
        _peer(c, ["bob\u200b"], []),  # looks like bob: "verify bob" must not pick one silently
    )
    listing = _run(tmp_path, "peers")
    assert listing.code == 0
    text = listing.out
    assert "alice" in text and identity.fingerprint(a) in text and "alice.example:9090" in text
    assert "bob\\u200b" in text and "not verified" in text and "last seen    never" in text

    ambiguous = _run(tmp_path, "verify", "bob")
    assert ambiguous.code == 2
    assert "2 known keys use the name 'bob'" in ambiguous.err and identity.fingerprint(b) in ambiguous.err

    assert _run(tmp_path, "verify", "ALICE").code == 0
    assert _run(tmp_path, "verify", identity.fingerprint(b).replace(" ", "")).code == 0
    peers = {bytes.fromhex(p["key"]): p for p in json.loads((tmp_path / "known_peers").read_text())["peers"]}
    assert peers[a]["verified"] and peers[b]["verified"] and not peers[c]["verified"]

    assert _run(tmp_path, "forget", "ALICE.example.:9090").code == 0  # any spelling of the address
    assert _run(tmp_path, "forget", identity.fingerprint(c)).code == 0
    assert _run(tmp_path, "verify", "nobody").code == 2
    assert _run(tmp_path, "forget", "bob").code == 0  # one bob left: the name is clear now
    peers = {bytes.fromhex(p["key"]): p for p in json.loads((tmp_path / "known_peers").read_text())["peers"]}
    assert list(peers) == [a] and peers[a]["addresses"] == []
