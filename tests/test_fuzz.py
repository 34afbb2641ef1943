"""Random and mutated bytes into every receive path: only p2pchat's own errors may come out.

Seeded, so a failure is repeatable; the counts keep the whole file to seconds.
"""

from __future__ import annotations

import contextlib
import os
import random

from p2pchat.core import messages
from p2pchat.core.framing import FrameDecoder
from p2pchat.core.messages import Hello, Text
from p2pchat.core.noise import CipherState
from p2pchat.core.session import Session
from p2pchat.errors import ConnectionLost, P2PChatError, RemoteProtocolError

from .helpers import SessionPair, key

SEED = 20261123
# CI runs every suite on four Pythons; the hypothesis tests fuzz too. P2PCHAT_FUZZ=10 runs ten times more.
SCALE = float(os.environ.get("P2PCHAT_FUZZ", "1"))


def rounds(count: int) -> int:
    return max(1, int(count * SCALE))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(5)
        position = rng.randrange(len(out) + 1)
        if choice == 0 and out:  # flip bits
            out[position % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1:  # truncate
            del out[position:]
        elif choice == 2:  # insert random bytes
            out[position:position] = rng.randbytes(rng.randint(1, 8))
        elif choice == 3 and out:  # overwrite a byte
            out[position % len(out)] = rng.randrange(256)
        else:  # duplicate a slice
            out[position:position] = out[position : position + rng.randint(1, 40)]
    return bytes(out)


def test_frame_decoder_fuzz() -> None:
    rng = random.Random(SEED)
    frames = 0
    for _ in range(rounds(30_000)):
        decoder = FrameDecoder()
        # Length prefixes that are small enough to complete, or not, followed by too few or too many bytes.
        data = b"".join(
            rng.randint(0, 8).to_bytes(2, "big") + rng.randbytes(rng.randint(0, 10)) for _ in range(rng.randint(0, 3))
        )
        if rng.random() < 0.2:
            data = rng.randbytes(rng.randint(0, 24))
        try:
            for chunk in (data[:3], data[3:]):
                frames += len(decoder.frames(chunk))
            decoder.end_of_stream()
        except RemoteProtocolError:
            pass
    assert frames > 1000  # the random data did make whole frames, not only errors


def test_message_decoder_fuzz() -> None:
    rng = random.Random(SEED)
    samples = [messages.encode(m) for m in (Hello("alice", "c"), Text(1, "hi"), Text(2, "x", action=True))]
    samples += [b'{"type":"ack","id":3}', b'{"type":"rekey"}', b'{"type":"bye"}', b"{}", b"[1,2]"]
    decoded = 0
    for _ in range(rounds(25_000)):
        data = _mutate(rng, rng.choice(samples))
        with contextlib.suppress(RemoteProtocolError):
            decoded += messages.decode(data) is not None
    assert decoded > 1000


def test_handshake_fuzz() -> None:
    rng = random.Random(SEED)
    good = SessionPair()
    first = good.alice.data_to_send()
    second_pair = SessionPair()
    second_pair.bob.receive_data(second_pair.alice.data_to_send())
    second = second_pair.bob.data_to_send()
    completed = 0
    for n in range(rounds(4_000)):
        responder = n % 2 == 0
        session = Session(initiator=not responder, static_key=key(5), hello=Hello("f", "f"), ephemeral=key(6))
        data = _mutate(rng, first if responder else second) if n % 5 else rng.randbytes(rng.randint(0, 200))
        try:
            session.receive_data(data)
            session.receive_eof()
        except (RemoteProtocolError, ConnectionLost):
            pass
        else:
            completed += 1
    assert completed == 0  # nothing mutated ever completes a handshake and a clean close


def _receiver(recv_key: bytes) -> Session:
    """A responder whose handshake is done, without running one: the fuzz loop stays fast."""
    session = Session(initiator=False, static_key=key(2), hello=Hello("bob", "test"))
    session._handshake = None
    session._recv_cipher = CipherState(recv_key)
    session._hello_received = True
    return session


def test_session_receive_fuzz() -> None:
    rng = random.Random(SEED)
    pair = SessionPair()
    pair.handshake()
    assert pair.bob._recv_cipher is not None and pair.bob._recv_cipher.k is not None
    recv_key, nonce = pair.bob._recv_cipher.k, pair.bob._recv_cipher.n
    texts = [Text(n, f"message {n} " * rng.randint(1, 30)) for n in range(1, 4)]
    frames = [pair.alice.send(text) for text in texts]
    clean = _receiver(recv_key)
    clean._recv_cipher.set_nonce(nonce)  # type: ignore[union-attr]
    assert clean.receive_data(b"".join(frames)) == texts  # unmutated, the frames are fine
    accepted = 0
    for _ in range(rounds(12_000)):
        session = _receiver(recv_key)
        session._recv_cipher.set_nonce(nonce)  # type: ignore[union-attr]
        data = _mutate(rng, b"".join(frames[: rng.randint(1, 3)]))
        try:
            session.receive_data(data)
            session.receive_eof()
        except P2PChatError as exc:
            assert isinstance(exc, (RemoteProtocolError, ConnectionLost)), exc
        else:
            accepted += 1
    assert accepted == 0
