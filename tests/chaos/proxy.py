"""A loopback TCP proxy that can play a stopped server: while it is "down" its port refuses connections
and the connections it was carrying are cut, exactly what clients see when a server process is gone.

The local Apicurio keeps its schemas in memory, so stopping the registry itself would lose them; the
service is pointed at this proxy instead, and the proxy is taken down and brought back.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from deploy.local.process import free_port

_CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_port`; `down()` closes the port and every open connection,
    `up()` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._accepting: threading.Thread | None = None

    def up(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True)
        self._accepting.start()
        return self

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._open = self._open, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if self._accepting is not None:
            self._accepting.join(5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _addr = listener.accept()
            except OSError:  # closed by down()
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    server.close()
                    return
                self._open |= {client, server}
            threading.Thread(target=self._pipe, args=(client, server), name="proxy-pipe", daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _w, _x = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # cut by down(), or the peer went away
            return
        finally:
            with self._lock:
                self._open -= {a, b}
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
