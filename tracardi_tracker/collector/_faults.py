"""Faults on demand, for testing how clients cope with a failing Tracardi.

Faults apply to ``/track`` only (the ``/micro`` inspection API keeps answering, except while
connections are refused). A faulted request stores nothing and is not listed as "bad". For each
request the collector first sleeps ``latency_seconds``, then takes the first that applies:

1. ``reset_next``: read the request, then reset the connection without answering;
2. ``outage_seconds``: answer ``status`` (503) while the window lasts;
3. ``fail_next``: answer ``status`` to the next N requests;
4. ``fail_rate``: answer ``status`` to this fraction of requests (``seed`` makes it repeatable);
5. ``throttle_seconds`` / ``throttle_next``: answer 429 with ``Retry-After: retry_after``.

``refuse_seconds`` closes the listening socket for the window (connections are refused) and
resets the connections that are open; the collector listens again on the same port afterwards.
Windows start when the faults are set (or when the collector starts, for start-up faults).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import attrs

__all__ = ["FaultController", "FaultDecision", "Faults"]


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _rate(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _error_status(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 400 <= value <= 599:
        raise ValueError(f"{attribute.name} must be an HTTP error status, got {value!r}")


@attrs.frozen(kw_only=True)
class Faults:
    """Which faults the collector injects into ``/track`` (all off by default)."""

    latency_seconds: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    """Delay before handling each request."""
    reset_next: int = attrs.field(default=0, converter=int, validator=_non_negative)
    """Reset the connection of the next N requests instead of answering."""
    outage_seconds: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    """Answer ``status`` to every request for this long."""
    fail_next: int = attrs.field(default=0, converter=int, validator=_non_negative)
    """Answer ``status`` to the next N requests."""
    fail_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    """Answer ``status`` to this fraction of requests."""
    seed: int | None = attrs.field(default=None)
    """Seed of the random choice behind ``fail_rate`` (``None``: not repeatable)."""
    status: int = attrs.field(default=503, converter=int, validator=_error_status)
    """The status of outages and failures."""
    throttle_seconds: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    """Answer 429 to every request for this long."""
    throttle_next: int = attrs.field(default=0, converter=int, validator=_non_negative)
    """Answer 429 to the next N requests."""
    retry_after: int = attrs.field(default=1, converter=int, validator=_non_negative)
    """``Retry-After`` seconds sent with 429."""
    refuse_seconds: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    """Refuse connections (listening socket closed) for this long."""

    @property
    def active(self) -> bool:
        """Whether any fault is switched on."""
        return self != Faults(seed=self.seed, status=self.status, retry_after=self.retry_after)

    def to_json(self) -> dict[str, Any]:
        """The settings as the JSON object ``/micro/faults`` takes and shows."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        """Build from a JSON object; unknown keys and wrong types are a ``ValueError``."""
        known = {field.name for field in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
        for key, value in data.items():
            if key == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError("seed must be an integer or null")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{key} must be a number, got {value!r}")
        try:
            return cls(**data)
        except (TypeError, OverflowError) as error:
            raise ValueError(str(error)) from error


class FaultDecision(NamedTuple):
    """What to do with one request: sleep, then maybe ``"reset"`` or answer ``status``."""

    latency: float
    action: str | None
    """``None`` (handle normally), ``"reset"``, or the fault's name when answering ``status``."""
    status: int = 0
    retry_after: int | None = None


_NO_FAULT = FaultDecision(0.0, None)


class FaultController:
    """The faults in force and what is left of their windows and counts; thread-safe."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        on_refuse: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._on_refuse = on_refuse
        self._settings = Faults()
        self._active = False  # self._settings.active, kept: decide() runs for every request
        self._since = clock()
        self._left = {"reset": 0, "fail": 0, "throttle": 0}
        self._rng = random.Random()
        self._counts = {"delayed": 0, "reset": 0, "failed": 0, "throttled": 0}
        if faults is not None:
            self.set(faults)

    @property
    def settings(self) -> Faults:
        """The faults last set."""
        return self._settings

    def set(self, faults: Faults) -> None:
        """Replace the faults in force; windows, counts and injected counts start now."""
        with self._lock:
            self._settings = faults
            self._active = faults.active
            self._since = self._clock()
            self._left = {
                "reset": faults.reset_next,
                "fail": faults.fail_next,
                "throttle": faults.throttle_next,
            }
            self._rng = random.Random(faults.seed)
            self._counts = dict.fromkeys(self._counts, 0)
        if self._on_refuse is not None:
            self._on_refuse(faults.refuse_seconds)  # 0 ends a refusal in progress

    def clear(self) -> None:
        """Switch every fault off."""
        self.set(Faults())

    def decide(self) -> FaultDecision:
        """Take the decision for one ``/track`` request (counts it against the faults)."""
        if not self._active:
            return _NO_FAULT
        with self._lock:
            settings = self._settings
            elapsed = self._clock() - self._since
            latency = settings.latency_seconds
            if latency:
                self._counts["delayed"] += 1
            decision = self._pick(settings, elapsed, latency)
            if decision.action == "reset":
                self._counts["reset"] += 1
            elif decision.action == "throttle":
                self._counts["throttled"] += 1
            elif decision.action is not None:
                self._counts["failed"] += 1
            return decision

    def _pick(self, settings: Faults, elapsed: float, latency: float) -> FaultDecision:
        left = self._left
        if left["reset"] > 0:
            left["reset"] -= 1
            return FaultDecision(latency, "reset")
        if elapsed < settings.outage_seconds:
            return FaultDecision(latency, "outage", settings.status)
        if left["fail"] > 0:
            left["fail"] -= 1
            return FaultDecision(latency, "fail_next", settings.status)
        if settings.fail_rate and self._rng.random() < settings.fail_rate:
            return FaultDecision(latency, "fail_rate", settings.status)
        if elapsed < settings.throttle_seconds or left["throttle"] > 0:
            if elapsed >= settings.throttle_seconds:
                left["throttle"] -= 1
            return FaultDecision(latency, "throttle", 429, settings.retry_after)
        return FaultDecision(latency, None)

    def status(self) -> dict[str, Any]:
        """Settings, what is left of them, and how many requests they faulted so far."""
        with self._lock:
            settings = self._settings
            elapsed = self._clock() - self._since
            return {
                "settings": settings.to_json(),
                "remaining": {
                    "outage_seconds": max(0.0, settings.outage_seconds - elapsed),
                    "throttle_seconds": max(0.0, settings.throttle_seconds - elapsed),
                    "refuse_seconds": max(0.0, settings.refuse_seconds - elapsed),
                    "reset_next": self._left["reset"],
                    "fail_next": self._left["fail"],
                    "throttle_next": self._left["throttle"],
                },
                "injected": dict(self._counts),
            }
