"""Two real p2pchat processes on loopback, in pipe mode: data, order, and every exit code."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from .procs import Proc, dialer, listener


def test_both_directions_unicode_and_empty_lines(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port) as dia:
        lis.write("from listener\nünïcødé ✓ 🙂\n\nlast\n")
        dia.write("from dialer\n\n日本語\n")
        dia.wait_out(r"^lis: last$")  # everything from the listener arrived
        lis.wait_out(r"^dia: 日本語$")
        lis.close_stdin()  # half-close: a chat ends once both inputs have ended
        assert dia.finish() == 0  # EOF: waits for acks, says bye
        assert lis.finish() == 0  # the peer said bye
    assert dia.out == ["lis: from listener\n", "lis: ünïcødé ✓ 🙂\n", "lis: \n", "lis: last\n"]
    assert lis.out == ["dia: from dialer\n", "dia: \n", "dia: 日本語\n"]
    assert "dia left the chat" in lis.stderr_text


def test_ten_thousand_messages_in_order(homes: tuple[Path, Path]) -> None:
    count = 10_000
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port) as dia:
        dia.write("".join(f"{n}\n" for n in range(1, count + 1)))
        lis.close_stdin()  # half-close: a chat ends once both inputs have ended
        assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0, lis.stderr_text
    assert lis.out == [f"dia: {n}\n" for n in range(1, count + 1)]
    assert "not delivered" not in dia.stderr_text


def test_long_line_is_split_never_truncated(homes: tuple[Path, Path]) -> None:
    line = "".join(f"{n:07d} " for n in range(20_000))  # 160,000 characters: three messages
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port) as dia:
        dia.write(line + "\n")
        lis.close_stdin()  # half-close: a chat ends once both inputs have ended
        assert dia.finish() == 0
        assert lis.finish() == 0
    assert len(lis.out) >= 3
    assert "".join(out.removeprefix("dia: ").removesuffix("\n") for out in lis.out) == line


def test_connection_lost_lists_undelivered_and_exits_1(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0], "-v", "--resume-for", "0")
    with lis, dialer(homes[1], port) as dia:
        lis.wait_err(r"dia joined")
        dia.signal(signal.SIGSTOP)  # the dialer can no longer acknowledge anything
        lis.write("into the void\n")
        lis.wait_err(r"queued text 1$")
        dia.kill()  # gone without bye
        assert lis.finish() == 1
    assert "connection lost" in lis.stderr_text
    assert "not delivered: into the void" in lis.stderr_text  # (-v adds the details: a traceback)


def test_undelivered_at_eof_exits_1(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port, "--wait", "0.5", "-v") as dia:
        lis.wait_err(r"dia joined")
        lis.signal(signal.SIGSTOP)
        dia.write("never acknowledged\n")
        dia.wait_err(r"queued text 1$")
        assert dia.finish() == 1
        lis.signal(signal.SIGCONT)
    assert "not delivered: never acknowledged" in dia.stderr_text


def test_refused_exits_1(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, with no listener now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Proc(["dial", f"127.0.0.1:{port}"], tmp_path) as dia:
        assert dia.finish() == 1
    assert dia.err[-1].startswith("p2pchat: cannot reach 127.0.0.1:")
    assert "connection refused" in dia.err[-1]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (["dial", "nohostport"], ["dial", "host:99999"], ["listen", "x"], ["bogus"], ["dial"]):
        with Proc(args, tmp_path) as proc:
            assert proc.finish() == 2, args
        assert len(proc.err) == 1 and proc.err[0].startswith("p2pchat: "), proc.err


def test_wrong_pinned_key_exits_3(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port, "--peer", "00000 00000 00000 00000 00000 00000") as dia:
        assert dia.finish() == 3
    assert "is not the one given with --peer" in dia.stderr_text
    assert lis.out == []


def test_ctrl_c_exits_130(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port) as dia:
        lis.wait_err(r"dia joined")
        dia.signal(signal.SIGINT)
        assert dia.finish() == 130, dia.stderr_text
        lis.wait_err(r"dia left the chat")
        assert lis.finish() == 0, lis.stderr_text  # the interrupted side still said bye
    assert "dia left the chat" in lis.stderr_text


def test_sigterm_says_bye_and_exits_130(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port) as dia:
        lis.wait_err(r"dia joined")
        dia.signal(signal.SIGTERM)
        assert dia.finish() == 130
        lis.wait_err(r"dia left the chat")
        assert lis.finish() == 0


def test_ctrl_c_while_listening_exits_130(tmp_path: Path) -> None:
    lis, _ = listener(tmp_path)
    with lis:
        lis.signal(signal.SIGINT)
        assert lis.finish() == 130
    assert lis.err[-1] == "p2pchat: interrupted\n"


def test_pipe_mode_never_imports_prompt_toolkit(homes: tuple[Path, Path], tmp_path: Path) -> None:
    poison = tmp_path / "poison" / "prompt_toolkit"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('pipe mode imported prompt_toolkit')\n")
    env = {"PYTHONPATH": str(poison.parent)}
    lis, port = listener(homes[0], env=env)
    with lis, dialer(homes[1], port, env=env) as dia:
        dia.write("no terminal here\n")
        lis.close_stdin()  # half-close: a chat ends once both inputs have ended
        assert dia.finish() == 0, dia.stderr_text
        assert lis.finish() == 0, lis.stderr_text
    assert lis.out == ["dia: no terminal here\n"]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_default_listener_takes_ipv6_and_hostnames(homes: tuple[Path, Path]) -> None:
    for target in ("[::1]", "localhost", "127.0.0.1") if _has_ipv6_loopback() else ("localhost", "127.0.0.1"):
        lis = Proc(["listen", "0", "--name", "lis"], homes[0])
        port = lis.port()
        assert "listening on *:" in lis.stderr_text
        with lis, Proc(["dial", f"{target}:{port}", "--name", "dia"], homes[1]) as dia:
            dia.write(f"via {target}\n")
            lis.close_stdin()  # half-close: a chat ends once both inputs have ended
            assert dia.finish() == 0, dia.stderr_text
            assert lis.finish() == 0
        assert lis.out == [f"dia: via {target}\n"]


def test_version_and_help(tmp_path: Path) -> None:
    with Proc(["--version"], tmp_path) as proc:
        assert proc.finish() == 0
    assert proc.out == ["p2pchat 0.1.0\n"]
    with Proc(["--help"], tmp_path) as proc:
        assert proc.finish() == 0
    help_text = "".join(proc.out)
    assert "p2pchat listen 9090" in help_text and "exit codes" in help_text
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # neither made an identity key


def test_verbose_shows_the_details_of_a_failure(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Proc(["dial", f"127.0.0.1:{port}"], tmp_path / "quiet") as quiet:
        assert quiet.finish() == 1
    with Proc(["dial", f"127.0.0.1:{port}", "-v"], tmp_path / "loud") as loud:
        assert loud.finish() == 1
    assert "Traceback" not in quiet.stderr_text
    assert "ConnectionRefusedError" in loud.stderr_text  # the cause, behind -v
    assert loud.err[-1] == quiet.err[-1]  # and the same one line at the end
