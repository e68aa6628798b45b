"""The ``Transport`` protocol, the ``requests``-based transport, and every answer mapped
to our types.

Two clients talk HTTP: :class:`HttpTransport` here (``requests``: proxies, a caller's
own session) and the lean keep-alive client in :mod:`tracardi_tracker._http` (the
importer's, and the emitters' default where no proxy applies: see
:mod:`tracardi_tracker._default_transport`). Both map answers with :func:`interpret`, so
a status means the same whichever sent the request. Foreign errors (``requests``', the
socket's and JSON's) are translated into our exceptions and raised ``from`` the
original. Above these modules ``requests`` is imported only for the type of a
caller's session.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ._retry import RetryableServerError
from ._version import __version__
from .exceptions import (
    DeliveryError,
    PayloadRejectedError,
    SourceRejectedError,
    TransportError,
)

if TYPE_CHECKING:
    import requests  # loaded only when a requests transport is made (~19 MB of memory)

logger = logging.getLogger(__name__)

USER_AGENT = f"tracardi-tracker-python/{__version__}"
DEFAULT_TIMEOUT = 10.0
_SUCCESS = frozenset({200, 201, 202, 226})


@attrs.frozen(kw_only=True)
class TrackResponse:
    """What Tracardi answered to one payload.

    ``profile_id`` and ``session_id`` are the ids Tracardi attached the events to
    (``None`` when it sent none: an empty batch, ``saveProfile=false``...); the
    SDK adopts them for the visitor. ``body`` is the decoded JSON as it came.
    """

    status: int
    profile_id: str | None = None
    session_id: str | None = None
    task: str | None = None
    errors: tuple[Any, ...] = ()
    body: Any = None


class Transport(Protocol):
    """What an emitter needs to send a payload: the seam between delivery logic and
    the network."""

    def post(
        self,
        url: str,
        body: bytes,
        *,
        event_ids: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> TrackResponse:
        """POST one encoded payload; return the answer or raise a ``DeliveryError``."""

    def reset(self) -> None:
        """Forget connections made by a parent process (called after a fork)."""

    def close(self) -> None:
        """Release connections; safe to call twice."""


def _headers_for(session: requests.Session) -> dict[str, str]:
    """What each request through a caller's ``session`` adds to the session's own headers:
    the body's type, and the SDK's User-Agent unless the session names another."""
    import requests

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if session.headers.get("User-Agent") in (None, requests.utils.default_user_agent()):
        headers["User-Agent"] = USER_AGENT
    return headers


class HttpTransport:
    """Posts encoded payloads with one ``requests.Session``, a timeout always set.

    Thread-safe for concurrent posts; :meth:`reset` makes a fresh session (after a
    fork); :meth:`close` is safe to call twice.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        session: requests.Session | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.timeout = timeout
        self.verify = verify
        self._lock = threading.Lock()
        self._session = session or self._new_session()
        self._headers = {} if session is None else _headers_for(session)

    @staticmethod
    def _new_session() -> requests.Session:
        import requests

        session = requests.Session()
        session.headers.update(
            {
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json",
                "Accept": "application/json",
                # requests never compresses a body; say so for responses too
                "Accept-Encoding": "identity",
            }
        )
        return session

    def reset(self) -> None:
        """Drop the HTTP session (its sockets belong to a parent process) and make a new one.

        Called in a forked child: the parent's lock may be held by a thread that does
        not exist here, so the lock is made anew rather than taken.
        """
        self._lock = threading.Lock()
        self._session = self._new_session()
        self._headers = {}

    def close(self) -> None:
        """Close the HTTP session's connections; idempotent."""
        with self._lock:
            self._session.close()

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
        import requests  # already loaded by the session: a dictionary lookup

        try:
            response = self._session.post(
                url,
                data=body,
                headers={**self._headers, **(headers or {})},
                timeout=self.timeout,
                verify=self.verify,
            )
        except requests.Timeout as error:
            raise TransportError(
                f"no answer from {url} within {self.timeout}s", event_ids=event_ids
            ) from error
        except requests.RequestException as error:
            raise TransportError(
                f"could not reach {url}: {type(error).__name__}", event_ids=event_ids
            ) from error
        return interpret(response.status_code, response.content, response.headers, event_ids)


def interpret(
    status: int, content: bytes, headers: Mapping[str, str], event_ids: Sequence[str] = ()
) -> TrackResponse:
    """Map a status and body from ``POST /track`` to a :class:`TrackResponse` or an error."""
    if status in _SUCCESS:
        body = _decode(content)
        if status == 226:
            logger.warning("Tracardi accepted the payload with errors (226)")
        return _response(status, body)
    detail = _detail(content)
    if status in (401, 406):
        raise SourceRejectedError(
            f"Tracardi rejected the source or traffic ({status}): {_short(detail)}",
            event_ids=event_ids,
            status=status,
        )
    if status in (400, 422):
        raise PayloadRejectedError(
            f"Tracardi rejected the payload ({status}): {_short(detail)}",
            detail=detail,
            event_ids=event_ids,
            status=status,
        )
    if status in (408, 429) or 500 <= status < 600:
        error = RetryableServerError(
            f"Tracardi answered {status}: {_short(detail)}",
            status=status,
            retry_after=retry_after(headers.get("Retry-After")),
        )
        error.event_ids = tuple(event_ids)
        raise error
    raise DeliveryError(
        f"Tracardi answered {status} (check the endpoint URL): {_short(detail)}",
        event_ids=event_ids,
        status=status,
    )


def _decode(content: bytes) -> Any:
    if not content.strip():
        return None
    try:
        return json.loads(content)
    except ValueError:
        logger.warning("Tracardi's answer was not JSON; profile and session ids not adopted")
        return None


def _response(status: int, body: Any) -> TrackResponse:
    if not isinstance(body, dict):
        return TrackResponse(status=status, body=body)
    return TrackResponse(
        status=status,
        profile_id=_id_of(body.get("profile")),
        session_id=_id_of(body.get("session")),
        task=body.get("task") if isinstance(body.get("task"), str) else None,
        errors=tuple(body.get("errors") or ()),
        body=body,
    )


def _id_of(entity: Any) -> str | None:
    if isinstance(entity, dict):
        value = entity.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def _detail(content: bytes) -> Any:
    try:
        body = json.loads(content)
    except ValueError:
        return content[:500].decode("utf-8", "replace")
    return body.get("detail", body) if isinstance(body, dict) else body


def _short(detail: Any, limit: int = 300) -> str:
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import email.utils  # here: loading email costs about 1 MB, and few answers need it

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
