"""A man in the middle for tests: relays frames between two real p2pchat processes, and meddles."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

# Given (direction, frame index in that direction, the whole frame with its length prefix),
# return the bytes to pass on instead (b"" drops it), or None to cut both connections there.
Meddler = Callable[[str, int, bytes], bytes | None]


class Relay:
    """Listens on loopback; each caller is joined to *target*, frames passing through *meddle*."""

    def __init__(self, target_port: int, meddle: Meddler) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.target_port = target_port
        self.meddle = meddle
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            client, _ = self.server.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            pipes = [
                threading.Thread(target=self._pipe, args=(client, upstream, "to_listener", [client, upstream])),
                threading.Thread(target=self._pipe, args=(upstream, client, "to_dialer", [client, upstream])),
            ]
            for pipe in pipes:
                pipe.start()
            for pipe in pipes:
                pipe.join()
            client.close()
            upstream.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, direction: str, both: list[socket.socket]) -> None:
        buffer = b""
        index = 0
        try:
            while data := src.recv(65536):
                buffer += data
                while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                    end = 2 + int.from_bytes(buffer[:2], "big")
                    frame, buffer = buffer[:end], buffer[end:]
                    out = self.meddle(direction, index, frame)
                    index += 1
                    if out is None:
                        for sock in both:
                            with contextlib.suppress(OSError):
                                sock.shutdown(socket.SHUT_RDWR)
                        return
                    dst.sendall(out)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for sock in both:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
