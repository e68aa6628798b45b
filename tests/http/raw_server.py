"""A tiny HTTP/1.1 server on raw sockets whose answers a test writes byte for byte.

Each connection is served by its own thread: it reads requests one at a time (a head
and a ``Content-Length`` body) and answers each as ``script(number, request)`` says:
the bytes to write, then keep the connection, close it, or stall (never answer). So a
test controls chunked answers, ``Connection: close``, a server that closes an idle
keep-alive connection, answers cut short, and silence. Optionally speaks TLS.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["CERT", "KEY", "RawServer", "Reply", "Request", "ok", "serve"]

HERE = Path(__file__).resolve().parent
CERT = HERE / "localhost-cert.pem"
"""A self-signed certificate for localhost, 127.0.0.1 and ::1 (its own CA)."""
KEY = HERE / "localhost-key.pem"

OK_BODY = {"profile": {"id": "p-1"}, "session": {"id": "s-1"}, "task": "t-1", "errors": []}


def ok(body: Any = None, *extra: str) -> bytes:
    """A 200 answer with a ``Content-Length`` and a JSON body (Tracardi's by default)."""
    content = json.dumps(OK_BODY if body is None else body).encode()
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", *extra]
    head.append(f"Content-Length: {len(content)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + content


class Request:
    """One request as it arrived: its request line, headers (names lower-cased, every
    value in order), body, and the number of the connection it came on (1-based)."""

    def __init__(self, line: str, headers: list[tuple[str, str]], body: bytes, connection: int):
        self.line = line
        self.header_list = headers
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body
        self.connection = connection

    def values(self, name: str) -> list[str]:
        """Every value sent for header ``name``."""
        return [value for key, value in self.header_list if key.lower() == name.lower()]


class Reply:
    """What to do with one request: write ``data``, then ``then``: ``keep`` the
    connection, ``close`` it (without saying so unless ``data`` does) or ``stall``
    (hold the connection open, never answer)."""

    def __init__(self, data: bytes = b"", then: str = "keep") -> None:
        self.data = data
        self.then = then


Script = Callable[[int, Request], Reply]


class RawServer:
    """The server; ``requests`` holds every request in arrival order."""

    def __init__(
        self, script: Script, *, host: str = "127.0.0.1", tls: bool = False, path: str = "/track"
    ) -> None:
        self.script = script
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)  # so the accepting thread sees stop()
        port = self._listener.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if tls else 'http'}://{shown}:{port}{path}"
        self.requests: list[Request] = []
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released as each connection ends
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tls: ssl.SSLContext | None = None
        if tls:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(CERT, KEY)
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            with self._lock:
                self.connections += 1
                number = self.connections
                self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket, number: int) -> None:
        sock: socket.socket = raw
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(raw, server_side=True)
                with self._lock:
                    self._sockets.append(sock)
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = [
                    (name.strip(), value.strip())
                    for name, _, value in (item.partition(":") for item in rest)
                ]
                length = int({n.lower(): v for n, v in headers}.get("content-length", 0))
                while len(buffer) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                request = Request(line, headers, buffer[:length], number)
                buffer = buffer[length:]
                with self._lock:
                    self.requests.append(request)
                    count = len(self.requests)
                reply = self.script(count, request)
                if reply.data:
                    sock.sendall(reply.data)
                if reply.then == "stall":
                    self._stop.wait()
                    return
                if reply.then == "close":
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            self.closed.release()

    def stop(self) -> None:
        """Stop accepting, end stalls and close every connection."""
        self._stop.set()
        self._accepting.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(5)


@contextlib.contextmanager
def serve(script: Script, **options: Any) -> Iterator[RawServer]:
    """A :class:`RawServer` for the ``with`` block."""
    server = RawServer(script, **options)
    try:
        yield server
    finally:
        server.stop()
