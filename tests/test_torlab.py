"""A whole chat through a real onion service, on a private Tor network (../shared/torlab, chutney).

Opt-in: the network takes 80-160 s to boot. Run with ``P2PCHAT_TORLAB=1`` (the test starts a lab
and stops it), or point ``TORLAB_ENV`` at the ``env`` file of a lab that is already up
(``up.sh DIR`` writes ``DIR/env``). ``pytest -s`` shows the timings.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .procs import Proc
from .test_proxy import onion

TORLAB = Path(os.environ.get("TORLAB_PATH", Path(__file__).resolve().parents[2] / "shared" / "torlab"))
BOOT_TIMEOUT = 600.0  # up.sh allows 180 s per phase
ONION_TIMEOUT = 120.0  # publishing and the first rendezvous, on a loaded machine

pytestmark = pytest.mark.skipif(
    not os.environ.get("P2PCHAT_TORLAB") and not os.environ.get("TORLAB_ENV"),
    reason="opt-in: a private Tor network boots in 80-160 s; set P2PCHAT_TORLAB=1 (or TORLAB_ENV=DIR/env)",
)


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().split() if "=" in line)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if os.environ.get("TORLAB_ENV"):
        yield _read_env(Path(os.environ["TORLAB_ENV"]))
        return
    if not (TORLAB / "up.sh").exists():
        pytest.skip(f"no torlab at {TORLAB} (set TORLAB_PATH)")
    directory = tmp_path_factory.mktemp("torlab")
    started = time.monotonic()
    up = subprocess.run([str(TORLAB / "up.sh"), str(directory)], capture_output=True, timeout=BOOT_TIMEOUT)
    try:
        assert up.returncode == 0, up.stderr.decode(errors="replace")
        env = _read_env(directory / "env")
        print(f"\ntorlab: booted in {time.monotonic() - started:.0f} s")
        yield env
    finally:
        subprocess.run([str(TORLAB / "down.sh"), str(directory), "--purge"], capture_output=True, timeout=120)


def test_a_chat_through_an_onion_service(lab: dict[str, str], homes: tuple[Path, Path]) -> None:
    listener_env = {"TOR_CONTROL_PORT": lab["TOR_CONTROL_PORT"]}  # the onion host's tor
    dialer_env = {"TOR_SOCKS_PORT": lab["TOR_SOCKS_PORT"]}  # the client's tor
    with Proc(["listen", "--tor", "--name", "lis"], homes[0], listener_env) as lis:
        published = lis.wait_err(r"onion address: (\S+\.onion:9090) \(published in ([\d.]+) s\)", ONION_TIMEOUT)
        address, publish_s = published[1], float(published[2])
        # The invitation, run as printed: the onion first, the listener's key pinned.
        invitation = shlex.split(lis.wait_err(r"^p2pchat dial .*")[0])
        assert invitation[2] == address and "--peer" in invitation
        started = time.monotonic()
        with Proc([*invitation[1:], "--name", "dia"], homes[1], dialer_env) as dia:
            dia.wait_err(rf"connected to lis at {address} through Tor$", ONION_TIMEOUT)
            connect_s = time.monotonic() - started
            lis.wait_err(r"dia joined from 127\.0\.0\.1:")  # Tor hides the caller: it comes from loopback
            rtts = []
            for n in range(5):
                sent = time.monotonic()
                dia.write(f"ping {n}\n")
                lis.wait_out(rf"^dia: ping {n}$")
                lis.write(f"pong {n}\n")
                dia.wait_out(rf"^lis: pong {n}$")
                rtts.append(time.monotonic() - sent)
            assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0, lis.stderr_text
    print(
        f"\ntorlab: published in {publish_s:.1f} s, connected in {connect_s:.1f} s, "
        f"round trip {min(rtts) * 1000:.0f}-{max(rtts) * 1000:.0f} ms (5 pings, through the pipes)"
    )


def test_an_onion_nobody_publishes(lab: dict[str, str], homes: tuple[Path, Path]) -> None:
    started = time.monotonic()
    with Proc(["dial", f"{onion(9)}:9090"], homes[0], {"TOR_SOCKS_PORT": lab["TOR_SOCKS_PORT"]}) as dia:
        assert dia.finish(ONION_TIMEOUT) == 1
    assert "the onion service is not reachable" in dia.stderr_text or "Tor found no descriptor" in dia.stderr_text
    print(f"\ntorlab: an unknown onion is refused in {time.monotonic() - started:.1f} s")
