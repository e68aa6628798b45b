"""A lean keep-alive HTTP/1.1 client on a plain socket: the SDK's default way to POST.

``requests`` spends several hundred microseconds of CPU on each request, ``http.client``
about a hundred; this client writes a prepared request head and the body in one
``sendall`` and reads the answer with a few ``bytes`` operations. Two layers:

- :class:`HttpConnection`: one connection, one request at a time, not thread-safe.
  Sending and reading are separate steps (:meth:`HttpConnection.send`,
  :meth:`HttpConnection.receive`), so the importer keeps a request in flight on each of
  several connections while it encodes the next payloads (see
  :mod:`tracardi_tracker.importer._pipeline`); :meth:`HttpConnection.post` does both.
- :class:`LeanTransport`: the SDK's ``Transport`` protocol over a pool of connections,
  thread-safe (see its docstring), used by the emitters through
  :mod:`tracardi_tracker._default_transport`.

Answers are mapped by the SDK's own :func:`~tracardi_tracker._transport.interpret`, so
statuses and errors mean exactly what they mean with ``requests``; every failure to
deliver is a :class:`~tracardi_tracker.exceptions.TransportError`. Answers may come with
a ``Content-Length``, chunked, or ended by closing the connection; interim ``1xx``
answers are skipped; gzip and deflate bodies are decoded. A connection the server closed
while it was idle is reopened and the request sent again, once (safe: every event
carries its id). TLS is verified as ``requests`` verifies it: ``verify=True`` trusts
``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or certifi's bundle, ``verify="path"`` a CA
bundle file or a directory of certificates, ``verify=False`` anything. Proxies are not
spoken: the emitters send through ``requests`` where one applies.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import struct
import sys
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ._transport import DEFAULT_TIMEOUT, USER_AGENT, TrackResponse, interpret
from .exceptions import DeliveryError, TransportError

if TYPE_CHECKING:
    import ssl  # imported where TLS is used: ssl costs ~12 MB of memory to load

__all__ = ["Answer", "HttpConnection", "LeanTransport", "ProtocolError", "tls_context"]

_MAX_HEAD = 64 * 1024
_RECEIVE = 256 * 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\r\n\0]")
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"
_STALE = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


_KERNEL_TIMEOUTS = sys.platform.startswith("linux")


def _kernel_timeouts(sock: socket.socket, timeout: float) -> None:
    """Time out ``sock``'s reads and writes in the kernel (``SO_RCVTIMEO``/``SO_SNDTIMEO``)
    and make it blocking, so CPython makes one system call per ``send``/``recv`` instead
    of a ``poll()`` and the call. Each of those calls lets go of the GIL, and a thread that
    lets go of it while another thread computes waits up to the switch interval (5 ms)
    to get it back: a background sender makes half as many such waits this way. A read or
    write that times out raises ``BlockingIOError`` (EAGAIN), which the callers turn
    into ``TimeoutError``."""
    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)


def _stale() -> tuple[type[Exception], ...]:
    """What a connection the server closed while it was idle raises when it is used again
    (``ssl``'s EOF error too once TLS is in use: ``ssl`` is loaded only for https)."""
    ssl = sys.modules.get("ssl")
    return _STALE if ssl is None else (*_STALE, ssl.SSLEOFError)


def _closed_or_stale() -> tuple[type[Exception], ...]:
    return (_Closed, *_stale())


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.x answer we can read."""


class _Closed(Exception):
    """The server closed the connection; ``partial``: after part of an answer."""

    def __init__(self, partial: bool) -> None:
        super().__init__("closed by the server" + (" mid-answer" if partial else ""))
        self.partial = partial


class Answer:
    """One HTTP answer: status, body, and the ``Retry-After`` and ``Location`` headers."""

    __slots__ = ("content", "location", "retry_after", "status")

    def __init__(
        self, status: int, content: bytes, retry_after: str | None, location: str | None = None
    ) -> None:
        self.status = status
        self.content = content
        self.retry_after = retry_after
        self.location = location

    def interpret(self, event_ids: Sequence[str] = ()) -> TrackResponse:
        """Map the answer like the SDK does (raises a ``DeliveryError`` for failures)."""
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return interpret(self.status, self.content, headers, event_ids=event_ids)


@functools.lru_cache(maxsize=8)
def _load_context(where: str | None) -> ssl.SSLContext:
    import ssl

    if where is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif os.path.isdir(where):
        context = ssl.create_default_context(capath=where)
    else:
        context = ssl.create_default_context(cafile=where)
    return context


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS settings ``requests`` would use for ``verify`` (made once per bundle).

    ``True``: the bundle named by ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else
    certifi's; a string: that CA bundle file or directory of certificates; ``False``: no
    verification. An unreadable bundle raises
    :class:`~tracardi_tracker.exceptions.TransportError`.
    """
    where: str | None
    if verify is False:
        where = None
    elif isinstance(verify, str):
        where = verify
    else:
        where = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if not where:
            import certifi  # a dependency of requests; imported only for TLS

            where = certifi.where()
    try:
        return _load_context(where)
    except OSError as error:  # ssl.SSLError is one
        raise TransportError(f"cannot use the CA certificates at {where}: {error}") from error


def _header_lines(headers: Mapping[str, str]) -> bytes:
    """Encode request headers, refusing what would break the request (line breaks)."""
    lines = []
    for name, value in headers.items():
        text = str(value)
        if not _TOKEN.fullmatch(name) or _UNSAFE_VALUE.search(text):
            raise DeliveryError(f"header {name!r} cannot be sent: {text[:60]!r}")
        try:
            lines.append(f"{name}: {text}\r\n".encode("latin-1"))
        except UnicodeEncodeError as error:
            raise DeliveryError(f"header {name!r} cannot be sent: {text[:60]!r}") from error
    return b"".join(lines)


class HttpConnection:
    """One keep-alive connection to one URL; one request at a time; not thread-safe.

    ``send(body)`` writes a POST of ``body`` (opening the connection if needed),
    ``receive()`` reads its answer; :meth:`post` is the SDK's ``Transport`` protocol (both
    at once, to any URL). ``headers`` go with every request, those given to ``send`` or
    ``post`` with that request only. Failures raise
    :class:`~tracardi_tracker.exceptions.TransportError`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        verify: bool | str = True,
        headers: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.verify = verify
        self._tls = tls
        self._extra = dict(headers or {})
        self._sock: Any = None
        self._reused = False
        self._answered = False  # bytes of the current answer arrived
        self._buffer = bytearray()
        self._request: bytes | None = None
        self.url = ""
        self._target: tuple[str, str, int] = ("", "", 0)
        self._fixed: dict[str, str] = {}
        self._fixed_names: set[str] = set()
        self._line = b""
        self._lead = b""
        self._head = b""
        if url is not None:
            self._aim(url)

    # -- where to ---------------------------------------------------------------------------

    def _aim(self, url: str) -> None:
        if url == self.url:
            return
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise TransportError(f"cannot send to {url}: {error}") from error
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"cannot send to {url}: not an http(s) URL with a host")
        host = parts.hostname
        port = port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        path = quote(path, safe=_PATH_SAFE)  # what requests sends: spaces etc. escaped
        target = (scheme, host, port)
        if target != self._target:
            self.close()
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            shown = f"{shown}:{port}"
        fixed = {
            "Host": shown,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            **self._extra,
        }
        self._line = f"POST {path} HTTP/1.1\r\n".encode("latin-1")
        self._lead = self._line + _header_lines(fixed)
        self._head = self._lead + b"Content-Length: "
        self._fixed = fixed
        self._fixed_names = {name.lower() for name in fixed}
        self.url = url
        self._target = target

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
        if scheme == "http" and _KERNEL_TIMEOUTS:
            _kernel_timeouts(sock, self.timeout)
        elif scheme == "https":
            try:
                if self._tls is None:
                    self._tls = tls_context(self.verify)
                sock = self._tls.wrap_socket(sock, server_hostname=host)
            except (OSError, TransportError) as error:  # ssl.SSLError is an OSError
                sock.close()
                if isinstance(error, TransportError):
                    raise
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

    @property
    def connected(self) -> bool:
        """Whether a connection is open (and can be used for the next request)."""
        return self._sock is not None

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
        ssl = sys.modules.get("ssl")
        return ssl is not None and isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def send(self, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Send a POST of ``body``, with ``headers`` for this request only; read the answer
        with :meth:`receive`. A header that cannot be sent raises a ``DeliveryError``."""
        length = str(len(body)).encode()
        if not headers:
            request = b"".join((self._head, length, b"\r\n\r\n", body))
        else:
            names = {name.lower() for name in headers}
            if names.isdisjoint(self._fixed_names):
                lead = self._lead + _header_lines(headers)
            else:  # this request replaces a fixed header
                kept = {n: v for n, v in self._fixed.items() if n.lower() not in names}
                lead = self._line + _header_lines({**kept, **headers})
            request = b"".join((lead, b"Content-Length: ", length, b"\r\n\r\n", body))
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
            except BlockingIOError as error:  # SO_SNDTIMEO ran out
                self.close()
                raise self._failure(TimeoutError()) from error
            except _stale() as error:
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
            except _closed_or_stale():
                stale = self._reused and not self._answered
                self.close(keep_request=True)
                if not stale:
                    raise
                self._write(request)  # closed while idle: send again on a new connection
                self._answered = False
                answer, keep = self._read()
        except (_Closed, OSError, ProtocolError, ValueError, zlib.error) as error:
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
        """POST one encoded payload and map the answer (the SDK's ``Transport`` protocol).

        ``headers`` go with this request only."""
        try:
            self._aim(url)
            self.send(body, headers)
            answer = self.receive()
        except DeliveryError as error:
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
        try:
            chunk = self._sock.recv(_RECEIVE)
        except BlockingIOError as error:  # SO_RCVTIMEO ran out
            raise TimeoutError from error
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
            encoding = fields.get("content-encoding", "identity").lower()
            if encoding in ("gzip", "x-gzip", "deflate") and content:
                content = _decompress(content, encoding)
            answer = Answer(status, content, fields.get("retry-after"), fields.get("location"))
            return answer, keep

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
        """Forget the connection (after a fork: it is the parent's).

        This process's copy of the descriptor is closed, which sends nothing to the server
        while the parent holds its own copy (and TLS sends no close_notify on ``close``).
        """
        self.close()

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


def _decompress(content: bytes, encoding: str) -> bytes:
    if encoding == "deflate":
        try:
            return zlib.decompress(content)
        except zlib.error:
            return zlib.decompress(content, -zlib.MAX_WBITS)  # raw deflate, as some send
    return zlib.decompress(content, 16 + zlib.MAX_WBITS)


class LeanTransport:
    """The SDK's ``Transport`` over pooled :class:`HttpConnection` objects; thread-safe.

    Each :meth:`post` takes an idle connection to its URL from the pool (or opens one),
    sends and reads without holding any lock, then puts the connection back, keeping at
    most ``max_idle`` idle connections per URL. So the background emitter's one sender
    thread reuses one connection, and a ``SyncEmitter`` called from many threads gets
    one connection per concurrent call; the only shared state is the pool, touched
    under a lock for a list ``pop``/``append`` (well under a microsecond). A lock per
    connection would serialise concurrent calls instead.

    :meth:`close` (from any thread, idempotent) closes the idle connections at once and
    those in use when their request ends (a socket another thread is reading is never
    closed under it); a later :meth:`post` opens new ones, as ``requests`` does.
    :meth:`reset` (in a forked child) forgets the parent's connections and lock.
    Redirects are not followed: :meth:`exchange` returns the ``Answer`` so a caller can.
    """

    def __init__(
        self, *, timeout: float = DEFAULT_TIMEOUT, verify: bool | str = True, max_idle: int = 10
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.timeout = timeout
        self.verify = verify
        self.max_idle = max_idle
        self._tls: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._idle: dict[str, list[HttpConnection]] = {}
        self._generation = 0

    def exchange(self, url: str, body: bytes, headers: Mapping[str, str] | None) -> Answer:
        """POST ``body`` to ``url`` and return the answer as it came, unmapped."""
        with self._lock:
            idle = self._idle.get(url)
            connection = idle.pop() if idle else None
            generation = self._generation
        if connection is None:
            if self._tls is None and url[:6].lower() == "https:":
                self._tls = tls_context(self.verify)
            connection = HttpConnection(url, timeout=self.timeout, tls=self._tls)
        try:
            connection.send(body, headers)
            answer = connection.receive()
        except BaseException:
            connection.close()
            raise
        if connection.connected:
            with self._lock:
                if generation == self._generation:
                    idle = self._idle.setdefault(url, [])
                    if len(idle) < self.max_idle:
                        idle.append(connection)
                        return answer
            connection.close()
        return answer

    def post(
        self,
        url: str,
        body: bytes,
        *,
        event_ids: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> TrackResponse:
        """POST one encoded payload and return Tracardi's answer, or raise a
        :class:`~tracardi_tracker.exceptions.DeliveryError` subclass."""
        try:
            answer = self.exchange(url, body, headers)
        except DeliveryError as error:
            error.event_ids = tuple(event_ids)
            raise
        return answer.interpret(event_ids)

    def reset(self) -> None:
        """Forget the parent's connections and lock (called in a forked child)."""
        idle, self._idle = self._idle, {}
        self._lock = threading.Lock()
        self._generation += 1
        for connections in idle.values():
            for connection in connections:
                connection.reset()

    def close(self) -> None:
        """Close the idle connections now and those in use when their request ends;
        idempotent."""
        with self._lock:
            idle, self._idle = self._idle, {}
            self._generation += 1
        for connections in idle.values():
            for connection in connections:
                connection.close()
