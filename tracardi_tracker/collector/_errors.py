"""The collector's exceptions.

::

    CollectorError                 every error the collector raises on purpose
    ├── CollectorConfigError       (also ValueError) a setting that cannot work
    ├── CollectorStartError        (also OSError) the port cannot be bound
    └── CollectorTimeoutError      (also TimeoutError) ``wait_for`` saw too few events
"""

from __future__ import annotations

__all__ = [
    "CollectorConfigError",
    "CollectorError",
    "CollectorStartError",
    "CollectorTimeoutError",
]


class CollectorError(Exception):
    """Root of the collector's exceptions."""


class CollectorConfigError(CollectorError, ValueError):
    """A collector setting that cannot work (unknown version, remote bind without consent)."""


class CollectorStartError(CollectorError, OSError):
    """The collector could not listen (port taken, address not available)."""


class CollectorTimeoutError(CollectorError, TimeoutError):
    """The events waited for did not arrive in time."""
