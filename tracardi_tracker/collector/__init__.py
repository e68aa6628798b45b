"""A local Tracardi collector: answers ``/track`` exactly as Tracardi does, stores in SQLite.

Tracardi needs Elasticsearch, Redis and MySQL; this collector needs nothing. It is the server
behind ``make demo``, integrators' CI and the SDK's own end-to-end and fault tests. Run it with
``tracardi-tracker collector`` or in-process::

    from tracardi_tracker.collector import Collector

    with Collector(tracardi_version="0.9") as collector:
        ...  # point a tracker at collector.url
        events = collector.wait_for(2, type="page-view")

See ``docs/collector.md`` for the endpoints, fault controls and version differences.
"""

from ._collector import Collector
from ._config import DEFAULT_HOST, DEFAULT_PORT, CollectorConfig
from ._errors import (
    CollectorConfigError,
    CollectorError,
    CollectorStartError,
    CollectorTimeoutError,
)
from ._faults import Faults
from ._state import ProfileRecord, SessionRecord
from ._store import BadRequest, StoredEvent
from ._table import format_bad, format_events
from ._versions import DEFAULT_VERSION, VERSIONS, TracardiVersion

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_VERSION",
    "VERSIONS",
    "BadRequest",
    "Collector",
    "CollectorConfig",
    "CollectorConfigError",
    "CollectorError",
    "CollectorStartError",
    "CollectorTimeoutError",
    "Faults",
    "ProfileRecord",
    "SessionRecord",
    "StoredEvent",
    "TracardiVersion",
    "format_bad",
    "format_events",
]
