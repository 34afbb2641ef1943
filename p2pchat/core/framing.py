"""Frames: a 2-byte big-endian length N (1 ≤ N ≤ 65535), then N bytes (sans-IO).

Every message on the wire, handshake or transport, is one frame.
"""

from __future__ import annotations

from typing import NoReturn

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

    ``frames(data)`` returns every payload *data* completes, as memoryviews: where a
    frame lies whole inside *data* the view points into *data* itself (no copy), so
    a caller must use the views before it reuses *data*'s buffer (``recv_into``).
    Only the tail of an unfinished frame is copied, to wait for the rest.
    ``end_of_stream()`` checks that the connection did not end inside a frame.
    After a FrameError the decoder stays broken.
    """

    def __init__(self) -> None:
        self._pending = bytearray()  # the start of a frame that did not arrive whole
        self._failed: FrameError | None = None

    def frames(self, data: bytes | bytearray | memoryview) -> list[memoryview]:
        """Every frame payload that *data* completes, in order."""
        if self._failed is not None:
            raise self._failed
        out: list[memoryview] = []
        view = memoryview(data)
        position = 0
        if self._pending:
            position = self._finish_pending(view, out)
        size = len(view)
        while size - position >= HEADER_LEN:
            length = view[position] << 8 | view[position + 1]
            if length == 0:
                self._fail("the peer sent an empty frame: the connection may have been tampered with")
            end = position + HEADER_LEN + length
            if end > size:
                break
            out.append(view[position + HEADER_LEN : end])
            position = end
        if position < size:
            self._pending += view[position:]
        return out

    def _finish_pending(self, view: memoryview, out: list[memoryview]) -> int:
        """Complete the buffered frame from the front of *view*; return how much of *view* it took."""
        pending = self._pending
        taken = 0
        if len(pending) < HEADER_LEN:
            taken = min(HEADER_LEN - len(pending), len(view))
            pending += view[:taken]
            if len(pending) < HEADER_LEN:
                return taken
        length = pending[0] << 8 | pending[1]
        if length == 0:
            self._fail("the peer sent an empty frame: the connection may have been tampered with")
        missing = HEADER_LEN + length - len(pending)
        more = min(missing, len(view) - taken)
        pending += view[taken : taken + more]
        taken += more
        if more == missing:
            out.append(memoryview(bytes(pending))[HEADER_LEN:])
            pending.clear()
        return taken

    def _fail(self, reason: str) -> NoReturn:
        self._failed = FrameError(reason)
        raise self._failed

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet a whole frame."""
        return len(self._pending)

    def end_of_stream(self) -> None:
        """The connection ended: a FrameError if it ended inside a frame."""
        if self._failed is not None:
            raise self._failed
        if self._pending:
            self._fail("the connection ended inside a frame: it may have been tampered with")
