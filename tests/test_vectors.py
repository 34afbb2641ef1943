"""The public Noise test vectors (cacophony, snow), byte for byte.

Each vector runs a handshake between two HandshakeStates with the vector's
static and ephemeral keys, checks every message ciphertext and the handshake
hash, then the transport messages through the Split() ciphers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2pchat.core.noise import CipherState, HandshakeState

VECTORS = json.loads((Path(__file__).parent / "data" / "noise_xx_aesgcm_sha256.json").read_text())["vectors"]


def _key(hex_key: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_key))


def _psk(vector: dict[str, Any], side: str) -> bytes | None:
    psks = vector.get(f"{side}_psks") or []
    return bytes.fromhex(psks[0]) if psks else None


def _ids() -> list[str]:
    return [f"{v['protocol_name']}-{v['source'].split(':')[0]}" for v in VECTORS]


def test_every_vector_is_for_our_protocols() -> None:
    names = {v["protocol_name"] for v in VECTORS}
    assert names == {"Noise_XX_25519_AESGCM_SHA256", "Noise_XXpsk3_25519_AESGCM_SHA256"}


@pytest.mark.parametrize("vector", VECTORS, ids=_ids())
def test_vector(vector: dict[str, Any]) -> None:
    initiator = HandshakeState(
        initiator=True,
        s=_key(vector["init_static"]),
        prologue=bytes.fromhex(vector["init_prologue"]),
        psk=_psk(vector, "init"),
        ephemeral=_key(vector["init_ephemeral"]),
    )
    responder = HandshakeState(
        initiator=False,
        s=_key(vector["resp_static"]),
        prologue=bytes.fromhex(vector["resp_prologue"]),
        psk=_psk(vector, "resp"),
        ephemeral=_key(vector["resp_ephemeral"]),
    )
    writer, reader = initiator, responder
    transport: tuple[CipherState, CipherState, CipherState, CipherState] | None = None
    for index, message in enumerate(vector["messages"]):
        payload = bytes.fromhex(message["payload"])
        expected = bytes.fromhex(message["ciphertext"])
        if transport is None:
            assert writer.write_message(payload) == expected, f"handshake message {index}"
            assert reader.read_message(expected) == payload
            writer, reader = reader, writer
            if initiator.complete:
                assert responder.complete
                assert initiator.cipher_states is not None and responder.cipher_states is not None
                transport = (*initiator.cipher_states, *responder.cipher_states)
                assert initiator.handshake_hash() == responder.handshake_hash()
                if "handshake_hash" in vector:
                    assert initiator.handshake_hash().hex() == vector["handshake_hash"]
        else:
            # Transport messages alternate, starting with the side that did not write last.
            i_send, i_recv, r_recv, r_send = transport[0], transport[1], transport[2], transport[3]
            send, recv = (i_send, r_recv) if writer is initiator else (r_send, i_recv)
            assert send.encrypt_with_ad(b"", payload) == expected, f"transport message {index}"
            assert recv.decrypt_with_ad(b"", expected) == payload
            writer, reader = reader, writer
    assert transport is not None, "the vector never completed its handshake"
