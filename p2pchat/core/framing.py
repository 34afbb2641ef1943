"""Frames: a 2-byte big-endian length N (1 ≤ N ≤ 65535), then N bytes (sans-IO).

Every message on the wire, handshake or transport, is one frame.
"""

from __future__ import annotations

from ..errors import FrameError

HEADER_LEN = 2  # the length prefix: two bytes, big-endian
MAX_FRAME_LEN = 65535  # the largest N two bytes can say, and the Noise message limit


def encode_frame(payload: bytes) -> bytes:
    """The frame carrying *payload*; ValueError if it is empty or too long."""
    length = len(payload)
    if not 1 <= length <= MAX_FRAME_LEN:
        raise ValueError(f"a frame carries 1 to {MAX_FRAME_LEN} bytes, not {length}")
    return length.to_bytes(HEADER_LEN, "big") + payload


class FrameDecoder:
    """Bytes in, whole frame payloads out.

    ``feed()`` buffers what arrives; ``next_frame()`` returns one payload or None
    when more bytes are needed; ``end_of_stream()`` checks that the connection
    did not end inside a frame. After a FrameError the decoder stays broken.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._failed: FrameError | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        if self._failed is not None:
            raise self._failed
        buffer = self._buffer
        if len(buffer) < HEADER_LEN:
            return None
        length = int.from_bytes(buffer[:HEADER_LEN], "big")
        if length == 0:
            self._failed = FrameError("the peer sent an empty frame: the connection may have been tampered with")
            raise self._failed
        end = HEADER_LEN + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[HEADER_LEN:end])
        del buffer[:end]
        return payload

    def frames(self, data: bytes) -> list[bytes]:
        """Feed *data* and return every frame it completes."""
        self.feed(data)
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet a whole frame."""
        return len(self._buffer)

    def end_of_stream(self) -> None:
        """The connection ended: a FrameError if it ended inside a frame."""
        if self._buffer:
            self._failed = FrameError("the connection ended inside a frame: it may have been tampered with")
            raise self._failed
