"""tracardi-tracker: the Python tracker SDK for Tracardi.

Quickstart::

    from tracardi_tracker import PageView, Tracker

    with Tracker("http://localhost:8686", "my-source-id") as tracker:
        tracker.track(PageView("https://shop.example/", "Home"))
"""

from ._retry import RetryPolicy
from ._transport import TrackResponse
from ._version import __version__
from ._worker import BackgroundEmitter, Stats
from .emitters import Emitter, Envelope, SyncEmitter
from .events import (
    BaseEvent,
    Event,
    PagePing,
    PageView,
    ScreenView,
    SelfDescribing,
    StructuredEvent,
)
from .exceptions import (
    ConfigurationError,
    DeliveryError,
    InvalidEventError,
    PayloadRejectedError,
    QueueFullError,
    ServerError,
    SourceRejectedError,
    TrackerClosedError,
    TrackerError,
    TransportError,
    UndeliveredError,
)
from .models import Options, SelfDescribingJson, Subject, Time
from .tracker import Identity, Tracker

__all__ = [
    "BackgroundEmitter",
    "BaseEvent",
    "ConfigurationError",
    "DeliveryError",
    "Emitter",
    "Envelope",
    "Event",
    "Identity",
    "InvalidEventError",
    "Options",
    "PagePing",
    "PageView",
    "PayloadRejectedError",
    "QueueFullError",
    "RetryPolicy",
    "ScreenView",
    "SelfDescribing",
    "SelfDescribingJson",
    "ServerError",
    "SourceRejectedError",
    "Stats",
    "StructuredEvent",
    "Subject",
    "SyncEmitter",
    "Time",
    "TrackResponse",
    "Tracker",
    "TrackerClosedError",
    "TrackerError",
    "TransportError",
    "UndeliveredError",
    "__version__",
]
