"""The network-namespace lab itself: it builds a real link, cuts it silently, and always cleans up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from . import netlab
from .netlab import NetLab

pytestmark = pytest.mark.skipif(netlab.unavailable() is not None, reason=netlab.unavailable() or "")

CLOSED_PORT = 9  # nothing listens there: a live link answers with a reset ("refused")


def _namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


# The lab uses nft where there is one; iptables only without it (or with P2PCHAT_SLOW=1).
TOOLS = netlab.firewalls() if os.environ.get("P2PCHAT_SLOW") == "1" else netlab.firewalls()[:1]


@pytest.mark.parametrize("tool", TOOLS)
def test_each_firewall_cuts_both_families_both_ways(tool: str) -> None:
    with NetLab(tool) as lab:
        assert lab.probe_all(CLOSED_PORT, timeout=10) == ["refused"] * 4
        lab.cut(port=CLOSED_PORT)  # one port only: other connections pass
        assert lab.probe_all(CLOSED_PORT, timeout=0.3) == ["timeout"] * 4
        assert lab.probe_all(CLOSED_PORT + 1, timeout=10) == ["refused"] * 4
        lab.restore()
        lab.cut()
        assert lab.probe_all(CLOSED_PORT + 1, timeout=0.3) == ["timeout"] * 4
        lab.restore()
        assert lab.probe_all(CLOSED_PORT, timeout=10) == ["refused"] * 4


def test_failure_inside_kills_processes_and_deletes_namespaces(homes: tuple[Path, Path]) -> None:
    with pytest.raises(RuntimeError, match="boom"), NetLab() as lab:
        lis = lab.run("b", ["listen", f"{lab.address('b')}:0"], homes[0])
        assert lis.wait_err(r"listening on (.*):\d+$").group(1) == lab.address("b")  # inside namespace b
        lab.cut()
        raise RuntimeError("boom")
    assert lis.popen.poll() is not None
    assert not set(lab.names) & set(_namespaces())


def test_names_are_unique_and_marked_as_ours() -> None:
    with NetLab() as one, NetLab() as two:
        names = [*one.names, *two.names]
        assert len(set(names)) == 4
        assert all(name.startswith(netlab.PREFIX) for name in names)
        assert {one.address("a"), one.address("b")} == set(netlab.ADDRESSES)
