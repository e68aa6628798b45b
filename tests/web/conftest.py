"""Fixtures of the web integration tests.

The ``tracardi_collector`` fixtures come from the package's pytest plugin (imported here so
they also work before the package is installed and its entry point registered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from web_helpers import SOURCE_ID

from tracardi_tracker import SyncEmitter, Tracker
from tracardi_tracker._capture import CapturingTransport
from tracardi_tracker.collector import Collector
from tracardi_tracker.pytest_plugin import (  # noqa: F401 - fixtures and the marker hook
    pytest_configure,
    tracardi_collector,
    tracardi_collector_factory,
    tracardi_collector_session,
)


@pytest.fixture
def transport() -> CapturingTransport:
    """A transport that records payloads and answers like Tracardi 0.9 (no sockets)."""
    return CapturingTransport()


@pytest.fixture
def make_tracker() -> Iterator[Callable[..., Tracker]]:
    """Build trackers (closed after the test): ``make_tracker(collector)`` sends to a
    collector through the default background emitter, ``make_tracker(transport=...)``
    synchronously through a capturing transport."""
    made: list[Tracker] = []

    def make(
        collector: Collector | None = None,
        *,
        transport: CapturingTransport | None = None,
        sync: bool = False,
        **kwargs: Any,
    ) -> Tracker:
        if transport is not None:
            kwargs.setdefault("emitter", SyncEmitter(transport=transport))
        elif sync:
            kwargs.setdefault("emitter", SyncEmitter())
        endpoint = collector.url if collector is not None else "http://tracardi.test:8686"
        tracker = Tracker(endpoint, SOURCE_ID, **kwargs)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close(timeout=5)


@pytest.fixture
def collector(request: pytest.FixtureRequest) -> Collector:
    """The local Tracardi collector (0.9), empty (``tracardi_collector``, marks honoured)."""
    found: Collector = request.getfixturevalue("tracardi_collector")
    return found
