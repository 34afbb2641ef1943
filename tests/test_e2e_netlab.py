"""Issue #10 end to end: real p2pchat processes over a real link that breaks the way real links break.

The network tests run two peers in two network namespaces (tests/netlab.py) and cut the veth
between them silently (a dead link: no reset, no ICMP). The rest run on loopback: ``listen --keep``,
``dial --retry`` and the half-close race (``P2PCHAT_SLOW=1`` runs that one 20 times instead of 5).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from . import netlab
from .netlab import NetLab
from .procs import TIMEOUT, Proc, _read, _wait, dialer, listener

needs_lab = pytest.mark.skipif(netlab.unavailable() is not None, reason=netlab.unavailable() or "")


KEEPALIVE = 1  # seconds: the dead-link deadline is then 3 s
LOSS_SLACK = 3.0  # on top of 3 x keepalive, for a loaded 2-core machine
CUT = 8.0  # seconds, as issue #10 says: "a 50-line pipe chat across an 8-second silent cut"
RESUME_FOR = 1  # seconds: the give-up test's --resume-for
EXIT_AFTER_GIVING_UP = 5.0  # seconds from "not delivered" to the exit: threads end, nothing waits on
LOST = r"^(p2pchat: )?connection lost"  # status lines, not a traceback that happens to say it
BACK = r"^(p2pchat: )?reconnected"
SLOW = os.environ.get("P2PCHAT_SLOW") == "1"  # the opt-in tests, too long for every CI run
HALF_CLOSE_RUNS = 20 if SLOW else 3  # issue #10: "passes 20 runs out of 20"


def _pair(lab: NetLab, homes: tuple[Path, Path], *options: str, ipv6: bool = False) -> tuple[Proc, Proc, int]:
    """A listener in namespace b and a dialer in namespace a, both in pipe mode, chatting; and the port."""
    lis = lab.run("b", ["listen", f"{lab.address('b', ipv6)}:0", "--name", "lis", *options], homes[0])
    port = lis.port()
    dia = lab.run("a", ["dial", f"{lab.address('b', ipv6)}:{port}", "--name", "dia", *options], homes[1])
    lis.wait_err(r"dia joined")
    dia.wait_err(r"connected to lis")
    return lis, dia, port


def _say(proc: Proc, lines: list[str]) -> None:
    proc.write("".join(line + "\n" for line in lines))


def _not_delivered(proc: Proc) -> list[str]:
    return [
        m.group(1) for line in proc.err if (m := re.match(r"(?:p2pchat: )?not delivered: (.*)$", line.rstrip("\n")))
    ]


def _finish(*procs: Proc) -> list[int]:
    """End every input first (a side whose input ended waits for the peer's end too), then the exit codes."""
    for proc in procs:
        proc.close_stdin()
    return [proc.finish() for proc in procs]


def _clean(*procs: Proc) -> None:
    """No traceback ever reaches a user."""
    for proc in procs:
        assert "Traceback" not in proc.stderr_text, proc.stderr_text


def _wait_exit(proc: Proc, timeout: float = TIMEOUT) -> int:
    """The exit code of a process that ends by itself (its stdin left open)."""
    try:
        code = proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout:g} s later; stderr: {proc.stderr_text!r}") from None
    proc.finish()
    return code


@needs_lab
def test_fifty_lines_across_an_eight_second_silent_cut(homes: tuple[Path, Path]) -> None:
    from_dia = [f"d{n:02d} from the dialer" for n in range(1, 51)]
    from_lis = [f"l{n:02d} from the listener" for n in range(1, 51)]
    with NetLab() as lab:
        lis, dia, _ = _pair(lab, homes, "--keepalive", str(KEEPALIVE))
        _say(dia, from_dia[:15])
        _say(lis, from_lis[:15])
        lis.wait_out(r"^dia: d15 ")
        dia.wait_out(r"^lis: l15 ")

        lab.cut()
        cut_at = time.monotonic()
        _say(dia, from_dia[15:35])  # typed during the outage: queued, sent after resuming
        _say(lis, from_lis[15:35])
        for proc in (dia, lis):  # both notice on their own, from the silence alone
            proc.wait_err(LOST, timeout=3 * KEEPALIVE + LOSS_SLACK)
        noticed = time.monotonic() - cut_at
        assert lis.out[-1] == "dia: d15 from the dialer\n"  # nothing crossed the cut
        assert dia.out[-1] == "lis: l15 from the listener\n"
        time.sleep(max(0.0, cut_at + CUT - time.monotonic()))  # the outage's length, not a synchronisation
        lab.restore()

        _say(dia, from_dia[35:42])  # written after the cut, perhaps before the link is back
        _say(lis, from_lis[35:42])
        dia.wait_err(BACK)
        lis.wait_err(BACK)
        _say(dia, from_dia[42:])
        _say(lis, from_lis[42:])
        assert _finish(dia, lis) == [0, 0], dia.stderr_text + lis.stderr_text
    print(f"loss noticed {noticed:.1f} s after the cut")
    assert lis.out == [f"dia: {line}\n" for line in from_dia]  # whole, each line once, in order
    assert dia.out == [f"lis: {line}\n" for line in from_lis]
    assert _not_delivered(dia) == _not_delivered(lis) == []
    _clean(lis, dia)


@needs_lab
def test_cut_for_good_both_give_up_after_resume_for_listing_exactly_the_undelivered(
    homes: tuple[Path, Path],
) -> None:
    with NetLab() as lab:
        lis, dia, _ = _pair(lab, homes, "--keepalive", str(KEEPALIVE), "--resume-for", str(RESUME_FOR))
        # Before the cut: each text is shown, then acknowledged; the reply to it follows that ack on
        # the same stream, so each side has its acks before the cut. (The last ack, for "l-before 2",
        # leaves within microseconds of the line shown; installing the cut takes milliseconds.)
        _say(dia, ["d-before"])
        lis.wait_out(r"^dia: d-before$")
        _say(lis, ["l-before"])
        dia.wait_out(r"^lis: l-before$")
        _say(dia, ["d-before 2"])
        lis.wait_out(r"^dia: d-before 2$")
        _say(lis, ["l-before 2"])
        dia.wait_out(r"^lis: l-before 2$")

        lab.cut()
        _say(dia, ["d-lost 1", "d-lost 2"])
        _say(lis, ["l-lost 1", "l-lost 2", "l-lost 3"])
        for proc in (dia, lis):
            proc.wait_err(LOST, timeout=3 * KEEPALIVE + LOSS_SLACK)
        for proc in (dia, lis):
            proc.wait_err(r"not delivered: ", timeout=RESUME_FOR + LOSS_SLACK)
            # Given up means gone: not still waiting on a dial attempt into the dead link.
            assert _wait_exit(proc, timeout=EXIT_AFTER_GIVING_UP) == 1, proc.stderr_text
    assert _not_delivered(dia) == ["d-lost 1", "d-lost 2"]
    assert _not_delivered(lis) == ["l-lost 1", "l-lost 2", "l-lost 3"]
    assert lis.out == ["dia: d-before\n", "dia: d-before 2\n"]
    assert dia.out == ["lis: l-before\n", "lis: l-before 2\n"]
    _clean(lis, dia)


@needs_lab
def test_dialer_killed_behind_a_dead_link_and_restarted_gets_through_at_once(homes: tuple[Path, Path]) -> None:
    """A laptop that rebooted: its old connection vanished without a FIN, and it dials again.

    The listener keeps the default keepalive (15 s: 45 s before it would notice the dead link by
    itself), so only the new handshake from the same key can make it give up the old conversation
    (with its own undelivered lines reported) and take the new one.
    """
    with NetLab() as lab:
        lis, ghost, port = _pair(lab, homes, ipv6=True)
        _say(ghost, ["hello from the first life"])
        lis.wait_out(r"^dia: hello from the first life$")
        ghost_port = int(re.search(r"joined from .*:(\d+)$", lis.stderr_text, re.M).group(1))  # type: ignore[union-attr]
        lab.cut(port=ghost_port)  # that connection only, for good: the new one gets through
        ghost.kill()  # kill -9: its FIN dies in the cut, and so does every retransmission to it
        _say(lis, ["l-lost 1", "l-lost 2"])  # into the dead connection

        reborn = lab.run("a", ["dial", f"{lab.address('b', ipv6=True)}:{port}", "--name", "dia"], homes[1])
        reborn.wait_err(r"connected to lis", timeout=10)  # at once: not after the listener's 45 s
        for line in ("not delivered: l-lost 1", "not delivered: l-lost 2"):
            lis.wait_err(re.escape(line), timeout=10)
        _say(reborn, ["hello from the second life"])
        lis.wait_out(r"^dia: hello from the second life$")
        _say(lis, ["welcome back"])
        reborn.wait_out(r"^lis: welcome back$")
        reborn_code, _ = _finish(reborn, lis)  # (the listener's code: the old conversation lost lines)
        assert reborn_code == 0, reborn.stderr_text
    assert lis.out == ["dia: hello from the first life\n", "dia: hello from the second life\n"]
    assert reborn.out == ["lis: welcome back\n"]
    assert _not_delivered(lis) == ["l-lost 1", "l-lost 2"]
    _clean(lis, reborn)


@needs_lab
@pytest.mark.skipif(not SLOW, reason="slow (a connect attempt into a dead link times out first): P2PCHAT_SLOW=1")
def test_dial_retry_through_a_dead_link_until_it_comes_back(homes: tuple[Path, Path]) -> None:
    """Unreachable, not refused: the SYNs vanish. The dialer keeps trying; once the link is back it gets through."""
    with NetLab() as lab:
        lis = lab.run("b", ["listen", f"{lab.address('b')}:0", "--name", "lis"], homes[0])
        port = lis.port()
        lab.cut()
        dia = lab.run("a", ["dial", f"{lab.address('b')}:{port}", "--name", "dia", "--retry", "30", "-v"], homes[1])
        dia.wait_err(r"(?i)trying again|timed out|unreachable")  # an attempt failed, and it keeps trying
        assert dia.popen.poll() is None
        lab.restore()
        dia.write("through at last\n")
        lis.wait_out(r"^dia: through at last$")
        assert _finish(dia, lis) == [0, 0], dia.stderr_text + lis.stderr_text
    _clean(lis, dia)


# -- loopback ----------------------------------------------------------------------------------------


def test_listen_keep_serves_callers_one_after_another(tmp_path: Path) -> None:
    lis, port = listener(tmp_path / "lis", "--keep")
    with lis:
        lis.close_stdin()  # like ``p2pchat listen --keep PORT </dev/null``: it only receives
        for n in (1, 2):
            with dialer(tmp_path / f"dia{n}", port, "--name", f"caller{n}") as dia:
                dia.write(f"call {n}\n")
                lis.wait_out(rf"^caller{n}: call {n}$")
                assert dia.finish() == 0, dia.stderr_text
            lis.wait_err(r"waiting for the next caller")
        assert lis.popen.poll() is None
        lis.signal(signal.SIGINT)
        assert lis.finish() == 130, lis.stderr_text
    assert lis.out == ["caller1: call 1\n", "caller2: call 2\n"]
    assert len(re.findall(r"safety code", lis.stderr_text)) == 2  # each chat has its own
    _clean(lis)


def test_dial_retry_waits_for_a_listener_started_later(homes: tuple[Path, Path]) -> None:
    with socket.socket() as probe:  # a port free a moment ago: nothing listens there yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with dialer(homes[1], port, "--retry", "20") as dia:
        dia.wait_err(r"refused")  # the first attempt failed, and the dialer is still there
        assert dia.popen.poll() is None
        with Proc(["listen", f"127.0.0.1:{port}", "--name", "lis"], homes[0]) as lis:
            dia.write("got through\n")
            lis.wait_out(r"^dia: got through$")
            assert _finish(dia, lis) == [0, 0], dia.stderr_text + lis.stderr_text
    _clean(lis, dia)


def _half_close_once(tmp_path: Path, run: int) -> tuple[int, int, str, str]:
    """``printf 'hi\\n' | p2pchat dial`` against ``p2pchat listen PORT </dev/null >log``.

    Returns both exit codes (dialer, listener), both stderr texts joined, and the log.
    """
    home = tmp_path / f"run{run}"
    log = home / "log"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PCHAT_")}
    env.update({"P2PCHAT_HOME": str(home / "lis"), "PYTHONUNBUFFERED": "1"})
    with log.open("wb") as out:
        lis = subprocess.Popen(
            [sys.executable, "-m", "p2pchat", "listen", "127.0.0.1:0", "--name", "lis"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
        )
    err: list[str] = []
    lines: queue.Queue[str] = queue.Queue()
    assert lis.stderr is not None
    reader = threading.Thread(target=_read, args=(lis.stderr, lines, err), daemon=True)
    reader.start()
    try:
        port = int(_wait(lines, r"listening on .*:(\d+)$", TIMEOUT, err).group(1))
        with dialer(home / "dia", port) as dia:
            dia.write("hi\n")
            dia_code = dia.finish()
        lis_code = lis.wait(TIMEOUT)
    finally:
        if lis.poll() is None:
            lis.kill()
            lis.wait(TIMEOUT)
        reader.join(TIMEOUT)
    return dia_code, lis_code, dia.stderr_text + "".join(err), log.read_text()


@pytest.mark.parametrize("run", range(HALF_CLOSE_RUNS))
def test_half_close_never_reports_a_delivered_line_lost(tmp_path: Path, run: int) -> None:
    dia_code, lis_code, stderr, log = _half_close_once(tmp_path, run)
    assert log == "dia: hi\n"
    assert "not delivered" not in stderr
    assert "Traceback" not in stderr
    assert (dia_code, lis_code) == (0, 0), stderr
