"""A hostile peer or caller: nothing it sends drives the terminal, and the listener keeps going."""

from __future__ import annotations

import socket
from pathlib import Path

from p2pchat.term.sanitize import MAX_NAME_CHARS, NO_NAME, clean_name, clean_text

from .procs import TIMEOUT, dialer, listener


def test_control_characters_and_bidi_overrides_are_escaped() -> None:
    hostile = "a\x1b[2Jb\x07c\x7fd\x9b31me\u202eevil\u2066x\u2069\x00"
    assert clean_text(hostile) == "a\\x1b[2Jb\\x07c\\x7fd\\x9b31me\\u202eevil\\u2066x\\u2069\\x00"
    assert clean_text("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
    assert clean_text("ünïcødé 🙂 日本語") == "ünïcødé 🙂 日本語"


def test_names_are_one_line_cut_and_never_empty() -> None:
    assert clean_name("x" * 100) == "x" * (MAX_NAME_CHARS - 1) + "…"
    assert len(clean_name("y" * 33)) == MAX_NAME_CHARS
    assert clean_name("") == NO_NAME and clean_name("   ") == NO_NAME
    assert clean_name("al\nice\t\x1b]0;pwned\x07") == "al\\x0aice\\x09\\x1b]0;pwned\\x07"


def test_hostile_text_is_escaped_in_pipe_mode(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    with lis, dialer(homes[1], port, "--name", "evil\x1b[31m") as dia:
        dia.write("\x1b]0;title\x07\u202egnp.exe\n")
        lis.close_stdin()  # half-close: a chat ends once both inputs have ended
        assert dia.finish() == 0
        assert lis.finish() == 0
    assert lis.out == ["evil\\x1b[31m: \\x1b]0;title\\x07\\u202egnp.exe\n"]


def test_listener_survives_bad_callers(homes: tuple[Path, Path]) -> None:
    lis, port = listener(homes[0])
    callers = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",  # another protocol
        bytes.fromhex("16030100a5010000a10303") + bytes(160),  # the start of a TLS ClientHello
        b"\x00\x00garbage",  # an empty frame
        b"\x00\x20" + b"\x01" * 16,  # hangs up in the middle of the first handshake message
    ]
    with lis:
        for data in callers:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as caller:
                caller.sendall(data)
                caller.shutdown(socket.SHUT_WR)
                while caller.recv(1000):  # whatever the listener answers, it hangs up on this caller
                    pass
            lis.wait_err(r"dropped a caller from 127\.0\.0\.1:\d+: ")
        with dialer(homes[1], port) as dia:  # and a real peer still gets through
            dia.write("made it\n")
            lis.close_stdin()  # half-close: a chat ends once both inputs have ended
            assert dia.finish() == 0
        assert lis.finish() == 0
    assert lis.out == ["dia: made it\n"]
    dropped = [line for line in lis.err if "dropped a caller" in line]
    assert len(dropped) == len(callers) and "Traceback" not in lis.stderr_text
