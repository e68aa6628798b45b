"""A transport that records payloads and answers like Tracardi, without a socket.

Re-exported by :mod:`tracardi_tracker.testing`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._transport import TrackResponse, interpret


@attrs.frozen
class CapturedRequest:
    """One payload a :class:`CapturingTransport` received: URL, decoded JSON, headers."""

    url: str
    payload: dict[str, Any]
    headers: Mapping[str, str]
    body: bytes


Responder = Callable[[dict[str, Any]], tuple[int, Any]]
"""Given a decoded payload, return ``(status, body)``; a body of ``...`` means no body."""


def tracardi_like(payload: dict[str, Any]) -> tuple[int, Any]:
    """Answer as Tracardi 0.9 does: keep sent ids, make a profile id for a new visitor."""
    if not payload.get("events"):
        return 200, None
    profile = (payload.get("profile") or {}).get("id") or str(uuid.uuid4())
    session = (payload.get("session") or {}).get("id") or str(uuid.uuid4())
    return 200, {
        "task": str(uuid.uuid4()),
        "ux": [],
        "response": {},
        "events": [],
        "profile": {"id": profile},
        "session": {"id": session},
        "errors": [],
        "warnings": [],
    }


class CapturingTransport:
    """Records every payload and answers through ``responder`` (Tracardi-like by default).

    ``requests`` lists what arrived, in order; :attr:`payloads` and :attr:`events`
    are shortcuts. Thread-safe.
    """

    def __init__(self, responder: Responder = tracardi_like) -> None:
        self.responder = responder
        self.requests: list[CapturedRequest] = []
        self._lock = threading.Lock()
        self.closed = False

    def post(
        self,
        url: str,
        body: bytes,
        *,
        event_ids: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> TrackResponse:
        """Record the payload, then answer like the server would."""
        payload = json.loads(body)
        with self._lock:
            self.requests.append(CapturedRequest(url, payload, dict(headers or {}), body))
        status, answer = self.responder(payload)
        content = b"" if answer is ... else json.dumps(answer).encode()
        return interpret(status, content, {}, event_ids)

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """The decoded payloads, in the order they were sent."""
        with self._lock:
            return [request.payload for request in self.requests]

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event of every payload, in order."""
        return [event for payload in self.payloads for event in payload["events"]]

    def reset(self) -> None:
        """Nothing to reset: there are no connections."""

    def close(self) -> None:
        """Mark the transport closed."""
        self.closed = True
