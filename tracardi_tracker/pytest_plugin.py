"""pytest plugin: a local Tracardi collector per test (the ``tracardi_collector`` fixture).

Installed with the package (entry point ``pytest11``), so any test can ask for it::

    def test_tracks_a_page_view(tracardi_collector):
        tracker = Tracker(tracardi_collector.url, "my-source")
        ...
        (event,) = tracardi_collector.wait_for(1, type="page-view")

The default fixture shares one collector (Tracardi 0.9 behaviour, any source id, events in
memory) across the session and empties it, and switches its faults off, before each test. To
get a collector of its own with other settings, mark the test::

    @pytest.mark.tracardi_collector(tracardi_version="1.0", sources=["my-source"])
    def test_rejects_unknown_sources(tracardi_collector): ...

or build several with the ``tracardi_collector_factory`` fixture. Importing this module starts
nothing: the collector code is loaded when a fixture is first used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .collector import Collector

__all__ = [
    "pytest_configure",
    "tracardi_collector",
    "tracardi_collector_factory",
    "tracardi_collector_session",
]

_MARKER = "tracardi_collector"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``tracardi_collector`` marker (works with ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): give this test its own local Tracardi collector, built with "
        "these tracardi_tracker.collector.Collector options",
    )


@pytest.fixture(scope="session")
def tracardi_collector_session() -> Iterator[Collector]:
    """One collector for the whole test session (prefer ``tracardi_collector``)."""
    from .collector import Collector

    with Collector() as collector:
        yield collector


@pytest.fixture
def tracardi_collector_factory() -> Iterator[Callable[..., Collector]]:
    """Start collectors with any options; each is stopped after the test."""
    from .collector import Collector

    started: list[Collector] = []

    def start(**options: Any) -> Collector:
        collector = Collector(**options).start()
        started.append(collector)
        return collector

    yield start
    for collector in reversed(started):
        collector.stop()


@pytest.fixture
def tracardi_collector(request: pytest.FixtureRequest) -> Iterator[Collector]:
    """A running, empty local Tracardi collector on 127.0.0.1 with no faults.

    Use ``.url`` / ``.track_url``, ``.events(type=None, profile=None)``, ``.bad()``,
    ``.wait_for(count, timeout)``, ``.reset()`` and the fault controls (``.outage()``,
    ``.fail_next()``, ``.throttle()``, ``.refuse_connections()``, ``.set_faults()``).
    """
    marker = request.node.get_closest_marker(_MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{_MARKER} takes keyword arguments only")
        factory: Callable[..., Collector] = request.getfixturevalue("tracardi_collector_factory")
        yield factory(**marker.kwargs)
        return
    shared: Collector = request.getfixturevalue("tracardi_collector_session")
    shared.clear_faults()
    shared.reset()
    yield shared
    shared.clear_faults()
