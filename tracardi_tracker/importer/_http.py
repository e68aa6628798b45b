"""A lean keep-alive HTTP transport for the importer's workers, on ``http.client``.

An import makes tens of thousands of small requests; ``requests`` spends several hundred
microseconds of CPU on each (adapters, hooks, cookie jars), ``http.client`` about a fifth
of that, which decides the throughput when sessions are short. Each worker owns one
:class:`ConnectionTransport` (one connection, reopened when the server closed it). Answers
are mapped by the SDK's own :func:`~tracardi_tracker._transport.interpret`, so statuses and
errors mean exactly what they mean for the tracker.

It does not read proxy settings from the environment; pass
``transport_factory=lambda: HttpTransport()`` to :func:`import_events` to send through
``requests`` instead (proxies, a custom CA bundle).
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from .._transport import USER_AGENT, TrackResponse, interpret
from ..exceptions import TransportError

__all__ = ["ConnectionTransport"]

_STALE = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)
"""Errors that, on a reused connection, mean the server closed it while it was idle."""


class ConnectionTransport:
    """One keep-alive connection to Tracardi; not thread-safe (one per worker)."""

    def __init__(self, *, timeout: float = 30.0, verify: bool = True) -> None:
        self.timeout = timeout
        self.verify = verify
        self._connection: http.client.HTTPConnection | None = None
        self._target: tuple[str, str, int] | None = None
        self._reused = False
        self._headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or "localhost"
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        target = (scheme, host, port)
        if self._connection is None or self._target != target:
            self.close()
            if scheme == "https":
                context = ssl.create_default_context()
                if not self.verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._connection = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=context
                )
            else:
                self._connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self._target = target
            self._reused = False
        return self._connection, path

    def post(
        self,
        url: str,
        body: bytes,
        *,
        event_ids: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> TrackResponse:
        """POST one encoded payload and map the answer (or raise a ``DeliveryError``)."""
        sent_headers = {**self._headers, **(headers or {})}
        for attempt in (1, 2):
            connection, path = self._connect(url)
            reused = self._reused
            try:
                connection.request("POST", path, body=body, headers=sent_headers)
                response = connection.getresponse()
                content = response.read()
            except _STALE as error:
                self.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: open a new one, once
                raise TransportError(
                    f"could not reach {url}: {type(error).__name__}", event_ids=event_ids
                ) from error
            except TimeoutError as error:
                self.close()
                raise TransportError(
                    f"no answer from {url} within {self.timeout}s", event_ids=event_ids
                ) from error
            except (OSError, http.client.HTTPException) as error:
                self.close()
                raise TransportError(
                    f"could not reach {url}: {type(error).__name__}: {error}", event_ids=event_ids
                ) from error
            self._reused = True
            if response.will_close:
                self.close()
            retry_after = response.getheader("Retry-After")
            answer_headers = {"Retry-After": retry_after} if retry_after else {}
            return interpret(response.status, content, answer_headers, event_ids=event_ids)
        raise AssertionError("unreachable")  # pragma: no cover

    def reset(self) -> None:
        """Forget the connection (after a fork)."""
        self._connection = None
        self._target = None

    def close(self) -> None:
        """Close the connection; idempotent."""
        connection, self._connection = self._connection, None
        self._target = None
        if connection is not None:
            connection.close()
