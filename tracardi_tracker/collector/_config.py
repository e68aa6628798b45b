"""The collector's settings, in one frozen object."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import attrs

from ._errors import CollectorConfigError
from ._faults import Faults
from ._versions import DEFAULT_VERSION, VERSIONS

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "CollectorConfig", "is_loopback"]

DEFAULT_HOST = "127.0.0.1"
"""The collector listens on loopback unless told otherwise."""
DEFAULT_PORT = 8686
"""Tracardi's API port, used by ``tracardi-tracker collector``."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _optional_ids(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else _ids(value)


def _ids(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise CollectorConfigError(f"expected a collection of source ids, got the string {value!r}")
    return frozenset(value)


def _check_version(_instance: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in VERSIONS:
        known = ", ".join(sorted(VERSIONS))
        raise CollectorConfigError(f"unknown Tracardi version {value!r}; choose one of {known}")


def _check_port(_instance: object, _attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 65535:
        raise CollectorConfigError(f"port must be between 0 and 65535, got {value}")


@attrs.frozen(kw_only=True)
class CollectorConfig:
    """How a collector listens, stores and behaves."""

    host: str = DEFAULT_HOST
    """Address to listen on; anything but loopback needs ``allow_remote``."""
    port: int = attrs.field(default=0, validator=_check_port)
    """Port to listen on; 0 picks a free one."""
    db: str | None = None
    """SQLite file for events (created if missing); ``None`` or ``":memory:"`` keeps nothing."""
    tracardi_version: str = attrs.field(default=DEFAULT_VERSION, validator=_check_version)
    """The Tracardi release line to imitate: ``"0.8"``, ``"0.9"`` or ``"1.0"``."""
    sources: frozenset[str] | None = attrs.field(default=None, converter=_optional_ids)
    """Known event source ids; ``None`` accepts any id (Tracardi with its source check off)."""
    disabled_sources: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    """Source ids that exist but are disabled ("Event source disabled.")."""
    allow_remote: bool = False
    """Consent to listen on a non-loopback address."""
    static_profile_ids: bool = False
    """Keep every client profile id (a REST source with "static profile id" switched on)."""
    track_debug: bool = False
    """Tracardi's ``TRACK_DEBUG=yes``: with ``options.debugger`` the answer lists event ids."""
    faults: Faults = attrs.field(factory=Faults)
    """Faults in force from the start."""

    def __attrs_post_init__(self) -> None:
        if not self.allow_remote and not is_loopback(self.host):
            raise CollectorConfigError(
                f"refusing to listen on {self.host!r}, which is not a loopback address; "
                "pass allow_remote=True (--allow-remote) to accept connections from other hosts"
            )
