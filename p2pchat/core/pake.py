"""Short codes (``--code``): SPAKE2 on a code like ``417-unclamped-retiree``, its key bound as the Noise psk (sans-IO).

Before the Noise handshake, on the same TCP stream, the dialer sends one frame holding
its SPAKE2 message and the listener answers with one frame holding its own. Each side
then has a 32-byte key that is the same exactly when both used the same code, and an
attacker who took part learned whether its one guess was right and nothing else: it
cannot test other codes offline. The key becomes the Noise XXpsk3 psk, so the handshake
itself confirms it: a different code fails at the third handshake message.

SPAKE2 comes from the ``spake2`` package (as in magic-wormhole), imported only when a
code is used; randomness is a parameter so tests are exact.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
from collections.abc import Callable
from typing import Any

from ..errors import HandshakeError, UsageError
from .wordlist import WORDS

CODE_NUMBER_MAX = 999  # the code's number is 1..999: easy to say, ~10 bits
CODE_WORDS = 2  # words from the 7,776-word list: 2 x 12.9 bits
CODE_ENTROPY_BITS = math.log2(CODE_NUMBER_MAX * len(WORDS) ** CODE_WORDS)  # about 35.8 bits

ID_DIALER = b"p2pchat/1 code dialer"  # SPAKE2 identity of side A (the dialer)
ID_LISTENER = b"p2pchat/1 code listener"  # SPAKE2 identity of side B (the listener)
PSK_LABEL = b"p2pchat/1 code psk"  # psk = HMAC-SHA256(key=SPAKE2 key, message=this label)
MESSAGE_LEN = 33  # a SPAKE2 message: one side byte ("A" or "B") and a 32-byte Ed25519 element
SIDE_DIALER = 0x41  # "A"
SIDE_LISTENER = 0x42  # "B"

_INDEX = {word: i for i, word in enumerate(WORDS)}


def new_code(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """A fresh code: ``NUMBER-WORD-WORD``, each part chosen uniformly with the system's CSPRNG."""
    number = 1 + randbelow(CODE_NUMBER_MAX)
    return "-".join([str(number), *(WORDS[randbelow(len(WORDS))] for _ in range(CODE_WORDS))])


def parse_code(text: str) -> str:
    """A code typed by a person, in its one spelling (lower case, hyphens); UsageError if it is not one.

    Spaces may stand for hyphens. A typo is caught here, before any attempt uses up the code.
    """
    spelled = "-".join(text.strip().lower().replace("_", " ").replace("-", " ").split())
    number, _, words = spelled.partition("-")
    if not (number.isdigit() and number.isascii() and 1 <= int(number) <= CODE_NUMBER_MAX):
        raise UsageError(f"bad code: expected NUMBER-WORD-WORD with a number from 1 to {CODE_NUMBER_MAX}")
    if not _splits(words, CODE_WORDS):
        raise UsageError("bad code: a word in it is not in p2pchat's word list (a typo?)")
    return f"{int(number)}-{words}"


def _splits(text: str, count: int) -> bool:
    # Four words hold a hyphen themselves (t-shirt, yo-yo...): try every way of cutting at hyphens.
    if count == 1:
        return text in _INDEX
    parts = text.split("-")
    return any("-".join(parts[:i]) in _INDEX and _splits("-".join(parts[i:]), count - 1) for i in range(1, len(parts)))


class CodeExchange:
    """One side's SPAKE2 run for a code: ``start()`` gives our message, ``finish()`` the psk.

    The dialer is SPAKE2 side A, the listener side B; the password is the code's one
    spelling as UTF-8. A malformed peer message is a HandshakeError.
    """

    def __init__(self, code: str, *, dialer: bool, entropy: Callable[[int], bytes] = os.urandom) -> None:
        from spake2 import SPAKE2_A, SPAKE2_B  # a runtime dependency only --code needs

        side: Any = SPAKE2_A if dialer else SPAKE2_B
        self.dialer = dialer
        self._spake = side(parse_code(code).encode("utf-8"), idA=ID_DIALER, idB=ID_LISTENER, entropy_f=entropy)
        self._started = False

    def start(self) -> bytes:
        """Our SPAKE2 message (33 bytes), to send as one frame."""
        if self._started:
            raise ValueError("start() was already called")
        self._started = True
        message: bytes = self._spake.start()
        return message

    def finish(self, message: bytes) -> bytes:
        """The 32-byte Noise psk from the peer's SPAKE2 *message*."""
        if not self._started:
            raise ValueError("start() comes first")
        expected = SIDE_LISTENER if self.dialer else SIDE_DIALER
        if len(message) != MESSAGE_LEN or message[0] != expected:
            raise HandshakeError("the peer's short-code message is malformed")
        try:
            key: bytes = self._spake.finish(message)
        except Exception as exc:  # hostile bytes into a third-party parser: anything it raises means malformed
            raise HandshakeError("the peer's short-code message is malformed") from exc
        return hmac.new(key, PSK_LABEL, hashlib.sha256).digest()


def is_code_message(frame: bytes) -> bool:
    """Whether a first frame is a dialer's SPAKE2 message (a listener without --code can say so)."""
    return len(frame) == MESSAGE_LEN and frame[0] == SIDE_DIALER
