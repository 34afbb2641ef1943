"""File transfer, sans-IO: safe names, the wire messages, and two state machines joined in memory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

import pytest

from p2pchat.core import filenames, filewire
from p2pchat.core.filewire import (
    MAX_DATA,
    FileAccept,
    FileAck,
    FileCancel,
    FileData,
    FileDecline,
    FileEnd,
    FileOffer,
    FileResult,
)
from p2pchat.core.messages import MAX_PLAINTEXT, Hello
from p2pchat.core.transfer import (
    ACK_EVERY,
    WINDOW,
    Accepted,
    DataReceived,
    Ended,
    Event,
    Finished,
    Offered,
    Reoffered,
    Send,
    State,
    Transfers,
)
from p2pchat.errors import MessageError

from .helpers import SessionPair

SCALE = float(os.environ.get("P2PCHAT_FUZZ", "1"))  # as tests/test_fuzz.py: P2PCHAT_FUZZ=10 fuzzes ten times more

# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "saved"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\Windows\\system.ini", "system.ini"),
        ("C:autoexec.bat", "autoexec.bat"),
        ("C:\\x\\y.txt", "y.txt"),
        ("..", filenames.FALLBACK_NAME),
        (".", filenames.FALLBACK_NAME),
        ("dir/", filenames.FALLBACK_NAME),
        ("", filenames.FALLBACK_NAME),
        (".bashrc", "bashrc"),
        ("\x1b[2J\x1b]0;owned\x07x.txt", "_[2J_]0;owned_x.txt"),
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),  # RLO: would show as "invoiceexe.pdf"
        ("zero\u200bwidth", "zero_width"),
        ("line\u2028break", "line_break"),
        ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt"),  # NFC
        ("surrogate\udcff.bin", "surrogate_.bin"),
        ("trailing. . ", "trailing"),
        ("caf\u00e9 menu.txt", "caf\u00e9 menu.txt"),
    ],
)
def test_safe_name(offered: str, saved: str) -> None:
    assert filenames.safe_name(offered) == saved


def test_long_name_is_cut_keeping_the_extension() -> None:
    name = filenames.safe_name("a" * 300 + ".tar.gz")
    assert name.endswith(".gz") and len(name.encode()) == filenames.MAX_NAME_BYTES
    multibyte = filenames.safe_name("\u00e9" * 200 + ".txt")  # 2-byte characters: never cut in half
    assert multibyte.endswith(".txt") and len(multibyte.encode()) <= filenames.MAX_NAME_BYTES
    assert len(filenames.safe_name("x" * 300).encode()) == filenames.MAX_NAME_BYTES
    # NAME (n).ext and its .part still fit a 255-byte file name.
    numbered = filenames.numbered(name, 9999)
    assert numbered.endswith(" (9999).gz") and len((numbered + filenames.PART_SUFFIX).encode()) <= 255


def test_numbered_names() -> None:
    assert filenames.numbered("report.pdf", 1) == "report (1).pdf"
    assert filenames.numbered("archive.tar.gz", 2) == "archive.tar (2).gz"
    assert filenames.numbered("README", 3) == "README (3)"
    assert filenames.numbered("bashrc.", 1) == "bashrc. (1)"
    with pytest.raises(ValueError):
        filenames.numbered("x", 0)


def test_shown_escapes_what_a_terminal_would_act_on() -> None:
    assert filenames.shown("report.pdf") == "report.pdf"
    assert filenames.shown("a\x1b[31mb") == "a\\x1b[31mb"
    assert filenames.shown("x\u202ey") == "x\\u202ey"
    assert filenames.shown("back\\slash") == "back\\\\slash"
    assert filenames.was_changed("../x", "x") and not filenames.was_changed("e\u0301", "\u00e9")


# -- wire ----------------------------------------------------------------------------------


def test_exact_bytes() -> None:
    """Pinned so that an incompatible change to the wire format cannot land unnoticed."""
    assert filewire.encode(FileOffer(1, "r\u00e9sum\u00e9.pdf", 2345)) == (
        b'{"type":"file_offer","id":1,"name":"r\xc3\xa9sum\xc3\xa9.pdf","size":2345}'.ljust(128)
    )
    assert filewire.encode(FileAccept(1, 0)) == b'{"type":"file_accept","id":1,"offset":0}'.ljust(128)
    assert filewire.encode(FileDecline(7)) == b'{"type":"file_decline","id":7,"reason":"declined"}'.ljust(128)
    assert filewire.encode(FileCancel(7, "disk_error")) == b'{"type":"file_cancel","id":7,"reason":"disk_error"}'.ljust(
        128
    )
    assert filewire.encode(FileAck(1, 524288)) == b'{"type":"file_ack","id":1,"offset":524288}'.ljust(128)
    assert filewire.encode(FileEnd(1, bytes(range(32)))) == (
        b'{"type":"file_end","id":1,"sha256":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}'.ljust(
            128
        )
    )
    assert filewire.encode(FileResult(1, True)) == b'{"type":"file_result","id":1,"ok":true}'.ljust(128)
    assert filewire.encode_data(0x01020304, 0x0005060708090A0B, b"hi") == (
        b"\x10\x01\x02\x03\x04\x00\x05\x06\x07\x08\x09\x0a\x0bhi"
    )


def test_a_full_data_record_fills_one_noise_message() -> None:
    record = filewire.encode_data(1, 0, b"x" * MAX_DATA)
    assert len(record) == MAX_PLAINTEXT == 65535 - 16
    with pytest.raises(ValueError):
        filewire.encode_data(1, 0, b"x" * (MAX_DATA + 1))
    with pytest.raises(ValueError):
        filewire.encode_data(1, 0, b"")


@pytest.mark.parametrize(
    "message",
    [
        FileOffer(1, "a", 0),
        FileOffer(2**32 - 1, "\U0001f600" * 250, 2**53 - 1),
        FileAccept(3, 12345),
        FileDecline(4, "no_space"),
        FileCancel(5),
        FileAck(6, 2**53 - 1),
        FileEnd(7, hashlib.sha256(b"").digest()),
        FileResult(8, False),
    ],
)
def test_round_trip(message: filewire.Control) -> None:
    assert filewire.decode(filewire.encode(message)) == message


def test_data_round_trip_is_a_view() -> None:
    plaintext = filewire.encode_data(9, 65506, b"abc")
    decoded = filewire.decode(plaintext)
    assert isinstance(decoded, FileData) and decoded.id == 9 and decoded.offset == 65506
    assert isinstance(decoded.data, memoryview) and bytes(decoded.data) == b"abc"


def test_other_messages_are_not_ours() -> None:
    assert filewire.decode(b'{"type":"text","id":1,"text":"x"}') is None
    assert filewire.decode(b"\x01whatever") is None
    assert filewire.decode(b"") is None


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "file_offer", "id": 1, "name": "x"},
        {"type": "file_offer", "id": 1, "name": "", "size": 1},
        {"type": "file_offer", "id": 1, "name": "x" * 1025, "size": 1},
        {"type": "file_offer", "id": 1, "name": 5, "size": 1},
        {"type": "file_offer", "id": 0, "name": "x", "size": 1},
        {"type": "file_offer", "id": 2**32, "name": "x", "size": 1},
        {"type": "file_offer", "id": 1, "name": "x", "size": -1},
        {"type": "file_offer", "id": 1, "name": "x", "size": 2**53},
        {"type": "file_offer", "id": 1, "name": "x", "size": 1.5},
        {"type": "file_offer", "id": True, "name": "x", "size": 1},
        {"type": "file_accept", "id": 1},
        {"type": "file_accept", "id": 1, "offset": "0"},
        {"type": "file_decline", "id": 1, "reason": "\x1b[2J"},
        {"type": "file_decline", "id": 1, "reason": "x" * 33},
        {"type": "file_cancel", "id": "1"},
        {"type": "file_ack", "id": 1, "offset": -5},
        {"type": "file_end", "id": 1, "sha256": "AB" * 32},
        {"type": "file_end", "id": 1, "sha256": "ab" * 31},
        {"type": "file_end", "id": 1},
        {"type": "file_result", "id": 1, "ok": 1},
    ],
)
def test_malformed_control_messages(obj: dict[str, object]) -> None:
    with pytest.raises(MessageError):
        filewire.decode(json.dumps(obj).encode())


@pytest.mark.parametrize(
    "plaintext",
    [
        b"\x10",
        b"\x10\x00\x00\x00\x01" + bytes(8),  # a header without data
        b"\x10\x00\x00\x00\x00" + bytes(8) + b"x",  # transfer id 0
        b"\x10\x00\x00\x00\x01" + (2**53 - 1).to_bytes(8, "big") + b"xx",  # past the largest size
        b"\x10\x00\x00\x00\x01" + (2**64 - 1).to_bytes(8, "big") + b"x",
        b"{not json",
        b"{}{}",
        b"{\xff}",
    ],
)
def test_malformed_binary_and_json(plaintext: bytes) -> None:
    with pytest.raises(MessageError):
        filewire.decode(plaintext)


def test_fuzz_decoder() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    json_values = (
        strategies.none()
        | strategies.booleans()
        | strategies.integers(min_value=-(2**70), max_value=2**70)
        | strategies.floats(allow_nan=False)
        | strategies.text(max_size=40)
        | strategies.sampled_from(["0" * 64, "f" * 64, "declined", "", [], {}])
    )
    kinds = strategies.sampled_from(
        ["file_offer", "file_accept", "file_decline", "file_cancel", "file_ack", "file_end", "file_result"]
    )
    fields = strategies.dictionaries(
        strategies.sampled_from(["id", "name", "size", "offset", "reason", "sha256", "ok"]), json_values
    )

    @hypothesis.settings(max_examples=int(50 * SCALE), deadline=None, derandomize=True, database=None)
    @hypothesis.given(kind=kinds, body=fields)
    def objects(kind: str, body: dict[str, object]) -> None:
        try:
            message = filewire.decode(json.dumps({**body, "type": kind}).encode())
        except MessageError:
            return
        assert message is not None and filewire.decode(filewire.encode(message)) == message  # type: ignore[arg-type]

    @hypothesis.settings(max_examples=int(50 * SCALE), deadline=None, derandomize=True, database=None)
    @hypothesis.given(data=strategies.binary(max_size=64))
    def raw(data: bytes) -> None:
        for plaintext in (data, b"\x10" + data):
            with contextlib.suppress(MessageError):
                filewire.decode(plaintext)

    objects()
    raw()


# -- the state machines, two sides joined in memory ----------------------------------------


class Side:
    """One peer's Transfers with an in-memory 'disk': what the I/O layer does, without disk."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.transfers = Transfers()
        self.files = files or {}
        self.saved: dict[int, bytearray] = {}
        self.outbox: list[filewire.FileMessage] = []
        self.events: list[Event] = []
        self.hashes: dict[int, object] = {}

    def offer(self, name: str) -> int:
        transfer, message = self.transfers.offer(name, len(self.files[name]))
        self.outbox.append(message)
        return transfer.id

    def pump_data(self, limit: int = 10**9) -> int:
        """Send what the window allows: data records, then file_end."""
        sent = 0
        while sent < limit and (transfer := self.transfers.sending()) is not None:
            chunk = transfer.next_chunk()
            content = self.files[transfer.name]
            if chunk is None:
                self.outbox.append(transfer.end(hashlib.sha256(content).digest()))
                continue
            offset, length = chunk
            self.outbox.append(FileData(transfer.id, offset, memoryview(content[offset : offset + length])))
            transfer.sent(offset, length)
            sent += 1
        return sent

    def handle(self, message: filewire.FileMessage) -> None:
        for event in self.transfers.receive(message):
            self.events.append(event)
            if isinstance(event, Send):
                self.outbox.append(event.message)
            elif isinstance(event, DataReceived):
                buffer = self.saved[event.transfer.id]
                assert len(buffer) == event.offset
                buffer += event.data
                ack = event.transfer.written(len(buffer))
                if ack is not None:
                    self.outbox.append(ack)
            elif isinstance(event, Reoffered):  # everything received is "written" at once here
                self.outbox.append(event.transfer.resume_at(len(self.saved[event.transfer.id])))
            elif isinstance(event, Ended):
                ok = hashlib.sha256(self.saved[event.transfer.id]).digest() == event.transfer.sha256
                self.outbox.append(event.transfer.verified(ok))

    def accept(self, transfer_id: int, kept: bytes = b"") -> None:
        self.saved[transfer_id] = bytearray(kept)
        self.outbox.append(self.transfers.incoming[transfer_id].accept(len(kept)))


def deliver(source: Side, target: Side) -> int:
    """Move everything in source's outbox to target; how many messages moved."""
    moved = 0
    while source.outbox:
        message = source.outbox.pop(0)
        if not isinstance(message, FileData):  # every control message goes through the codec
            message = filewire.decode(filewire.encode(message))  # type: ignore[assignment]
        assert message is not None
        target.handle(message)
        moved += 1
    return moved


def run(alice: Side, bob: Side) -> None:
    while alice.pump_data() + deliver(alice, bob) + deliver(bob, alice):
        pass


def offered(side: Side) -> list[int]:
    return [event.transfer.id for event in side.events if isinstance(event, Offered)]


@pytest.mark.parametrize("size", [0, 1, MAX_DATA, MAX_DATA + 1, WINDOW + 3 * MAX_DATA + 7])
def test_transfer_sizes(size: int) -> None:
    content = os.urandom(size)
    alice, bob = Side({"f.bin": content}), Side()
    transfer_id = alice.offer("f.bin")
    deliver(alice, bob)
    assert offered(bob) == [transfer_id]
    bob.accept(transfer_id)
    run(alice, bob)
    assert bytes(bob.saved[transfer_id]) == content
    assert alice.transfers.outgoing[transfer_id].state is State.DONE
    assert bob.transfers.incoming[transfer_id].state is State.DONE
    assert not alice.transfers.busy and not bob.transfers.busy


def test_the_window_holds_the_sender_back() -> None:
    alice, bob = Side({"big": os.urandom(3 * WINDOW)}), Side()
    transfer_id = alice.offer("big")
    deliver(alice, bob)
    bob.accept(transfer_id)
    deliver(bob, alice)
    records = alice.pump_data()
    assert records * MAX_DATA >= WINDOW > (records - 1) * MAX_DATA  # exactly one window's worth
    assert alice.pump_data() == 0
    deliver(alice, bob)
    assert deliver(bob, alice) >= WINDOW // ACK_EVERY - 1  # acks open the window again
    assert alice.pump_data() > 0


def test_decline_and_cancel() -> None:
    alice, bob = Side({"a": b"x" * 10, "b": b"y" * (WINDOW * 2)}), Side()
    first, second = alice.offer("a"), alice.offer("b")
    deliver(alice, bob)
    bob.outbox.append(bob.transfers.incoming[first].decline())  # type: ignore[arg-type]
    bob.accept(second)
    deliver(bob, alice)
    assert alice.transfers.outgoing[first].state is State.STOPPED
    assert alice.transfers.outgoing[first].stopped_by_peer
    alice.pump_data(limit=3)
    cancel = alice.transfers.outgoing[second].cancel()
    assert cancel is not None and alice.transfers.outgoing[second].cancel() is None  # once
    alice.outbox.append(cancel)
    alice.outbox.append(FileData(second, 999, memoryview(b"late")))  # never looked at: after cancel
    deliver(alice, bob)
    incoming = bob.transfers.incoming[second]
    assert incoming.state is State.STOPPED and incoming.stopped_by_peer and incoming.reason == "cancelled"
    assert any(isinstance(e, Finished) and e.transfer is incoming for e in bob.events)


def test_data_in_flight_after_the_receiver_stops_is_ignored() -> None:
    alice, bob = Side({"b": b"y" * (WINDOW * 2)}), Side()
    transfer_id = alice.offer("b")
    deliver(alice, bob)
    bob.accept(transfer_id)
    deliver(bob, alice)
    alice.pump_data()
    decline = bob.transfers.incoming[transfer_id].decline("cancelled")
    assert decline is not None
    deliver(alice, bob)  # data records crossing the decline: ignored
    bob.outbox.append(decline)
    deliver(bob, alice)
    assert alice.transfers.outgoing[transfer_id].state is State.STOPPED
    assert alice.pump_data() == 0


def test_resume_after_a_link_loss_continues_from_what_arrived() -> None:
    content = os.urandom(WINDOW + 5 * MAX_DATA)
    alice, bob = Side({"f": content}), Side()
    transfer_id = alice.offer("f")
    deliver(alice, bob)
    bob.accept(transfer_id)
    deliver(bob, alice)
    alice.pump_data(limit=20)
    delivered = alice.outbox[:12]
    alice.outbox.clear()  # the rest is lost with the link
    for message in delivered:
        bob.handle(message)
    bob.outbox.clear()  # and so are bob's acks
    alice.transfers.link_lost()
    assert alice.transfers.outgoing[transfer_id].state is State.PAUSED and alice.pump_data() == 0
    alice.outbox.extend(alice.transfers.link_up())
    deliver(alice, bob)  # the repeated offer: bob answers where he stands
    assert bob.outbox == [FileAccept(transfer_id, 12 * MAX_DATA)]
    run(alice, bob)
    assert bytes(bob.saved[transfer_id]) == content
    assert alice.transfers.outgoing[transfer_id].state is State.DONE


def test_resume_after_everything_arrived_gets_the_verdict_again() -> None:
    alice, bob = Side({"f": b"hello"}), Side()
    transfer_id = alice.offer("f")
    deliver(alice, bob)
    bob.accept(transfer_id)
    deliver(bob, alice)
    alice.pump_data()
    deliver(alice, bob)
    bob.outbox.clear()  # the verdict is lost with the link
    alice.transfers.link_lost()
    alice.outbox.extend(alice.transfers.link_up())
    deliver(alice, bob)
    assert bob.outbox == [FileResult(transfer_id, True)]
    deliver(bob, alice)
    assert alice.transfers.outgoing[transfer_id].state is State.DONE


def test_an_undecided_offer_repeated_is_still_one_offer() -> None:
    alice, bob = Side({"f": b"x"}), Side()
    alice.offer("f")
    deliver(alice, bob)
    alice.transfers.link_lost()
    alice.outbox.extend(alice.transfers.link_up())
    deliver(alice, bob)
    assert len(offered(bob)) == 1 and not bob.outbox


def test_a_wrong_hash_fails_the_transfer() -> None:
    alice, bob = Side({"f": b"honest"}), Side()
    transfer_id = alice.offer("f")
    deliver(alice, bob)
    bob.accept(transfer_id)
    deliver(bob, alice)
    alice.pump_data()
    alice.outbox[0] = FileData(transfer_id, 0, memoryview(b"hacked"))  # a corrupted chunk
    run(alice, bob)
    assert bob.transfers.incoming[transfer_id].state is State.FAILED
    assert alice.transfers.outgoing[transfer_id].state is State.FAILED


def _accepted_pair(size: int = 10) -> tuple[Side, Side, int]:
    alice, bob = Side({"f": b"x" * size}), Side()
    transfer_id = alice.offer("f")
    deliver(alice, bob)
    bob.accept(transfer_id)
    deliver(bob, alice)
    return alice, bob, transfer_id


@pytest.mark.parametrize(
    "hostile",
    [
        FileData(1, 1, memoryview(b"x")),  # out of order
        FileData(1, 0, memoryview(b"x" * 11)),  # more than offered
        FileData(2, 0, memoryview(b"x")),  # never offered
        FileEnd(1, bytes(32)),  # before all data
        FileCancel(2),
        FileOffer(1, "other", 10),  # a different file under a used id
    ],
)
def test_hostile_sender(hostile: filewire.FileMessage) -> None:
    _, bob, _ = _accepted_pair()
    with pytest.raises(MessageError):
        bob.handle(hostile)


def test_hostile_sender_ignores_the_window() -> None:
    _, bob, transfer_id = _accepted_pair(size=2 * WINDOW)
    offset = 0
    with pytest.raises(MessageError, match="window"):
        while True:  # bob never gets to write: no acks, and the sender keeps going
            bob.transfers.receive(FileData(transfer_id, offset, memoryview(bytes(MAX_DATA))))
            offset += MAX_DATA


def test_data_before_accept_is_refused() -> None:
    alice, bob = Side({"f": b"x"}), Side()
    transfer_id = alice.offer("f")
    deliver(alice, bob)
    with pytest.raises(MessageError):
        bob.handle(FileData(transfer_id, 0, memoryview(b"x")))


@pytest.mark.parametrize(
    "hostile",
    [
        FileAck(1, 11),  # more than was sent
        FileAccept(1, 0),  # twice
        FileResult(1, True),  # before the end
        FileAccept(2, 0),  # never offered
        FileDecline(3),
    ],
)
def test_hostile_receiver(hostile: filewire.FileMessage) -> None:
    alice, _, _ = _accepted_pair()
    with pytest.raises(MessageError):
        alice.handle(hostile)


def test_accept_beyond_the_end_is_refused() -> None:
    alice, bob = Side({"f": b"x"}), Side()
    transfer_id = alice.offer("f")
    with pytest.raises(MessageError):
        alice.handle(FileAccept(transfer_id, 2))
    assert not any(isinstance(event, Accepted) for event in alice.events)
    del bob


# -- the session carries file messages only when both sides announce files ---------------------


def _sessions(
    alice_features: tuple[str, ...], bob_features: tuple[str, ...], rekey_interval: int = 1000
) -> SessionPair:
    pair = SessionPair(rekey_interval=rekey_interval)
    pair.alice._hello = Hello("alice", "test", alice_features)
    pair.bob._hello = Hello("bob", "test", bob_features)
    pair.handshake()
    return pair


def test_the_session_carries_file_messages_both_ways() -> None:
    pair = _sessions(("files",), ("files",), rekey_interval=3)
    assert "files" in pair.alice.features and "files" in pair.bob.features
    offer = FileOffer(1, "a.txt", 5)
    events = pair.bob.receive_data(pair.alice.send_plaintext(filewire.encode(offer)))
    assert events == [offer]
    frame = memoryview(bytearray(65537))
    received = []
    for offset in range(0, 5):  # crosses a rekey: seal_into returns it to send after the frame
        length, after = pair.alice.seal_into(filewire.encode_data(1, offset, b"x"), frame)
        received += pair.bob.receive_data(bytes(frame[:length]) + after)
    assert [(m.offset, bytes(m.data)) for m in received if isinstance(m, FileData)] == [(n, b"x") for n in range(5)]


def test_file_messages_are_ignored_unless_both_announce_files() -> None:
    pair = _sessions(("files",), ())
    assert pair.bob.receive_data(pair.alice.send_plaintext(filewire.encode(FileOffer(1, "a", 1)))) == []
    assert pair.bob.receive_data(pair.alice.send_plaintext(filewire.encode_data(1, 0, b"x"))) == []
