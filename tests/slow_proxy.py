"""A loopback TCP proxy in front of a real server that holds back chosen requests.

It makes a real InfluxDB *slow* rather than down: what a client sends is forwarded at most
``bytes_per_s`` per connection — a store that takes so many lines a second per writer, however
the lines are batched — and the server's answers come back unchanged. The collector talks the
real wire format to the real server, only slower.
"""

from __future__ import annotations

import socket
import threading
import time

from semon.ports import free_port


class SlowProxy:
    """``127.0.0.1:port`` → ``target``, client bytes at most ``bytes_per_s`` per connection."""

    def __init__(self, target_port: int, bytes_per_s: float) -> None:
        self.target = ("127.0.0.1", target_port)
        self.bytes_per_s = bytes_per_s
        self.port = free_port()
        self.forwarded = 0  # client bytes forwarded so far
        self._srv = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="slow-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while chunk := src.recv(1 << 14):
                if requests:
                    self.forwarded += len(chunk)
                    time.sleep(len(chunk) / self.bytes_per_s)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        """Stop accepting (open connections end with their peers)."""
        self._stop.set()
        self._srv.close()
