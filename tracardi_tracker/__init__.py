"""tracardi-tracker: the Python tracker SDK for Tracardi.

Quickstart::

    from tracardi_tracker import PageView, Tracker

    with Tracker("http://localhost:8686", "my-source-id") as tracker:
        tracker.track(PageView("https://shop.example/", "Home"))
"""

from ._retry import RetryPolicy
from ._transport import TrackResponse
from ._version import __version__
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
    ServerError,
    SourceRejectedError,
    TrackerClosedError,
    TrackerError,
    TransportError,
)
from .models import Options, SelfDescribingJson, Subject, Time
from .tracker import Identity, Tracker

__all__ = [
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
    "RetryPolicy",
    "ScreenView",
    "SelfDescribing",
    "SelfDescribingJson",
    "ServerError",
    "SourceRejectedError",
    "StructuredEvent",
    "Subject",
    "SyncEmitter",
    "Time",
    "TrackResponse",
    "Tracker",
    "TrackerClosedError",
    "TrackerError",
    "TransportError",
    "__version__",
]
