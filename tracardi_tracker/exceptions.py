"""The exceptions the SDK raises, all rooted in :class:`TrackerError`.

The tree::

    TrackerError
    ├── InvalidEventError (also ValueError)   bad input, raised by track() or a
    │                                         constructor before anything is sent
    ├── ConfigurationError (also ValueError)  a Tracker or emitter set up wrongly
    ├── TrackerClosedError                    track() after close()
    └── DeliveryError                         Tracardi did not take a payload
        ├── SourceRejectedError               401/406: unknown or disabled source,
        │                                     bot traffic; never retried
        ├── PayloadRejectedError              400/422: the payload broke the server's
        │                                     model; never retried; ``detail`` kept
        ├── ServerError                       5xx (and 408/429) after the retries
        ├── TransportError                    connection error or timeout after the
        │                                     retries
        ├── QueueFullError                    dropped: the background queue was full
        └── UndeliveredError                  still unsent at a flush/close deadline

Every :class:`DeliveryError` carries the ids of the events it concerns, so an
application can account for each event that ``track()`` accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "InvalidEventError",
    "PayloadRejectedError",
    "QueueFullError",
    "ServerError",
    "SourceRejectedError",
    "TrackerClosedError",
    "TrackerError",
    "TransportError",
    "UndeliveredError",
]


class TrackerError(Exception):
    """Root of every exception raised by tracardi-tracker."""


class InvalidEventError(TrackerError, ValueError):
    """An event, or one of its values, cannot be turned into a Tracardi payload.

    ``path`` names the bad field the way it would appear in the payload, such as
    ``properties.items[2].price`` or ``time.create``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class ConfigurationError(TrackerError, ValueError):
    """A :class:`~tracardi_tracker.Tracker` or emitter was given a setting it cannot use."""


class TrackerClosedError(TrackerError, RuntimeError):
    """An event was tracked after the tracker or its emitter was closed."""


class DeliveryError(TrackerError):
    """Tracardi did not accept a payload.

    ``event_ids`` lists the events of that payload; ``status`` is the HTTP status
    when there was a response.
    """

    def __init__(
        self,
        message: str,
        *,
        event_ids: Sequence[str] = (),
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.event_ids: tuple[str, ...] = tuple(event_ids)
        self.status = status


class SourceRejectedError(DeliveryError):
    """Tracardi refused the event source or the traffic (401 up to 0.9.0-dev, 406 since).

    Raised for an unknown, disabled or wrongly bridged source and for traffic
    Tracardi takes for a bot. Retrying cannot help, so it is never retried.
    """


class PayloadRejectedError(DeliveryError):
    """Tracardi rejected the payload itself (400 or 422); never retried.

    ``detail`` holds the server's ``detail`` field as it came: a list of
    ``{loc, msg, type}`` objects for a validation error, or a string.
    """

    def __init__(
        self,
        message: str,
        *,
        detail: Any = None,
        event_ids: Sequence[str] = (),
        status: int | None = None,
    ) -> None:
        super().__init__(message, event_ids=event_ids, status=status)
        self.detail = detail


class ServerError(DeliveryError):
    """Tracardi kept answering with a retryable status (5xx, 408, 429) until retries ran out."""


class TransportError(DeliveryError):
    """The request did not get an answer (connection refused, reset, timeout) after retries."""


class QueueFullError(DeliveryError):
    """A background emitter's queue was full and the event was dropped (see ``on_full``)."""


class UndeliveredError(DeliveryError):
    """Events were still unsent when ``flush()``/``close()`` reached its deadline (or
    retrying stopped at shutdown) and there was no spool to keep them."""
