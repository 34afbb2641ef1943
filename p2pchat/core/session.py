"""One p2pchat session: handshake, transport ciphers and messages; bytes in, events out (sans-IO).

During the handshake one caller drives the whole session:

    session = Session(initiator=True, static_key=key, hello=Hello("alice", CLIENT))
    send(session.data_to_send())
    events = session.receive_data(received_bytes)      # until session.handshake_complete
    send(session.data_to_send())                        # the last handshake message and hello

After it the two directions share no state, so a sender thread may call
:meth:`Session.send` while a receiver thread calls :meth:`Session.receive_data`.
The protocol asks the receiver of a text to acknowledge it: whoever reads a
:class:`Text` event answers with ``session.send(Ack(text.id))``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from ..errors import (
    ConnectionLost,
    HandshakeError,
    LocalProtocolError,
    MessageError,
    P2PChatError,
    PassphraseMismatch,
    RemoteProtocolError,
)
from . import binary, filewire, messages
from .framing import FrameDecoder, encode_frame
from .messages import Ack, Bye, Done, Hello, Keepalive, Message, Rekey, Text
from .noise import CipherState, HandshakeState

PROLOGUE = b"p2pchat/1"  # binds the handshake to this protocol and version
FIRST_MESSAGE_LEN = {False: 32, True: 48}  # -> e without, with a psk (keyed by "with a psk")
REKEY_INTERVAL = 1000  # messages between our rekeys: well inside the protocol's 10,000

# Argon2id turns a passphrase into the XXpsk3 psk; the costs are part of the protocol.
PSK_SALT = b"p2pchat/1 passphrase"
PSK_ITERATIONS = 3
PSK_LANES = 4
PSK_MEMORY_KIB = 65536


def derive_psk(passphrase: str) -> bytes:
    """The 32-byte psk for *passphrase*: Argon2id with the protocol's fixed salt and costs."""
    kdf = Argon2id(salt=PSK_SALT, length=32, iterations=PSK_ITERATIONS, lanes=PSK_LANES, memory_cost=PSK_MEMORY_KIB)
    return kdf.derive(passphrase.encode("utf-8"))


@dataclass(frozen=True)
class HandshakeComplete:
    """The handshake finished: the peer proved it holds *remote_static*."""

    remote_static: bytes  # the peer's 32-byte X25519 identity key
    handshake_hash: bytes  # Noise h: the same on both sides, the source of the safety code


Event = HandshakeComplete | Hello | Text | Ack | Bye | Keepalive | Done | filewire.FileMessage


class Session:
    """The p2pchat/1 protocol for one side of one connection."""

    def __init__(
        self,
        *,
        initiator: bool,
        static_key: X25519PrivateKey,
        hello: Hello | Callable[[], Hello],
        psk: bytes | None = None,
        ephemeral: X25519PrivateKey | None = None,
        generate: Callable[[], X25519PrivateKey] = X25519PrivateKey.generate,
        rekey_interval: int = REKEY_INTERVAL,
    ) -> None:
        if rekey_interval < 1:
            raise ValueError("rekey_interval must be at least 1")
        self._handshake: HandshakeState | None = HandshakeState(
            initiator=initiator,
            s=static_key,
            prologue=PROLOGUE,
            psk=psk,
            ephemeral=ephemeral,
            generate=generate,
        )
        self.initiator = initiator
        self._with_psk = psk is not None
        self._handshake_read = 0  # handshake messages read so far
        # A callable is asked for the hello when it is sent, at the end of the handshake: a chat that
        # resumes puts in it what it has received so far, which may change while a caller connects.
        self._make_hello = hello
        self._hello: Hello | None = hello if isinstance(hello, Hello) else None
        self._rekey_interval = rekey_interval
        self._decoder = FrameDecoder()
        self._outgoing = bytearray()  # handshake-time output only
        self._send_cipher: CipherState | None = None
        self._recv_cipher: CipherState | None = None
        self._sent_since_rekey = 0
        self._bye_sent = False
        self._hello_received = False
        self._features: frozenset[str] = frozenset()
        self._binary = False  # extension binary in use: texts and acks go as binary records
        self._sent_text_ids: deque[int] = deque()  # with binary: ids sent, not yet acknowledged
        self.peer_hello: Hello | None = None
        self.bye_received = False
        self._failed: P2PChatError | None = None
        if initiator:
            self._outgoing += encode_frame(self._handshake.write_message())

    @property
    def handshake_complete(self) -> bool:
        return self._handshake is None

    @property
    def features(self) -> frozenset[str]:
        """The extensions both sides announced in hello; empty until the peer's hello is read."""
        return self._features

    @property
    def handshake_messages_read(self) -> int:
        """How many of the peer's handshake messages this side has read (whole or failed)."""
        return self._handshake_read

    @property
    def has_unsent_data(self) -> bool:
        """Handshake output not yet taken by data_to_send()."""
        return bool(self._outgoing)

    def data_to_send(self) -> bytes:
        """Bytes the handshake wants sent now (frames, possibly several)."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    # -- sending -------------------------------------------------------------

    def send(self, message: Message) -> bytes:
        """The frame(s) carrying *message*; a rekey message follows every *rekey_interval*."""
        if self._send_cipher is None:
            raise LocalProtocolError("cannot send before the handshake is complete")
        if self._bye_sent:
            raise LocalProtocolError("cannot send after bye")
        if isinstance(message, Rekey):
            raise ValueError("rekeying is the session's job")
        out = self._seal(message)
        if isinstance(message, Bye):
            self._bye_sent = True
            return out
        return out + self._count_for_rekey()

    def send_plaintext(self, plaintext: bytes | memoryview) -> bytes:
        """The frame(s) carrying an extension's ready-made plaintext (e.g. a file data record)."""
        if self._send_cipher is None or self._bye_sent:
            raise LocalProtocolError("cannot send before the handshake is complete or after bye")
        out = encode_frame(self._send_cipher.encrypt_with_ad(b"", bytes(plaintext)))
        return out + self._count_for_rekey()

    def seal_into(self, plaintext: bytes | memoryview, out: memoryview) -> tuple[int, bytes]:
        """send_plaintext() written into *out* (2 + len(plaintext) + 16 bytes at least).

        Returns the frame's length in *out*, and the bytes to send right after it (a rekey, now
        and then). The bulk path for file data: the caller reuses one buffer for every record.
        """
        if self._send_cipher is None or self._bye_sent:
            raise LocalProtocolError("cannot send before the handshake is complete or after bye")
        length = self._send_cipher.encrypt_into(b"", plaintext, out[2:])
        out[0:2] = length.to_bytes(2, "big")
        return 2 + length, self._count_for_rekey()

    def _count_for_rekey(self) -> bytes:
        assert self._send_cipher is not None
        out = b""
        self._sent_since_rekey += 1
        if self._sent_since_rekey >= self._rekey_interval:
            out += self._seal(Rekey())
            self._send_cipher.rekey()  # right after sending it, as the protocol says
            self._sent_since_rekey = 0
        return out

    def _seal(self, message: Message) -> bytes:
        assert self._send_cipher is not None
        kind = type(message)
        if self._binary and kind is Text:
            assert isinstance(message, Text)
            plaintext = binary.encode_text(message)
            self._sent_text_ids.append(message.id)
        elif self._binary and kind is Ack:
            assert isinstance(message, Ack)
            # Cumulative: whoever acknowledges text N has shown every text before it (in order).
            plaintext = binary.encode_ack_up_to(message)
        else:
            plaintext = messages.encode(message)
        return encode_frame(self._send_cipher.encrypt_with_ad(b"", plaintext))

    def pieces(self, text: str) -> list[tuple[str, bytes | None]]:
        """*text* cut to fit one text message each, as messages.pieces(), for the encoding in use."""
        if self._binary:
            return [(piece, None) for piece in binary.pieces(text)]
        return messages.pieces(text)

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the peer; return what they meant, in order.

        *data* may be a view into a buffer the caller reuses (``recv_into``): nothing
        returned or kept refers to it after this call. Raises a RemoteProtocolError
        subclass (TamperedError, HandshakeError, FrameError, MessageError) when the
        peer's bytes are wrong; after that the session refuses to go on.
        """
        if self._failed is not None:
            raise self._failed
        try:
            return self._receive(data)
        except P2PChatError as exc:
            self._failed = exc
            raise

    def receive_eof(self) -> None:
        """The peer closed the connection. ConnectionLost unless it said bye first."""
        if self._failed is not None:
            raise self._failed
        self._decoder.end_of_stream()
        if self._handshake is not None:
            raise ConnectionLost("the peer hung up during the handshake")
        if not self.bye_received:
            raise ConnectionLost()

    def _receive(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        for frame in self._decoder.frames(data):
            if self.bye_received:
                raise RemoteProtocolError("the peer sent data after saying goodbye")
            if self._handshake is not None:
                self._read_handshake(self._handshake, frame, events)
                continue
            assert self._recv_cipher is not None
            plaintext = self._recv_cipher.decrypt_with_ad(b"", frame)
            message = messages.decode(plaintext, self._features)
            if message is None and filewire.FEATURE in self._features and plaintext[:1] == b"{":
                file_message = filewire.decode(plaintext)  # the JSON file_* messages (None for others)
                if file_message is not None:
                    events.append(file_message)
            elif isinstance(message, binary.AckUpTo):
                self._acknowledged_up_to(message.id, events)
            elif isinstance(message, Rekey):
                self._recv_cipher.rekey()
            elif isinstance(message, Hello):
                if self._hello_received:
                    raise MessageError("the peer said hello twice")
                self._hello_received = True
                self.peer_hello = message
                assert self._hello is not None  # ours went out when the handshake completed, before this
                self._features = frozenset(self._hello.features) & frozenset(message.features)
                self._binary = binary.FEATURE in self._features
                events.append(message)
            elif message is not None:
                if not self._hello_received and not isinstance(message, Bye):
                    raise MessageError("the peer did not say hello first")
                self.bye_received = isinstance(message, Bye)
                if isinstance(message, Ack) and self._sent_text_ids and self._sent_text_ids[0] == message.id:
                    self._sent_text_ids.popleft()  # a JSON ack from a binary peer: keep the ids bounded
                events.append(message)
        return events

    def _acknowledged_up_to(self, up_to: int, events: list[Event]) -> None:
        """One Ack event per text this session sent with an id up to *up_to*, in order.

        Then Ack(up_to) itself if that was not one of them: a text sent on an earlier
        connection of the same conversation, which only the layer above knows.
        """
        sent = self._sent_text_ids
        last = 0
        while sent and sent[0] <= up_to:
            last = sent.popleft()
            events.append(Ack(last))
        if last != up_to:
            events.append(Ack(up_to))

    def _read_handshake(self, handshake: HandshakeState, frame: memoryview, events: list[Event]) -> None:
        if handshake.my_turn_to_write():
            raise HandshakeError("the peer sent a handshake message out of turn")
        self._handshake_read += 1
        if not self.initiator and self._handshake_read == 1 and len(frame) == 33 and frame[0] == 0x41:
            # A SPAKE2 message from a dialer with --code (core/pake.py): 33 bytes, side "A".
            raise HandshakeError("the caller dialed with --code, and this listener has no code (listen --code)")
        if not self.initiator and self._handshake_read == 1 and len(frame) == FIRST_MESSAGE_LEN[not self._with_psk]:
            # -> e is 32 bytes, or 48 with a psk (its empty payload is then encrypted): the length tells.
            raise PassphraseMismatch()
        try:
            payload = handshake.read_message(frame)
        except HandshakeError as exc:
            if self._with_psk and not self.initiator and self._handshake_read == 2:
                # The psk is mixed in at the end of the last message: failing there is what a
                # different passphrase looks like (or tampering with that message).
                raise PassphraseMismatch() from exc
            raise
        if payload:
            # Payloads are empty on the wire. One that is not would be free input to the
            # handshake hash, letting a man in the middle grind matching safety codes cheaply.
            raise HandshakeError("the peer sent a handshake message with a payload (the protocol has none)")
        if not handshake.complete:
            self._outgoing += encode_frame(handshake.write_message())
        if handshake.complete:
            self._finish_handshake(handshake, events)

    def _finish_handshake(self, handshake: HandshakeState, events: list[Event]) -> None:
        assert handshake.cipher_states is not None and handshake.rs is not None
        first, second = handshake.cipher_states  # the initiator sends with the first
        self._send_cipher, self._recv_cipher = (first, second) if self.initiator else (second, first)
        self._handshake = None
        events.append(HandshakeComplete(handshake.rs, handshake.handshake_hash()))
        if self._hello is None:
            assert callable(self._make_hello)
            self._hello = self._make_hello()
        self._outgoing += self.send(self._hello)

    @property
    def hello(self) -> Hello | None:
        """The hello this side sent (None before the end of the handshake, when it is made late)."""
        return self._hello
