"""Fixtures of the collector tests.

The ``tracardi_collector`` fixtures come from the package's pytest plugin (imported here so
they also work before the package is installed and its entry point registered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tracardi_tracker.collector import Collector
from tracardi_tracker.collector._config import CollectorConfig
from tracardi_tracker.collector._engine import Engine
from tracardi_tracker.collector._faults import FaultController
from tracardi_tracker.collector._store import Store
from tracardi_tracker.pytest_plugin import (  # noqa: F401 - fixtures and the marker hook
    pytest_configure,
    tracardi_collector,
    tracardi_collector_factory,
    tracardi_collector_session,
)

VERSIONS = ("0.8", "0.9", "1.0")


@pytest.fixture(scope="session")
def shared_collectors() -> Iterator[dict[str, Collector]]:
    """One running collector per Tracardi version, shared by the session."""
    collectors = {version: Collector(tracardi_version=version).start() for version in VERSIONS}
    yield collectors
    for collector in collectors.values():
        collector.stop()


@pytest.fixture
def collector_for(shared_collectors: dict[str, Collector]) -> Callable[[str], Collector]:
    """The shared collector of a version, emptied and without faults."""

    def get(version: str) -> Collector:
        collector = shared_collectors[version]
        collector.clear_faults()
        collector.reset()
        return collector

    return get


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    """Each Tracardi version in turn."""
    return str(request.param)


@pytest.fixture
def collector(collector_for: Callable[[str], Collector], version: str) -> Collector:
    """An empty collector of each version in turn."""
    return collector_for(version)


@pytest.fixture
def make_engine() -> Iterator[Callable[..., Engine]]:
    """Build engines (no sockets) with an in-memory store."""
    stores: list[Store] = []

    def make(**options: Any) -> Engine:
        store = Store(None)
        stores.append(store)
        return Engine(CollectorConfig(**options), store, FaultController())

    yield make
    for store in stores:
        store.close()
