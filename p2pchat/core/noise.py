"""The Noise Protocol Framework, revision 34, for the XX and XXpsk3 patterns (sans-IO).

Only what p2pchat speaks: ``Noise_XX_25519_AESGCM_SHA256`` and
``Noise_XXpsk3_25519_AESGCM_SHA256``. Names follow the spec so a reader holding
it can find every step: section 4 (crypto functions), 5.1 CipherState,
5.2 SymmetricState, 5.3 HandshakeState, 7.5 the XX pattern, 9 the psk modifier.
All primitives come from ``cryptography``; nothing here touches a socket.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import HandshakeError, LocalProtocolError, NonceExhaustedError, TamperedError

DHLEN = 32  # §4.1: X25519 public keys and shared secrets
HASHLEN = 32  # §4.3: SHA-256
TAGLEN = 16  # §4.2: AES-GCM authentication tag
MAX_NONCE = 2**64 - 1  # §5.1: reserved, never used to encrypt a message (only by Rekey)
MAX_MESSAGE_LEN = 65535  # §3: a Noise message is never longer than this
PSK_LEN = 32  # §9: a psk is 32 bytes

PROTOCOL_XX = b"Noise_XX_25519_AESGCM_SHA256"
PROTOCOL_XXPSK3 = b"Noise_XXpsk3_25519_AESGCM_SHA256"

# §7.5 XX; §9.4 XXpsk3 appends the "psk" token to the third message.
_XX: tuple[tuple[str, ...], ...] = (("e",), ("e", "ee", "s", "es"), ("s", "se"))
_XXPSK3: tuple[tuple[str, ...], ...] = (("e",), ("e", "ee", "s", "es"), ("s", "se", "psk"))


# §4.1 DH functions ----------------------------------------------------------


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte public key of *key*."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def dh(key_pair: X25519PrivateKey, public_key: bytes | X25519PublicKey) -> bytes:
    """DH(key_pair, public_key): the X25519 shared secret."""
    try:
        if isinstance(public_key, bytes):
            public_key = X25519PublicKey.from_public_bytes(public_key)
        return key_pair.exchange(public_key)
    except ValueError as exc:  # a low-order point gives an all-zero secret; refuse it
        raise HandshakeError("the peer sent an invalid public key") from exc


# §4.2 cipher functions, §4.3 hash functions ---------------------------------


def _nonce(n: int) -> bytes:
    # §12.4 AESGCM: 32 bits of zeros followed by the big-endian 64-bit counter.
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "big")


def hash_(data: bytes) -> bytes:
    """HASH(data): SHA-256 (hashlib's one call costs a third of a cryptography Hash object's three)."""
    return hashlib.sha256(data).digest()


def hmac_hash(key: bytes, data: bytes) -> bytes:
    """HMAC-HASH(key, data), RFC 2104 with SHA-256 (the stdlib's one-shot C call: no object to build)."""
    return hmac.digest(key, data, "sha256")


def hkdf(chaining_key: bytes, input_key_material: bytes, num_outputs: int) -> tuple[bytes, ...]:
    """HKDF(chaining_key, input_key_material, num_outputs) exactly as §4.3 defines it."""
    temp_key = hmac_hash(chaining_key, input_key_material)
    output1 = hmac_hash(temp_key, b"\x01")
    output2 = hmac_hash(temp_key, output1 + b"\x02")
    if num_outputs == 2:
        return output1, output2
    output3 = hmac_hash(temp_key, output2 + b"\x03")
    return output1, output2, output3


# §5.1 CipherState -----------------------------------------------------------


class CipherState:
    """A key k and a nonce n; encrypts with AES-256-GCM once a key is set."""

    def __init__(self, k: bytes | None = None) -> None:
        self.k: bytes | None = None
        self.n = 0
        self._aead: AESGCM | None = None
        self.initialize_key(k)

    def initialize_key(self, key: bytes | None) -> None:
        """InitializeKey(key): sets k = key and n = 0."""
        self.k = key
        self.n = 0
        # One AESGCM object per key: building it expands the key schedule.
        self._aead = None if key is None else AESGCM(key)

    def has_key(self) -> bool:
        """HasKey()."""
        return self.k is not None

    def set_nonce(self, nonce: int) -> None:
        """SetNonce(nonce)."""
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """EncryptWithAd(ad, plaintext); plaintext itself while there is no key."""
        if self._aead is None:
            return plaintext
        if self.n >= MAX_NONCE:
            raise NonceExhaustedError()
        ciphertext = self._aead.encrypt(_nonce(self.n), plaintext, ad)
        self.n += 1
        return ciphertext

    def encrypt_into(self, ad: bytes, plaintext: bytes | memoryview, out: memoryview) -> int:
        """EncryptWithAd(ad, plaintext) written into *out* (which must hold len(plaintext) + 16): its length.

        The bulk path for file data: no new ciphertext object per record.
        """
        if self._aead is None:
            raise ValueError("encrypt_into needs a key")
        if self.n >= MAX_NONCE:
            raise NonceExhaustedError()
        length = len(plaintext) + TAGLEN
        encrypt_into = getattr(self._aead, "encrypt_into", None)  # cryptography 45 and later
        if encrypt_into is not None:
            encrypt_into(_nonce(self.n), plaintext, ad, out[:length])
        else:
            out[:length] = self._aead.encrypt(_nonce(self.n), bytes(plaintext), ad)
        self.n += 1
        return length

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        """DecryptWithAd(ad, ciphertext); n advances only when authentication succeeds."""
        if self._aead is None:
            return bytes(ciphertext)
        if self.n >= MAX_NONCE:
            raise NonceExhaustedError()
        try:
            plaintext = self._aead.decrypt(_nonce(self.n), ciphertext, ad)
        except InvalidTag as exc:
            raise TamperedError() from exc
        self.n += 1
        return plaintext

    def rekey(self) -> None:
        """Rekey(): k = REKEY(k), the first 32 bytes of ENCRYPT(k, maxnonce, zerolen, zeros)."""
        if self._aead is None:
            raise LocalProtocolError("Rekey() needs a key")
        new_key = self._aead.encrypt(_nonce(MAX_NONCE), bytes(32), b"")[:32]
        n = self.n  # §11.3: rekeying does not reset the nonce
        self.initialize_key(new_key)
        self.n = n


# §5.2 SymmetricState --------------------------------------------------------


class SymmetricState:
    """The chaining key ck, the handshake hash h, and a CipherState."""

    def __init__(self, protocol_name: bytes) -> None:
        """InitializeSymmetric(protocol_name)."""
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = hash_(protocol_name)
        self.ck = self.h
        self.cipher_state = CipherState()

    def mix_key(self, input_key_material: bytes) -> None:
        """MixKey: ck, temp_k = HKDF(ck, input_key_material, 2); InitializeKey(temp_k)."""
        self.ck, temp_k = hkdf(self.ck, input_key_material, 2)
        self.cipher_state.initialize_key(temp_k[:32])

    def mix_hash(self, data: bytes) -> None:
        """MixHash: h = HASH(h || data)."""
        self.h = hash_(self.h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        """MixKeyAndHash: ck, temp_h, temp_k = HKDF(ck, ikm, 3); MixHash(temp_h); InitializeKey(temp_k)."""
        self.ck, temp_h, temp_k = hkdf(self.ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(temp_k[:32])

    def get_handshake_hash(self) -> bytes:
        """GetHandshakeHash()."""
        return self.h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """EncryptAndHash: ciphertext = EncryptWithAd(h, plaintext); MixHash(ciphertext)."""
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """DecryptAndHash: plaintext = DecryptWithAd(h, ciphertext); MixHash(ciphertext)."""
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split: temp_k1, temp_k2 = HKDF(ck, zerolen, 2); two CipherStates."""
        temp_k1, temp_k2 = hkdf(self.ck, b"", 2)
        return CipherState(temp_k1[:32]), CipherState(temp_k2[:32])


# §5.3 HandshakeState --------------------------------------------------------


class HandshakeState:
    """The XX (or XXpsk3) handshake for one side; write_message / read_message in turn.

    *ephemeral* is injectable so test vectors are exact; by default a fresh key
    comes from *generate*. After any failure the state refuses all further use.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        s: X25519PrivateKey,
        prologue: bytes = b"",
        psk: bytes | None = None,
        ephemeral: X25519PrivateKey | None = None,
        generate: Callable[[], X25519PrivateKey] = X25519PrivateKey.generate,
    ) -> None:
        """Initialize(handshake_pattern, initiator, prologue, s, e=empty, rs=empty, re=empty)."""
        if psk is not None and len(psk) != PSK_LEN:
            raise ValueError(f"a psk must be {PSK_LEN} bytes")
        self.initiator = initiator
        self.s = s
        # Made now rather than at the "e" token: the same fresh key, but its cost is paid before
        # the peer is waiting (a listener makes its next session before accept()).
        self.e = ephemeral if ephemeral is not None else generate()
        # Deriving a public key is a scalar multiplication: do both now, once, off the critical path.
        self.s_public = public_bytes(s)
        self.e_public = public_bytes(self.e)
        self.rs: bytes | None = None
        self.re: bytes | None = None
        self.psk = psk
        self.message_patterns: Sequence[tuple[str, ...]] = _XX if psk is None else _XXPSK3
        self.symmetric_state = SymmetricState(PROTOCOL_XX if psk is None else PROTOCOL_XXPSK3)
        self.symmetric_state.mix_hash(prologue)
        self._index = 0  # which message pattern comes next
        self._public_keys: dict[bytes, X25519PublicKey] = {}
        self._failed = False
        self.cipher_states: tuple[CipherState, CipherState] | None = None

    @property
    def complete(self) -> bool:
        """True once every message pattern has been written or read (Split() is done)."""
        return self.cipher_states is not None

    def handshake_hash(self) -> bytes:
        """The handshake hash h: the channel binding behind the safety code."""
        return self.symmetric_state.get_handshake_hash()

    def my_turn_to_write(self) -> bool:
        """Whether the next message is ours: the initiator writes messages 1 and 3."""
        return (self._index % 2 == 0) == self.initiator

    def _check_turn(self, writing: bool) -> None:
        if self._failed:
            raise LocalProtocolError("the handshake already failed")
        if self.complete:
            raise LocalProtocolError("the handshake is already complete")
        if self.my_turn_to_write() != writing:
            raise LocalProtocolError("not this side's turn to " + ("write" if writing else "read"))

    def write_message(self, payload: bytes = b"") -> bytes:
        """WriteMessage(payload, message_buffer): the next handshake message."""
        self._check_turn(writing=True)
        try:
            return self._write(payload)
        except BaseException:
            self._failed = True
            raise

    def read_message(self, message: bytes | memoryview) -> bytes:
        """ReadMessage(message, payload_buffer): process the peer's message, return its payload."""
        self._check_turn(writing=False)
        try:
            return self._read(message)
        except TamperedError as exc:
            self._failed = True
            raise HandshakeError() from exc
        except BaseException:
            self._failed = True
            raise

    def _write(self, payload: bytes) -> bytes:
        ss = self.symmetric_state
        buffer = bytearray()
        for token in self.message_patterns[self._index]:
            if token == "e":
                e_pub = self.e_public
                buffer += e_pub
                ss.mix_hash(e_pub)
                if self.psk is not None:  # §9.2: "e" also calls MixKey(e.public_key)
                    ss.mix_key(e_pub)
            elif token == "s":
                buffer += ss.encrypt_and_hash(self.s_public)
            elif token == "psk":
                assert self.psk is not None
                ss.mix_key_and_hash(self.psk)
            else:
                ss.mix_key(self._dh_token(token))
        buffer += ss.encrypt_and_hash(payload)
        if len(buffer) > MAX_MESSAGE_LEN:
            raise ValueError("handshake payload too long")
        self._advance()
        return bytes(buffer)

    def _read(self, message: bytes | memoryview) -> bytes:
        ss = self.symmetric_state
        view = memoryview(message)
        for token in self.message_patterns[self._index]:
            if token == "e":
                self.re = bytes(_take(view, DHLEN))
                view = view[DHLEN:]
                ss.mix_hash(self.re)
                if self.psk is not None:
                    ss.mix_key(self.re)
            elif token == "s":
                length = DHLEN + TAGLEN if ss.cipher_state.has_key() else DHLEN
                self.rs = ss.decrypt_and_hash(bytes(_take(view, length)))
                view = view[length:]
            elif token == "psk":
                assert self.psk is not None
                ss.mix_key_and_hash(self.psk)
            else:
                ss.mix_key(self._dh_token(token))
        if ss.cipher_state.has_key() and len(view) < TAGLEN:
            raise HandshakeError("handshake message too short")
        payload = ss.decrypt_and_hash(bytes(view))
        self._advance()
        return payload

    def _dh_token(self, token: str) -> bytes:
        # "ee", "es", "se": the first letter is the initiator's key, the second the responder's.
        if self.e is None or self.re is None:
            raise HandshakeError("handshake out of order")
        if token == "ee":
            return dh(self.e, self._parsed(self.re))
        if token == "es":
            local, remote = (self.e, self.rs) if self.initiator else (self.s, self.re)
        else:  # "se"
            local, remote = (self.s, self.re) if self.initiator else (self.e, self.rs)
        if remote is None:
            raise HandshakeError("handshake out of order")
        return dh(local, self._parsed(remote))

    def _parsed(self, public_key: bytes) -> X25519PublicKey | bytes:
        """The peer's key as an object, parsed once: each of re and rs takes part in two DH."""
        parsed = self._public_keys.get(public_key)
        if parsed is None:
            try:
                parsed = self._public_keys[public_key] = X25519PublicKey.from_public_bytes(public_key)
            except ValueError:
                return public_key  # dh() reports it
        return parsed

    def _advance(self) -> None:
        self._index += 1
        if self._index == len(self.message_patterns):
            self.cipher_states = self.symmetric_state.split()


def _take(view: memoryview, length: int) -> memoryview:
    if len(view) < length:
        raise HandshakeError("handshake message too short")
    return view[:length]
