"""Fixtures shared by the core SDK's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tracardi_tracker import SyncEmitter, Tracker
from tracardi_tracker._capture import CapturingTransport

SOURCE_ID = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
ENDPOINT = "http://tracardi.test:8686"


@pytest.fixture
def transport() -> CapturingTransport:
    """A transport that records payloads and answers like Tracardi 0.9."""
    return CapturingTransport()


@pytest.fixture
def make_tracker(transport: CapturingTransport) -> Iterator[Callable[..., Tracker]]:
    """Build trackers that send through ``transport``; closes them after the test."""
    made: list[Tracker] = []

    def make(**kwargs: Any) -> Tracker:
        emitter_kwargs = kwargs.pop("emitter_kwargs", {})
        kwargs.setdefault("emitter", SyncEmitter(transport=transport, **emitter_kwargs))
        tracker = Tracker(
            kwargs.pop("endpoint", ENDPOINT), kwargs.pop("source_id", SOURCE_ID), **kwargs
        )
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close()


@pytest.fixture
def tracker(make_tracker: Callable[..., Tracker]) -> Tracker:
    """A synchronous tracker over the capturing transport."""
    return make_tracker()


# The collector fixtures come from the package's pytest plugin; importing them here makes
# them work before the package is installed (and its pytest11 entry point registered).
from tracardi_tracker.pytest_plugin import (  # noqa: E402, F401
    pytest_configure,
    tracardi_collector,
    tracardi_collector_factory,
    tracardi_collector_session,
)
