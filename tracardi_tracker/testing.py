"""Helpers for testing code that uses tracardi-tracker.

The local collector (see ``docs/collector.md``) answers ``/track`` exactly as Tracardi does and
keeps what arrived, so a test can run real HTTP against it::

    from tracardi_tracker.testing import run_collector

    def test_page_views_arrive() -> None:
        with run_collector(tracardi_version="0.9") as collector:
            ...  # send with a tracker pointed at collector.url
            (event,) = collector.wait_for(1, type="page-view")
            assert event.properties == {"title": "Home"}

With pytest, the ``tracardi_collector`` fixture (installed with the package) does the same
for every test.

Without a socket, :class:`CapturingTransport` records the payloads an emitter sends and
answers like Tracardi: ``SyncEmitter(transport=CapturingTransport())``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._capture import CapturedRequest, CapturingTransport, tracardi_like
from .collector import (
    BadRequest,
    Collector,
    CollectorConfig,
    CollectorError,
    CollectorTimeoutError,
    Faults,
    ProfileRecord,
    SessionRecord,
    StoredEvent,
)

__all__ = [
    "BadRequest",
    "CapturedRequest",
    "CapturingTransport",
    "Collector",
    "CollectorConfig",
    "CollectorError",
    "CollectorTimeoutError",
    "Faults",
    "ProfileRecord",
    "SessionRecord",
    "StoredEvent",
    "run_collector",
    "tracardi_like",
]


@contextmanager
def run_collector(**options: Any) -> Iterator[Collector]:
    """Run a collector for the ``with`` block (127.0.0.1, free port, events in memory).

    ``options`` are :class:`Collector`'s keyword arguments (``tracardi_version``, ``sources``,
    ``faults``, ...).
    """
    with Collector(**options) as collector:
        yield collector
