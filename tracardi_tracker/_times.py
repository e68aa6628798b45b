"""Turning the many ways a caller can give a time into one aware UTC datetime.

The policy, in one place:

- an aware :class:`~datetime.datetime` is converted to UTC;
- a *naive* datetime, or an ISO-8601 string without an offset, is rejected: the
  SDK never guesses a time zone (attach one, e.g. ``tzinfo=timezone.utc``);
- an ISO-8601 string with ``Z`` or an offset is parsed (date-only strings are
  rejected: Tracardi 0.9 answers 422 to them);
- an int or float is a Unix epoch time: milliseconds when its magnitude is at
  least 10**11 (any time after 1973-03-03 in ms), otherwise seconds;
- ``bool``, NaN, infinity and anything else are rejected.

Times leave the SDK as ISO-8601 UTC strings with ``Z`` and at most microseconds.
"""

from __future__ import annotations

import math
import time
from datetime import date, datetime, timedelta, timezone

from .exceptions import InvalidEventError

UTC = timezone.utc
_MS_THRESHOLD = 10**11


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """Return the current time in whole microseconds since the Unix epoch (cheap: no
    datetime is made; :func:`format_epoch_us` formats it)."""
    return time.time_ns() // 1000


def from_epoch_us(micros: int) -> datetime:
    """The aware UTC datetime of ``micros`` microseconds since the epoch, exactly."""
    return _EPOCH + timedelta(microseconds=micros)


_SECOND_TEXTS: dict[int, bytes] = {}


def _second_text(second: int) -> bytes:
    if len(_SECOND_TEXTS) >= 512:
        _SECOND_TEXTS.clear()
    text = (_EPOCH + timedelta(seconds=second)).isoformat(timespec="seconds")[:-6].encode()
    _SECOND_TEXTS[second] = text
    return text


def format_epoch_bytes(micros: int) -> bytes:
    """:func:`format_epoch_us` as ASCII bytes, the form events are spliced from: the
    text of each second is made once and kept."""
    second = micros // 1_000_000
    text = _SECOND_TEXTS.get(second) or _second_text(second)
    fraction = micros % 1_000_000
    if fraction:
        return b"%b.%06dZ" % (text, fraction)
    return text + b"Z"


def format_epoch_us(micros: int) -> str:
    """Format epoch microseconds exactly as :func:`format_utc` formats the same instant,
    several times faster."""
    return format_epoch_bytes(micros).decode()


def to_utc(value: object, path: str) -> datetime:
    """Convert ``value`` to an aware UTC datetime, or raise naming ``path``."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidEventError(
                path,
                f"naive datetime {value.isoformat()} has no time zone; "
                "give an aware datetime (e.g. tzinfo=timezone.utc)",
            )
        return value.astimezone(UTC)
    if isinstance(value, date):
        raise InvalidEventError(path, f"date {value.isoformat()} has no time of day")
    if isinstance(value, bool):
        raise InvalidEventError(path, f"expected a time, got {value!r}")
    if isinstance(value, (int, float)):
        return from_epoch(value, path)
    if isinstance(value, str):
        return _from_iso(value, path)
    raise InvalidEventError(
        path,
        f"expected an aware datetime, ISO-8601 string or epoch number, got {type(value).__name__}",
    )


def from_epoch(value: float, path: str, *, milliseconds: bool | None = None) -> datetime:
    """Convert an epoch time in seconds or milliseconds (see the module policy)."""
    if isinstance(value, bool) or not math.isfinite(value):
        raise InvalidEventError(path, f"expected an epoch time, got {value!r}")
    is_ms = abs(value) >= _MS_THRESHOLD if milliseconds is None else milliseconds
    seconds = value / 1000 if is_ms else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as error:
        raise InvalidEventError(path, f"epoch time {value!r} is out of range") from error


def _from_iso(text: str, path: str) -> datetime:
    stripped = text.strip()
    if len(stripped) <= 10:
        raise InvalidEventError(
            path, f"{text!r} is not a date and time (date-only strings are rejected)"
        )
    candidate = stripped[:-1] + "+00:00" if stripped[-1] in "zZ" else stripped
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError as error:
        raise InvalidEventError(path, f"{text!r} is not an ISO-8601 date and time") from error
    if parsed.tzinfo is None:
        raise InvalidEventError(
            path, f"{text!r} has no offset; add 'Z' or '+HH:MM' (the SDK never guesses)"
        )
    return parsed.astimezone(UTC)


def format_utc(value: datetime) -> str:
    """Format an aware UTC datetime the way the SDK sends it: ``2024-06-24T10:00:00Z``,
    or ``2024-06-24T10:00:00.500000Z`` when it has a fraction of a second."""
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text[:-6] + "Z"  # drop the "+00:00" of a UTC datetime
