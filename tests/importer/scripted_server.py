"""A small HTTP/1.1 server for the sender's tests: answers ``/track`` as a script says.

Written on raw sockets so a test controls what reaches the importer byte for byte: a
``Content-Length`` or a chunked answer, a ``Connection: close``, a connection closed
after an answer without saying so (as a keep-alive timeout does), or reset without one.
It records every payload in arrival order and how many requests were in flight at once.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tracardi_tracker._capture import tracardi_like

__all__ = ["Reply", "ScriptedTracardi", "scripted"]


class Reply:
    """How to answer one request: ``status``, ``body`` (JSON-able or bytes), extra
    ``headers`` and ``how``: ``length`` (default), ``chunked``, ``close`` (with
    ``Connection: close``), ``drop`` (close after answering, without saying so) or
    ``reset`` (close without answering)."""

    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        how: str = "length",
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.how = how


Script = Callable[[int, dict[str, Any]], Reply | None]
"""``script(number, payload)``: the reply to request ``number`` (1-based), ``None`` to
answer as Tracardi 0.9 would."""


class ScriptedTracardi:
    """The server; ``payloads`` holds what arrived (answered or not), in order."""

    def __init__(self, script: Script | None = None, *, delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.payloads: list[dict[str, Any]] = []
        self.answered: list[dict[str, Any]] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def events(self) -> list[dict[str, Any]]:
        """Events of the payloads answered with success, in order."""
        return [event for payload in self.answered for event in payload["events"]]

    def start(self) -> ScriptedTracardi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- one connection --------------------------------------------------------------------

    def _serve(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            fields = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
            length = int(fields.get("Content-Length", "0"))
            while len(buffer) < length:
                buffer += connection.recv(65536)
            body, buffer = buffer[:length], buffer[length:]
            if not self._answer(connection, json.loads(body)):
                return

    def _answer(self, connection: socket.socket, payload: dict[str, Any]) -> bool:
        with self._lock:
            self.payloads.append(payload)
            number = len(self.payloads)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            reply = self.script(number, payload) if self.script is not None else None
            if reply is None:
                status, body = tracardi_like(payload)
                reply = Reply(status, body)
            if reply.how == "reset":
                connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                connection.close()
                return False
            if 200 <= reply.status < 300:
                with self._lock:
                    self.answered.append(payload)
            connection.sendall(_encode(reply))
            return reply.how not in ("close", "drop")
        finally:
            with self._lock:
                self.in_flight -= 1


def _encode(reply: Reply) -> bytes:
    body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
    lines = [f"HTTP/1.1 {reply.status} X", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in reply.headers.items()]
    if reply.how == "close":
        lines.append("Connection: close")
    if reply.how == "chunked":
        lines.append("Transfer-Encoding: chunked")
        middle = len(body) // 2
        chunks = b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n"
            for part in (body[:middle], body[middle:])
            if part
        )
        return "\r\n".join(lines).encode() + b"\r\n\r\n" + chunks + b"0\r\n\r\n"
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


@contextmanager
def scripted(script: Script | None = None, *, delay: float = 0.0) -> Iterator[ScriptedTracardi]:
    """A running :class:`ScriptedTracardi`, stopped at the end."""
    server = ScriptedTracardi(script, delay=delay).start()
    try:
        yield server
    finally:
        server.stop()
