"""The HTTP side: HTTP/1.1 with keep-alive on one asyncio event loop, bytes to the engine.

One thread serves every connection. A request's head is read by ``http.server``'s rules
(request line, limits, ``Expect: 100-continue`` and their error answers are the standard
library's; headers are split as ``email`` splits them, see :func:`_parse_headers`). A
``/track`` request is staged as soon as it is read (:meth:`Engine.stage_track`); once the
loop has read what arrived on every connection, one commit covers all those requests and
then they are answered (*group commit* without threads waiting for each other: with a
thread per connection, handing the interpreter lock and the commit around cost more than
the requests themselves).

Also where faults that need sockets happen: delaying an answer, resetting a connection,
and refusing connections by closing the listening socket for a while.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import http.client
import io
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar

from .._version import __version__
from ._engine import Engine, PendingReply, Reply
from ._faults import FaultController, FaultDecision
from ._wire import error_body

__all__ = ["HTTPServer"]

logger = logging.getLogger("tracardi_tracker.collector")

_T = TypeVar("_T")

_MAX_BODY = 64 * 1024 * 1024
_SERVER_HEADER = f"tracardi-tracker-collector/{__version__}"
_LINGER_RESET = struct.pack("ii", 1, 0)

_MAX_LINE = 65536  # as http.client: longer header lines are refused (431)
_MAX_HEADERS = 100  # as http.client: more header lines are refused (431)
_END_OF_HEADERS = (b"\r\n", b"\n", b"")
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_IDLE_TIMEOUT = 60.0  # idle keep-alive connections are closed after a minute
_SWEEP_EVERY = 5.0  # seconds between looks for idle connections
_BACKLOG = 256
_GROUP_REQUESTS = 64  # requests in one commit at most


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


def _head_end(buffer: bytearray) -> int:
    """Where the head ends (just past its blank line) in ``buffer``, or -1 if not yet.

    A line is what ends with ``\\n``, as ``readline`` reads it; the head ends at the first
    line that is ``\\r\\n`` or ``\\n`` after the request line.
    """
    crlf = buffer.find(b"\n\r\n")
    lf = buffer.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(buffer))
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


class _Head(BaseHTTPRequestHandler):
    """One request's head, read from bytes by ``BaseHTTPRequestHandler``'s rules.

    Nothing is served from here: what the standard library would write (an error page,
    ``100 Continue``) collects in :attr:`wfile` for the connection to send.
    """

    protocol_version = "HTTP/1.1"
    request_headers: dict[str, str]
    """This request's headers: lower-case names, the first value of each."""
    written: io.BytesIO
    """What the standard library wrote (its :attr:`wfile`)."""

    def __init__(self, head: bytes, client_address: Any) -> None:  # no socket, no serving
        self.client_address = client_address
        self.rfile = io.BytesIO(head)
        self.wfile = self.written = io.BytesIO()
        self.close_connection = True
        self.request_headers = {}

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def read(self) -> bool:
        """Read the head as ``handle_one_request`` does; ``False`` when there is nothing to
        serve (an error answer is then in :attr:`wfile`, or nothing is to be answered)."""
        self.raw_requestline = self.rfile.readline(_MAX_LINE + 1)
        if len(self.raw_requestline) > _MAX_LINE:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        if not self.raw_requestline:
            return False
        return self.parse_request()

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request`` with a lean header reader.

        The request line, ``Connection``, ``Expect: 100-continue`` and the limits (and their
        error answers) are the standard library's; headers are split here instead of by
        ``email.parser``, which costs more than the rest of a request. They are kept as
        :attr:`request_headers` (lower-case names, first value of each).
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
        request_headers: dict[str, str] = {}
        for name, value in _parse_headers(lines):
            request_headers.setdefault(name.lower(), value)
        self.request_headers = request_headers

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


def _incomplete_head_fails(buffer: bytearray) -> bool:
    """Whether a head that has not ended yet is already refused: a request line or header
    line over the limit, or too many header lines (reading it then answers the error)."""
    start = buffer.rfind(b"\n") + 1
    return len(buffer) - start > _MAX_LINE or buffer.count(b"\n") > _MAX_HEADERS


class _Connection(asyncio.Protocol):
    """One client connection: reads its requests one at a time and writes the answers."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: _Head | None = None  # the request whose body is awaited
        self.busy = False  # a request is being handled (answers go out in order)
        self.closed = False
        self.close_after = False
        self.command = ""
        self.requestline = ""
        self.peer: Any = None
        self.last_active = time.monotonic()

    # -- asyncio's side -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if exc is not None:
            logger.debug("connection from %s ended: %s", self.peer, exc)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.last_active = time.monotonic()
        if not self.busy:
            self.advance()

    # -- requests -----------------------------------------------------------------------------

    def advance(self) -> None:
        """Take up the next request, if all of it has arrived."""
        buffer = self.buffer
        while not self.busy and not self.closed and buffer:
            head = self.head
            if head is None:
                end = _head_end(buffer)
                if end < 0:
                    first = buffer.find(b"\n")
                    if first >= 0 and not buffer[:first].split():
                        end = first + 1  # a blank request line: nothing to answer
                    elif _incomplete_head_fails(buffer):
                        end = len(buffer)
                    else:
                        return
                head = _Head(bytes(buffer[:end]), self.peer)
                del buffer[:end]
                served = head.read()
                written = head.written.getvalue()
                if written:
                    self.write(written)  # an error page, or "100 Continue"
                if not served:
                    self.close()
                    return
                self.head = head
            body = self._body(head)
            if body is None:
                return
            self.head = None
            self.dispatch(head, body)

    def _body(self, head: _Head) -> bytes | None:
        """The request's body once it is all in the buffer (removed from it), else None.

        A framing the server refuses is answered here (and ``None`` returned).
        """
        buffer = self.buffer
        headers = head.request_headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunked(head)
        length_text = headers.get("content-length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            self.refuse(head, Reply(400, error_body("Invalid Content-Length")))
            return None
        if length > _MAX_BODY:
            self.refuse(head, Reply(413, error_body("Request Entity Too Large")))
            return None
        if len(buffer) < length:
            return None
        body = bytes(buffer[:length])
        del buffer[:length]
        return body

    def _chunked(self, head: _Head) -> bytes | None:
        """A chunked body, once its last chunk and trailers are in (read from the start
        each time more arrives: rare enough)."""
        buffer = self.buffer
        chunks: list[bytes] = []
        total = 0
        at = 0
        while True:
            end = buffer.find(b"\n", at, at + 1024)
            if end < 0:
                if len(buffer) - at >= 1024:
                    self.refuse(head, Reply(400, error_body("Invalid chunked body")))
                return None
            line = bytes(buffer[at : end + 1])
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.refuse(head, Reply(400, error_body("Invalid chunked body")))
                return None
            at = end + 1
            if size == 0:
                while True:  # trailers, up to a blank line
                    end = buffer.find(b"\n", at)
                    if end < 0:
                        return None
                    blank = not buffer[at : end + 1].strip()
                    at = end + 1
                    if blank:
                        del buffer[:at]
                        return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                self.refuse(head, Reply(413, error_body("Request Entity Too Large")))
                return None
            if len(buffer) < at + size:
                return None
            chunks.append(bytes(buffer[at : at + size]))
            at += size
            end = buffer.find(b"\n", at, at + 8)
            if end < 0:
                if len(buffer) - at >= 8:
                    at += 8  # as readline(8): what follows a chunk is skipped
                    continue
                return None
            at = end + 1

    def refuse(self, head: _Head, reply: Reply) -> None:
        """Answer a request whose body cannot be read, and close."""
        self.command, self.requestline = head.command, head.requestline
        self.close_after = True
        self.send(reply)
        self.close()

    def dispatch(self, head: _Head, body: bytes) -> None:
        """Handle one complete request (its answer may come later: see the module doc)."""
        server = self.server
        self.busy = True
        self.command, self.requestline = head.command, head.requestline
        self.close_after = head.close_connection
        server.busy += 1
        path, _, query = head.path.partition("?")
        if path == "/track":
            decision = server.faults.decide()
            if decision.latency:
                server.loop.call_later(decision.latency, self.track, head, query, body, decision)
            else:
                self.track(head, query, body, decision)
            return
        method = "GET" if head.command == "HEAD" else head.command
        server.current = self
        try:
            reply = server.engine.handle(method, path, query, head.request_headers, body)
        except Exception:
            self.fail()
            return
        finally:
            server.current = None
        self.answer(reply)

    def track(self, head: _Head, query: str, body: bytes, decision: FaultDecision) -> None:
        """Apply the fault decided for a ``/track`` request, or stage it: it is then
        answered after the next commit."""
        server = self.server
        if self.closed:
            self.done()
            return
        if decision.action == "reset" or server.refusing:
            self.reset()
            return
        if decision.action is not None:
            headers: tuple[tuple[str, str], ...] = (("x-collector-fault", decision.action),)
            if decision.retry_after is not None:
                headers += (("retry-after", str(decision.retry_after)),)
            detail = error_body(_reason(decision.status))
            self.answer(Reply(decision.status, detail, headers=headers))
            return
        method = "GET" if head.command == "HEAD" else head.command
        try:
            pending = server.engine.stage_track(method, query, head.request_headers, body)
        except Exception:
            self.fail()
            return
        server.stage(self, pending)

    def answer(self, reply: Reply) -> None:
        """Send the answer of the request being handled, then go on to the next one."""
        if not self.closed:
            if self.server.refusing:
                self.close_after = True
            self.send(reply)
            if self.close_after:
                self.close()
        self.done()

    def fail(self) -> None:
        """The request being handled raised: log it and answer as Tracardi's server does
        an exception its app does not handle (500, ``Internal Server Error`` as plain
        text; a year-0000 time does that to Tracardi 1.0's pydantic), then close."""
        logger.exception("error while handling a request from %s", self.peer)
        self.close_after = True
        self.answer(Reply(500, b"Internal Server Error", "text/plain; charset=utf-8"))

    def done(self) -> None:
        """The request being handled is over (a second call does nothing)."""
        if not self.busy:
            return
        self.busy = False
        self.server.busy -= 1
        self.last_active = time.monotonic()
        if self.buffer and not self.closed:
            self.advance()

    # -- writing ------------------------------------------------------------------------------

    def send(self, reply: Reply) -> None:
        head = [
            f"HTTP/1.1 {reply.status} {_reason(reply.status)}",
            f"date: {_date()}",
            f"server: {_SERVER_HEADER}",
            f"content-type: {reply.content_type}",
            f"content-length: {len(reply.body)}",
        ]
        head.extend(f"{name}: {value}" for name, value in reply.headers)
        if self.close_after:
            head.append("connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += reply.body
        self.write(data)
        logger.debug('"%s" %s %s', self.requestline, reply.status, len(reply.body))

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        """Close once what was written is sent."""
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def reset(self) -> None:
        """Drop the connection with a TCP reset, answering nothing."""
        transport = self.transport
        if transport is not None and not self.closed:
            self.closed = True
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
        self.buffer.clear()
        if self.busy:
            self.done()


class HTTPServer:
    """The collector's listening socket and the event loop serving its connections.

    The socket is bound when made (``OSError`` if it cannot be); :meth:`start` runs the loop
    on a daemon thread. Every other method may be called from any thread, including the
    loop's own (a request to ``/micro/faults`` can refuse connections).
    """

    def __init__(
        self,
        address: tuple[str, int],
        engine: Engine,
        faults: FaultController,
        family: socket.AddressFamily = socket.AF_INET,
    ) -> None:
        self.engine = engine
        self.faults = faults
        self.refusing = False
        """Answer no ``/track`` request (connections are being refused)."""
        self.busy = 0
        """Requests being handled (loop thread only)."""
        self.connections: set[_Connection] = set()
        """Open connections (loop thread only)."""
        self.current: _Connection | None = None
        """The connection whose request the engine is handling (loop thread only)."""
        self._family = family
        self._host = address[0]
        self.socket = self._bind(address[1])
        self.server_port: int = self.socket.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self._listener: asyncio.Server | None = None
        self._listening_to = 0  # bumped by each rebind and stop: a listen begun before is stale
        self._opening = False  # a listen is under way (create_server has not returned)
        self._staged: list[tuple[_Connection, PendingReply]] = []
        self._counted = 0  # staged requests when the loop last looked at the sockets
        self._thread: threading.Thread | None = None

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, port))
            sock.listen(_BACKLOG)
        except OSError:
            sock.close()
            raise
        return sock

    # -- life cycle (any thread) ------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Serve on a daemon thread called ``name``."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=name, daemon=True)
        self._thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen(self.socket))
            loop.call_later(_SWEEP_EVERY, self._sweep)
            ready.set()
            loop.run_forever()
        finally:
            ready.set()
            for connection in list(self.connections):
                connection.reset()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self.socket.close()

    async def _listen(self, sock: socket.socket) -> None:
        """Serve ``sock``, unless a stop or another rebind came while it was being set up:
        then the new server is closed at once (it closes ``sock``), never left serving a
        socket nobody tracks, nor made to serve one already closed."""
        asked = self._listening_to
        self._opening = True
        try:
            server = await self.loop.create_server(
                lambda: _Connection(self), sock=sock, backlog=_BACKLOG
            )
        finally:
            self._opening = False
        if asked != self._listening_to:
            server.close()
            return
        self._listener = server

    def close(self, timeout: float = 2.0) -> None:
        """Stop listening, drop every connection and stop the loop (waits for its thread)."""
        self.stop_listening()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self.socket.close()
            return
        self.drop_connections()
        self.loop.call_soon_threadsafe(self.loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout)

    def stop_listening(self) -> None:
        """Close the listening socket: connecting is refused until :meth:`rebind`."""

        def stop() -> None:
            self._listening_to += 1
            if self._listener is not None:
                self._listener.close()  # closes its socket
                self._listener = None
            elif not self._opening:  # else the listen under way closes it (see _listen)
                self.socket.close()

        self._call(stop)

    def rebind(self) -> None:
        """Listen again on the same address (after :meth:`stop_listening`).

        :raises OSError: when the address cannot be bound (yet).
        """
        sock = self._bind(self.server_port)
        self.socket = sock

        def listen() -> None:
            if sock.fileno() < 0:  # a stop came first and closed it
                return
            self._listening_to += 1  # a listen still under way is stale now
            if self._listener is not None:  # serving an old socket: it stops
                self._listener.close()
                self._listener = None
            self.loop.create_task(self._listen(sock))

        self._call(listen)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; ``False`` if the deadline passed."""
        if self._on_loop() or not self._running():
            return self.busy == 0
        deadline = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def drop_connections(self, timeout: float = 0.0) -> None:
        """Reset every open connection except the one whose request is being handled.

        (``timeout``: kept for the callers; resets take effect at once.)
        """

        def drop() -> None:
            for connection in list(self.connections):
                if connection is not self.current:
                    connection.reset()

        self._call(drop)

    def _on_loop(self) -> bool:
        return self._thread is threading.current_thread()

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.loop.is_running()

    def _call(self, function: Callable[[], _T]) -> _T | None:
        """Run ``function`` on the loop's thread and return what it returned (here and
        now on that thread, or when the loop does not run)."""
        if self._on_loop() or not self._running():
            return function()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as error:  # pragma: no cover - handed to the caller
                future.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        try:
            return future.result(timeout=10)
        except concurrent.futures.TimeoutError:  # the loop stopped meanwhile
            return None

    # -- the loop's side -----------------------------------------------------------------------

    def stage(self, connection: _Connection, pending: PendingReply) -> None:
        """A ``/track`` request was staged: answer it after the commit that follows the
        requests read in this pass of the loop."""
        if not self._staged:
            self._counted = 0
            self.loop.call_soon(self._commit_soon)
        self._staged.append((connection, pending))

    def _commit_soon(self) -> None:
        """Commit, unless the last pass of the loop read more requests: then let it take
        one more look at the sockets first (a commit costs as much as storing dozens of
        events, a look at the sockets next to nothing)."""
        if len(self._staged) > self._counted and len(self._staged) < _GROUP_REQUESTS:
            self._counted = len(self._staged)
            self.loop.call_soon(self._commit_soon)
            return
        self._commit()

    def _commit(self) -> None:
        staged, self._staged = self._staged, []
        engine = self.engine
        try:
            engine.commit()
        except Exception:  # the requests find out below
            logger.exception("a commit failed")
        for connection, pending in staged:
            try:
                reply = engine.finish_track(pending)
            except Exception:
                connection.fail()
                continue
            connection.answer(reply)

    def _sweep(self) -> None:
        """Close keep-alive connections idle for a minute."""
        horizon = time.monotonic() - _IDLE_TIMEOUT
        for connection in list(self.connections):
            if not connection.busy and connection.last_active < horizon:
                connection.close()
        self.loop.call_later(_SWEEP_EVERY, self._sweep)
