"""Identity and trust, with two real processes that have separate homes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from p2pchat import identity

from .procs import Proc, dialer, listener


def _fingerprint(home: Path) -> str:
    with Proc(["id"], home) as proc:
        assert proc.finish() == 0
    return proc.out[-1].strip()


def _chat_once(homes: tuple[Path, Path], *dial_args: str) -> tuple[Proc, Proc]:
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port, *dial_args) as dia:
        dia.write("hi\n")
        assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0, lis.stderr_text
    return lis, dia


def test_identity_key_is_private_and_stable(tmp_path: Path) -> None:
    first = _fingerprint(tmp_path)
    assert first == _fingerprint(tmp_path)  # made once, then reused
    assert identity.parse_fingerprint(first) == first  # six groups of five digits
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "identity").stat().st_mode) == 0o600


def test_first_contact_is_announced_and_remembered(homes: tuple[Path, Path]) -> None:
    lis, dia = _chat_once(homes)
    for proc, other in ((lis, "dia"), (dia, "lis")):
        assert f"first contact with {other}" in proc.stderr_text
        assert "safety code" in proc.stderr_text
    codes = [line.split("safety code ")[1][:23] for line in lis.err + dia.err if "safety code" in line]
    assert len(codes) == 2 and codes[0] == codes[1]  # the same on both sides
    known = json.loads((homes[1] / "known_peers").read_text())["peers"]
    assert len(known) == 1 and known[0]["names"] == ["lis"] and known[0]["verified"] is False
    assert known[0]["addresses"][0].startswith("127.0.0.1:")
    lis, dia = _chat_once(homes)  # the second time they are known
    assert "known but not verified" in dia.stderr_text


def test_changed_key_at_a_dialed_address_aborts_before_any_message(homes: tuple[Path, Path], tmp_path: Path) -> None:
    lis, port = listener(homes[0])
    with lis:
        # The dialer remembers another key at this address (as if it had talked to someone else there).
        old_key = bytes(range(32))
        (homes[1]).mkdir(parents=True)
        known = {
            "version": 1,
            "peers": [{"key": old_key.hex(), "names": ["lis"], "addresses": [f"127.0.0.1:{port}"], "verified": True}],
        }
        (homes[1] / "known_peers").write_text(json.dumps(known))
        with dialer(homes[1], port) as dia:
            dia.write("secret\n")
            assert dia.finish() == 3
        line = dia.err[-1]
        assert "has changed" in line and identity.fingerprint(old_key) in line and _fingerprint(homes[0]) in line
        assert f"p2pchat forget 127.0.0.1:{port}" in line
        lis.wait_err(r"dropped a caller")  # the listener heard nothing and keeps waiting
        assert lis.out == []
        # After forgetting, the same dial works.
        with Proc(["forget", f"127.0.0.1:{port}"], homes[1]) as forget:
            assert forget.finish() == 0
        with dialer(homes[1], port) as dia:
            dia.write("hello again\n")
            assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0
    assert lis.out == ["dia: hello again\n"]


def test_name_claimed_by_another_key_warns(homes: tuple[Path, Path]) -> None:
    homes[1].mkdir(parents=True)
    known = {"version": 1, "peers": [{"key": bytes(32).hex(), "names": ["lis"], "addresses": [], "verified": True}]}
    (homes[1] / "known_peers").write_text(json.dumps(known))
    _, dia = _chat_once(homes)
    assert "WARNING: the name lis was used before by a different key" in dia.stderr_text


def test_pinned_key_that_matches(homes: tuple[Path, Path]) -> None:
    pinned = _fingerprint(homes[0]).replace(" ", "")  # any spacing will do
    lis, _ = _chat_once(homes, "--peer", pinned)
    assert lis.out == ["dia: hi\n"]


def test_pinned_key_on_the_listener_that_does_not_match(homes: tuple[Path, Path], tmp_path: Path) -> None:
    # Issue #11 finding 6: the wrong key is refused with one line, and the listener waits for the right one.
    lis, port = listener(homes[0], "--peer", _fingerprint(homes[1]))
    with lis:
        with dialer(tmp_path / "someone-else", port) as other:
            other.write("hi\n")
            assert other.finish() == 3  # the listener hung up mid-handshake: a refusal, not a network failure
        lis.wait_err(r"dropped a caller from .*is not the one given with --peer")
        assert lis.popen.poll() is None
        with dialer(homes[1], port) as dia:
            dia.write("the right one\n")
            assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0
    assert lis.out == ["dia: the right one\n"]


def test_passphrase_match(homes: tuple[Path, Path]) -> None:
    env = {"P2PCHAT_PASSPHRASE": "correct horse battery staple"}
    lis, port = listener(homes[0], env=env)
    with lis, dialer(homes[1], port, env=env) as dia:
        dia.write("with a passphrase\n")
        assert dia.finish() == 0
        assert lis.finish() == 0
    assert lis.out == ["dia: with a passphrase\n"]
    for proc in (lis, dia):
        assert "correct horse" not in proc.stderr_text
    for file in homes[0].iterdir():
        assert b"correct horse" not in file.read_bytes()


def test_passphrase_mismatch(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], env={"P2PCHAT_PASSPHRASE": "one thing"})
    with lis:
        with dialer(homes[1], port, env={"P2PCHAT_PASSPHRASE": "another"}) as dia:
            dia.write("should never arrive\n")
            assert dia.finish() == 3
        assert "passphrase" in dia.err[-1]
        lis.wait_err(r"dropped a caller .*handshake")  # one line, and the listener keeps waiting
        assert lis.popen.poll() is None
    assert lis.out == []


def test_identity_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    _fingerprint(tmp_path)
    key = tmp_path / "identity"
    os.chmod(key, 0o644)
    with Proc(["id"], tmp_path) as proc:
        assert proc.finish() == 3
    assert proc.err == [
        f"p2pchat: identity key {key} is accessible by other users; refusing to use it (fix: chmod 600 {key})\n"
    ]


def test_corrupt_identity_key_is_an_error_not_replaced(tmp_path: Path) -> None:
    _fingerprint(tmp_path)
    key = tmp_path / "identity"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    with Proc(["id"], tmp_path) as proc:
        assert proc.finish() == 4
    assert "is corrupt" in proc.err[-1] and "Traceback" not in proc.stderr_text
    assert key.read_bytes() == b"-----BEGIN PRIVATE KEY-----\nnot a key\n"


def test_unwritable_home_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "ro"
    home.mkdir(mode=0o500)
    if os.access(home, os.W_OK):  # root ignores permissions: a file where the directory should be
        home = tmp_path / "file"
        home.write_text("")
    with Proc(["id"], home) as proc:
        assert proc.finish() == 4
    assert len(proc.err) == 1 and proc.err[0].startswith("p2pchat: cannot ")
