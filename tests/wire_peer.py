"""A p2pchat/1 peer written from SECURITY.md's wire section alone, for hostile-peer tests.

It uses only the Noise primitives (``p2pchat.core.noise``), a raw socket, and JSON it
builds itself, so it can say what p2pchat itself never would: a payload in a handshake
message, a lone surrogate in a name, the wrong passphrase.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2pchat.core.noise import CipherState, HandshakeState

from .procs import TIMEOUT

PROLOGUE = b"p2pchat/1"
PAD = 128


class WirePeer:
    """One side of one connection: frames, the XX handshake, padded JSON messages."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        initiator: bool,
        static: X25519PrivateKey | None = None,
        psk: bytes | None = None,
    ) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.initiator = initiator
        self.static = static or X25519PrivateKey.generate()
        self.hs = HandshakeState(initiator=initiator, s=self.static, prologue=PROLOGUE, psk=psk)
        self.send_cipher: CipherState | None = None
        self.recv_cipher: CipherState | None = None
        self._buffer = b""

    @classmethod
    def dial(cls, port: int, source: str = "127.0.0.1", **kwargs: Any) -> WirePeer:
        """Call a listener on loopback, from *source* (any 127.x.y.z: another address to throttle)."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
        return cls(sock, initiator=True, **kwargs)

    # -- frames ----------------------------------------------------------------

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def recv_frame(self) -> bytes | None:
        """The next frame's payload, or None when the peer closed the connection."""
        while True:
            if len(self._buffer) >= 2:
                length = int.from_bytes(self._buffer[:2], "big")
                if len(self._buffer) >= 2 + length:
                    frame, self._buffer = self._buffer[2 : 2 + length], self._buffer[2 + length :]
                    return frame
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self._buffer += data

    # -- handshake ---------------------------------------------------------------

    def handshake(self, payloads: tuple[bytes, bytes, bytes] = (b"", b"", b"")) -> bool:
        """Run -> e / <- e, ee, s, es / -> s, se; False if the peer hung up instead of answering."""
        for index, payload in enumerate(payloads):
            if (index % 2 == 0) == self.initiator:
                self.send_frame(self.hs.write_message(payload))
            else:
                frame = self.recv_frame()
                if frame is None:
                    return False
                self.hs.read_message(frame)
        assert self.hs.cipher_states is not None
        first, second = self.hs.cipher_states
        self.send_cipher, self.recv_cipher = (first, second) if self.initiator else (second, first)
        return True

    # -- short codes (SECURITY.md, "Short codes") ------------------------------------

    def code_exchange(self, code: str) -> bool:
        """SPAKE2 on *code* (side A dials, B listens), its key bound as the psk; False if the peer hung up."""
        from spake2 import SPAKE2_A, SPAKE2_B

        side = SPAKE2_A if self.initiator else SPAKE2_B
        spake = side(code.encode(), idA=b"p2pchat/1 code dialer", idB=b"p2pchat/1 code listener")
        if self.initiator:
            self.send_frame(spake.start())
        frame = self.recv_frame()
        if frame is None:
            return False
        if not self.initiator:
            self.send_frame(spake.start())
        psk = hmac.new(spake.finish(frame), b"p2pchat/1 code psk", hashlib.sha256).digest()
        self.hs = HandshakeState(initiator=self.initiator, s=self.static, prologue=PROLOGUE, psk=psk)
        return True

    # -- messages ----------------------------------------------------------------

    def send_plaintext(self, plaintext: bytes) -> None:
        assert self.send_cipher is not None
        padded = plaintext + b" " * (-len(plaintext) % PAD)
        self.send_frame(self.send_cipher.encrypt_with_ad(b"", padded))

    def send_json(self, obj: dict[str, Any], raw: str | None = None) -> None:
        """Send *obj* as JSON (ASCII escapes, so even a lone surrogate goes out), or *raw* as is."""
        self.send_plaintext((raw if raw is not None else json.dumps(obj)).encode("ascii"))

    def recv_json(self) -> dict[str, Any] | None:
        frame = self.recv_frame()
        if frame is None:
            return None
        assert self.recv_cipher is not None
        message: dict[str, Any] = json.loads(self.recv_cipher.decrypt_with_ad(b"", frame))
        return message

    def close(self) -> None:
        self.sock.close()


def hello(name: str = "wire", client: str = "wire-peer/1") -> dict[str, Any]:
    return {"type": "hello", "name": name, "client": client}
