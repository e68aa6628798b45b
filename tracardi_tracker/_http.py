"""A lean keep-alive HTTP/1.1 connection for the importer, on a plain socket.

An import makes tens of thousands of small requests. ``requests`` spends several hundred
microseconds of CPU on each, ``http.client`` about a hundred; this one writes a prepared
request head and the body in one ``sendall`` and reads the answer with a few ``bytes``
operations, about a third of ``http.client``'s cost. More important, sending and reading
are separate steps (:meth:`HttpConnection.send`, :meth:`HttpConnection.receive`), so one
thread can keep a request in flight on each of several connections while it reads and
encodes the next payloads (see :mod:`tracardi_tracker.importer._pipeline`);
:meth:`HttpConnection.post` does both at once for the threaded sender and for retries.

Answers are mapped by the SDK's own :func:`~tracardi_tracker._transport.interpret`, so
statuses and errors mean exactly what they mean for the tracker. A connection the server
closed while it was idle is reopened and the request sent again, once (safe: every event
carries its id). Proxy settings in the environment are not read; pass
``transport_factory=lambda: HttpTransport()`` to :func:`import_events` to send through
``requests`` instead (proxies, a custom CA bundle).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ._transport import USER_AGENT, TrackResponse, interpret
from .exceptions import TransportError

__all__ = ["Answer", "HttpConnection", "ProtocolError"]

_MAX_HEAD = 64 * 1024
_RECEIVE = 256 * 1024


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.x answer we can read."""


class _Closed(Exception):
    """The server closed the connection; ``partial``: after part of an answer."""

    def __init__(self, partial: bool) -> None:
        super().__init__("closed by the server" + (" mid-answer" if partial else ""))
        self.partial = partial


class Answer:
    """One HTTP answer: status, body, and the ``Retry-After`` header if any."""

    __slots__ = ("content", "retry_after", "status")

    def __init__(self, status: int, content: bytes, retry_after: str | None) -> None:
        self.status = status
        self.content = content
        self.retry_after = retry_after

    def interpret(self, event_ids: Sequence[str] = ()) -> TrackResponse:
        """Map the answer like the SDK does (raises a ``DeliveryError`` for failures)."""
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return interpret(self.status, self.content, headers, event_ids=event_ids)


class HttpConnection:
    """One keep-alive connection to one URL; one request at a time; not thread-safe.

    ``send(body)`` writes a POST of ``body`` (opening the connection if needed),
    ``receive()`` reads its answer; :meth:`post` is the SDK's ``Transport`` protocol (both
    at once, to any URL). Failures raise
    :class:`~tracardi_tracker.exceptions.TransportError`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        verify: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.verify = verify
        self._extra = dict(headers or {})
        self._sock: Any = None
        self._reused = False
        self._answered = False  # bytes of the current answer arrived
        self._buffer = bytearray()
        self._request: bytes | None = None
        self.url = ""
        self._target: tuple[str, str, int] = ("", "", 0)
        self._head = b""
        if url is not None:
            self._aim(url)

    # -- where to ---------------------------------------------------------------------------

    def _aim(self, url: str) -> None:
        if url == self.url:
            return
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise TransportError(f"cannot send to {url}: not an http(s) URL")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        target = (scheme, host, port)
        if target != self._target:
            self.close()
        self.url = url
        self._target = target
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            shown = f"{shown}:{port}"
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {shown}",
            f"User-Agent: {USER_AGENT}",
            "Content-Type: application/json",
            "Accept: application/json",
            "Accept-Encoding: identity",
            *(f"{name}: {value}" for name, value in self._extra.items()),
            "Content-Length: ",
        ]
        self._head = "\r\n".join(lines).encode("latin-1")

    def _connect(self) -> Any:
        scheme, host, port = self._target
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except TimeoutError as error:
            raise TransportError(f"could not reach {self.url}: timed out connecting") from error
        except OSError as error:
            raise TransportError(
                f"could not reach {self.url}: {type(error).__name__}: {error}"
            ) from error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            context = ssl.create_default_context()
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except (OSError, ssl.SSLError) as error:
                sock.close()
                raise TransportError(f"could not reach {self.url}: {error}") from error
        self._sock = sock
        self._reused = False
        self._buffer.clear()
        return sock

    # -- the two halves -----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a request was sent and its answer not read yet."""
        return self._request is not None

    def fileno(self) -> int:
        """The socket's descriptor (for ``select``); -1 when not connected."""
        return self._sock.fileno() if self._sock is not None else -1

    def ready(self) -> bool:
        """Whether :meth:`receive` can go ahead without waiting for the socket: bytes are
        waiting that its descriptor does not show (TLS), or there is no connection any more
        (``receive`` then fails at once)."""
        sock = self._sock
        if sock is None:
            return True
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def send(self, body: bytes) -> None:
        """Send a POST of ``body``; read the answer with :meth:`receive`."""
        request = self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        self._request = request
        try:
            self._write(request)
        except BaseException:
            self.close()  # perhaps half written (or interrupted): the connection is done
            raise

    def _write(self, request: bytes) -> None:
        for attempt in (1, 2):
            sock = self._sock if self._sock is not None else self._connect()
            try:
                sock.sendall(request)
                return
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as error:
                reused = self._reused
                self.close(keep_request=True)
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: a new one, once
                raise self._failure(error) from error
            except OSError as error:
                self.close()
                raise self._failure(error) from error

    def receive(self) -> Answer:
        """Read the answer to the request sent (blocking, at most ``timeout`` per read)."""
        request = self._request
        if request is None or self._sock is None:
            raise TransportError(f"no request in flight to {self.url}")
        self._answered = False
        try:
            try:
                answer, keep = self._read()
            except (_Closed, ConnectionResetError, ConnectionAbortedError):
                stale = self._reused and not self._answered
                self.close(keep_request=True)
                if not stale:
                    raise
                self._write(request)  # closed while idle: send again on a new connection
                answer, keep = self._read()
        except (_Closed, OSError, ProtocolError, ValueError) as error:
            self.close()
            raise self._failure(error) from error
        except BaseException:
            self.close()  # interrupted mid-answer: the connection's state is unknown
            raise
        self._request = None
        if keep and not self._buffer:
            self._reused = True
        else:
            self.close()
        return answer

    def post(
        self,
        url: str,
        body: bytes,
        *,
        event_ids: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> TrackResponse:
        """POST one encoded payload and map the answer (the SDK's ``Transport`` protocol)."""
        if headers:
            merged = {**self._extra, **headers}
            if merged != self._extra:
                self._extra = merged
                self.url = ""
        self._aim(url)
        try:
            self.send(body)
            answer = self.receive()
        except TransportError as error:
            error.event_ids = tuple(event_ids)
            raise
        return answer.interpret(event_ids)

    def _failure(self, error: BaseException) -> TransportError:
        if isinstance(error, TimeoutError):
            return TransportError(f"no answer from {self.url} within {self.timeout}s")
        if isinstance(error, _Closed):
            return TransportError(f"could not reach {self.url}: RemoteDisconnected ({error})")
        return TransportError(f"could not reach {self.url}: {type(error).__name__}: {error}")

    # -- reading an answer ----------------------------------------------------------------------

    def _fill(self) -> None:
        chunk = self._sock.recv(_RECEIVE)
        if not chunk:
            raise _Closed(partial=self._answered)
        self._answered = True
        self._buffer += chunk

    def _read(self) -> tuple[Answer, bool]:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise ProtocolError("answer head too long")
                self._fill()
                end = buffer.find(b"\r\n\r\n")
            head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            version, _, rest = head[0].partition(" ")
            if not version.startswith("HTTP/1."):
                raise ProtocolError(f"not an HTTP/1.x answer: {head[0][:60]!r}")
            status = int(rest[:3])
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            fields: dict[str, str] = {}
            for line in head[1:]:
                name, colon, value = line.partition(":")
                if colon:
                    fields[name.strip().lower()] = value.strip()
            connection = fields.get("connection", "").lower()
            keep = "close" not in connection
            if version == "HTTP/1.0":
                keep = "keep-alive" in connection
            if "chunked" in fields.get("transfer-encoding", "").lower():
                content = self._read_chunked()
            elif "content-length" in fields:
                content = self._read_exactly(int(fields["content-length"]))
            elif status in (204, 304):
                content = b""
            else:
                content = self._read_to_end()
                keep = False
            return Answer(status, content, fields.get("retry-after")), keep

    def _read_exactly(self, length: int) -> bytes:
        if length < 0:
            raise ProtocolError("negative Content-Length")
        buffer = self._buffer
        while len(buffer) < length:
            self._fill()
        content = bytes(buffer[:length])
        del buffer[:length]
        return content

    def _read_line(self) -> bytes:
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        while end < 0:
            if len(buffer) > _MAX_HEAD:
                raise ProtocolError("chunk line too long")
            self._fill()
            end = buffer.find(b"\r\n")
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        return line

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self._read_line().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self._read_line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            if self._read_exactly(2) != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")

    def _read_to_end(self) -> bytes:
        while True:
            try:
                self._fill()
            except _Closed:
                break
        content = bytes(self._buffer)
        self._buffer.clear()
        return content

    # -- closing ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the connection without closing it (after a fork: it is the parent's)."""
        self._sock = None
        self._request = None
        self._buffer.clear()

    def close(self, *, keep_request: bool = False) -> None:
        """Close the connection; idempotent. The next request opens a new one."""
        sock, self._sock = self._sock, None
        self._buffer.clear()
        self._reused = False
        if not keep_request:
            self._request = None
        if sock is not None:
            with contextlib.suppress(OSError):  # closing never matters
                sock.close()
