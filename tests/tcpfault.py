"""A TCP relay between the station and the test S3 server that can fail on purpose: refuse
connections (archive down), cut every connection after some bytes (a link dropped
mid-upload), flap between up and down, or flip one bit of what the station sends (a payload
corrupted in flight, after the station hashed it). A fault injector for tests only; it
understands nothing of HTTP, it only moves bytes, alters them or stops moving them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class FaultyRelay:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.up = True
        self.cut_after_bytes: int | None = None  # upstream bytes per connection before a cut
        self.cuts = 0
        self.refused = 0
        # Flip the last byte of the next ``flip_times`` occurrences of this marker on its way
        # to the server (put the marker into the payload to be corrupted).
        self.flip_marker: bytes | None = None
        self.flip_times = 0
        self.flipped = 0
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, to_server: bool) -> None:
        sent = 0
        tail = b""  # the end of the previous chunk, to find a marker split between two
        try:
            while chunk := source.recv(65536):
                if not self.up:
                    break
                if to_server and self.cut_after_bytes is not None and sent + len(chunk) > self.cut_after_bytes:
                    self.cuts += 1
                    break
                if to_server and self.flip_marker:
                    chunk, tail = self._flip(tail, chunk, self.flip_marker)
                target.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _flip(self, tail: bytes, chunk: bytes, marker: bytes) -> tuple[bytes, bytes]:
        window = tail + chunk
        data = bytearray(chunk)
        start = 0
        while self.flip_times > 0:
            found = window.find(marker, start)
            if found < 0:
                break
            last = found + len(marker) - 1 - len(tail)  # the marker ends in this chunk
            data[last] ^= 0x01
            with self._lock:
                self.flip_times -= 1
                self.flipped += 1
            start = found + len(marker)
        return bytes(data), window[-(len(marker) - 1):] if len(marker) > 1 else b""

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self.up = False
        with self._lock:
            for sock in self._connections:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections.clear()

    def restore(self) -> None:
        self.up = True
        self.cut_after_bytes = None
        self.flip_marker = None
        self.flip_times = 0

    @contextmanager
    def flapping(self, period_s: float) -> Iterator[None]:
        """Down and up again every ``period_s`` while the block runs."""
        stop = threading.Event()

        def flap() -> None:
            while not stop.wait(period_s):
                if self.up:
                    self.down()
                else:
                    self.restore()

        thread = threading.Thread(target=flap, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.restore()

    def close(self) -> None:
        self._closing = True
        self.down()
        self.listener.close()
        time.sleep(0.05)
