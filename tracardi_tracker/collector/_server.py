"""The HTTP side: a threading HTTP/1.1 server with keep-alive that moves bytes to the engine.

Also where faults that need sockets happen: resetting a connection, and refusing connections
by closing the listening socket for a while.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import logging
import socket
import socketserver
import struct
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .._version import __version__
from ._engine import Engine, Reply
from ._faults import FaultController
from ._wire import error_body

__all__ = ["HTTPServer"]

logger = logging.getLogger("tracardi_tracker.collector")

_MAX_BODY = 64 * 1024 * 1024
_SERVER_HEADER = f"tracardi-tracker-collector/{__version__}"
_LINGER_RESET = struct.pack("ii", 1, 0)


_MAX_LINE = 65536  # as http.client: longer header lines are refused (431)
_MAX_HEADERS = 100  # as http.client: more header lines are refused (431)
_END_OF_HEADERS = (b"\r\n", b"\n", b"")
_REASONS = {status.value: status.phrase for status in HTTPStatus}


def _reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._text = email.utils.formatdate(now, usegmt=True)
            self._second = second
        return self._text


_date = _Date()


def _parse_headers(lines: list[bytes]) -> list[tuple[str, str]]:
    """Header lines as (name, value) pairs, read as ``email.parser`` reads them.

    A value loses the blanks after the colon and its final line end; a line starting with a
    blank continues the previous value (kept as sent, line break included) and is ignored if
    there is none; a line that is not a header (no colon, or a name with blanks or control
    characters) ends the headers, as it does for ``email``.
    """
    pairs: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.decode("iso-8859-1")
        if line[:1] in (" ", "\t"):
            if pairs:
                name, value = pairs[-1]
                pairs[-1] = (name, value + line)
            continue
        name, colon, value = line.partition(":")
        if not colon or not _is_header_name(name):
            break
        pairs.append((name, value.lstrip(" \t")))
    return [(name, value.rstrip("\r\n")) for name, value in pairs]


def _is_header_name(name: str) -> bool:
    """Printable ASCII without spaces (``email``'s rule; the colon is already split off)."""
    return name.isascii() and name.isprintable() and " " not in name


class _Handler(BaseHTTPRequestHandler):
    """One connection: reads requests (keep-alive), asks the engine, writes one buffer."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections are closed after a minute
    server: HTTPServer
    raw_requestline: bytes
    request_headers: dict[str, str]
    """This request's headers: lower-case names, the first value of each."""

    def setup(self) -> None:
        super().setup()
        self.server.connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request`` with a lean header reader.

        The request line, ``Connection``, ``Expect: 100-continue`` and the limits (and their
        error answers) are the standard library's; headers are split here instead of by
        ``email.parser``, which costs more than the rest of a request. They are kept as
        :attr:`request_headers` (lower-case names, first value of each) and as
        :attr:`headers` (an ``http.client.HTTPMessage``, as usual).
        """
        self.command = None  # type: ignore[assignment]  # as the standard library does
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = _http_version(version)
            if number is None:
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if number >= (1, 1):
                self.close_connection = False
            if number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                    f"Invalid HTTP version ({version.split('/', 1)[1]})",
                )
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if path.startswith("//"):
            self.path = "/" + path.lstrip("/")  # as the standard library: no open redirects

        lines: list[bytes] = []
        readline = self.rfile.readline
        while True:
            line = readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                error = http.client.LineTooLong("header line")
                self.send_error(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(error)
                )
                return False
            if line in _END_OF_HEADERS:
                break
            lines.append(line)
            if len(lines) >= _MAX_HEADERS:
                self.send_error(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "Too many headers",
                    f"got more than {_MAX_HEADERS} headers",
                )
                return False
        pairs = _parse_headers(lines)
        request_headers: dict[str, str] = {}
        message = http.client.HTTPMessage()
        for name, value in pairs:
            request_headers.setdefault(name.lower(), value)
            message[name] = value
        self.request_headers = request_headers
        self.headers = message

        connection = request_headers.get("connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if (
            request_headers.get("expect", "").lower() == "100-continue"
            and self.request_version >= "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        server = self.server
        body = self._read_body()
        if body is None:
            return
        path, _, query = self.path.partition("?")
        server.busy(+1)
        try:
            server.local.connection = self.connection
            if path == "/track":
                decision = server.faults.decide()
                if decision.latency:
                    time.sleep(decision.latency)
                if decision.action == "reset" or server.refusing:
                    self._reset()
                    return
                if decision.action is not None:
                    headers: tuple[tuple[str, str], ...] = (("x-collector-fault", decision.action),)
                    if decision.retry_after is not None:
                        headers += (("retry-after", str(decision.retry_after)),)
                    detail = error_body(_reason(decision.status))
                    self._send(Reply(decision.status, detail, headers=headers))
                    return
            method = "GET" if self.command == "HEAD" else self.command
            reply = server.engine.handle(method, path, query, self.request_headers, body)
            self._send(reply)
            if server.refusing:
                self.close_connection = True
        finally:
            server.local.connection = None
            server.busy(-1)

    def _read_body(self) -> bytes | None:
        """The request body (``Content-Length`` or chunked); ``None`` if already answered."""
        headers = self.request_headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length_text = headers.get("content-length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            self.close_connection = True
            self._send(Reply(400, error_body("Invalid Content-Length")))
            return None
        if length > _MAX_BODY:
            self.close_connection = True
            self._send(Reply(413, error_body("Request Entity Too Large")))
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        size_total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                self._send(Reply(400, error_body("Invalid chunked body")))
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(chunks)
            size_total += size
            if size_total > _MAX_BODY:
                self.close_connection = True
                self._send(Reply(413, error_body("Request Entity Too Large")))
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _send(self, reply: Reply) -> None:
        head = [
            f"HTTP/1.1 {reply.status} {_reason(reply.status)}",
            f"date: {_date()}",
            f"server: {_SERVER_HEADER}",
            f"content-type: {reply.content_type}",
            f"content-length: {len(reply.body)}",
        ]
        head.extend(f"{name}: {value}" for name, value in reply.headers)
        if self.close_connection:
            head.append("connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += reply.body
        self.wfile.write(data)
        logger.debug('"%s" %s %s', self.requestline, reply.status, len(reply.body))

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, answering nothing."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        with contextlib.suppress(OSError):
            self.rfile.close()
            self.connection.close()


def _http_version(text: str) -> tuple[int, int] | None:
    """``HTTP/x.y`` as numbers, or ``None`` when the standard library would refuse it."""
    if not text.startswith("HTTP/"):
        return None
    parts = text.split("/", 1)[1].split(".")
    if len(parts) != 2 or any(not part.isdigit() or len(part) > 10 for part in parts):
        return None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:  # a digit int() does not read, such as "²"
        return None


class HTTPServer(ThreadingHTTPServer):
    """The collector's listening server; knows its open connections so it can drop them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        engine: Engine,
        faults: FaultController,
        family: socket.AddressFamily = socket.AF_INET,
    ) -> None:
        self.address_family = family
        self.engine = engine
        self.faults = faults
        self.refusing = False
        self.local = threading.local()
        self._connections: set[socket.socket] = set()
        self._busy = 0
        self._guard = threading.Condition()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse DNS lookup (it can take seconds)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed request; a client that went away (or a reset we made) is routine."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            logger.debug("connection from %s ended: %s", client_address, error)
        else:
            logger.exception("error while handling a request from %s", client_address)

    def rebind(self) -> None:
        """Open a new listening socket on the same address (after refusing connections)."""
        self.socket = socket.socket(self.address_family, self.socket_type)
        try:
            self.server_bind()
            self.server_activate()
        except OSError:
            self.socket.close()
            raise

    def connection_opened(self, connection: socket.socket) -> None:
        """A handler started on ``connection``."""
        with self._guard:
            self._connections.add(connection)

    def connection_closed(self, connection: socket.socket) -> None:
        """A handler finished with ``connection``."""
        with self._guard:
            self._connections.discard(connection)
            self._guard.notify_all()

    def busy(self, change: int) -> None:
        """Count requests being handled (``+1`` when one starts, ``-1`` when it ends)."""
        with self._guard:
            self._busy += change
            self._guard.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; ``False`` if the deadline passed."""
        with self._guard:
            return self._guard.wait_for(lambda: self._busy == 0, timeout)

    def drop_connections(self, timeout: float = 0.0) -> None:
        """Reset every open connection except the one of the calling handler.

        With ``timeout``, also wait that long for the handler threads to let go of them.
        """
        current = getattr(self.local, "connection", None)
        with self._guard:
            victims = [conn for conn in self._connections if conn is not current]
        for connection in victims:
            with contextlib.suppress(OSError):
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if timeout:
            with self._guard:
                self._guard.wait_for(lambda: not (self._connections - {current}), timeout)
