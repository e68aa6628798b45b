"""Datetime parsing as pydantic v2 does it in lax mode (its ``speedate`` rules), with its errors.

Tracardi's ``Time`` fields are pydantic ``datetime`` values, so what the collector accepts must
match what pydantic accepts (the contract's table of accepted formats):

* ``YYYY-MM-DD`` then ``T``, ``t``, ``_`` or a space, then ``HH:MM`` with optional ``:SS`` and
  an optional ``.fraction`` (any number of digits, cut to microseconds), then an optional
  ``Z``/``z`` or ``+HH:MM``/``+HHMM``/``+HH`` offset, and nothing else;
* a bare date (``2023-01-01``) only with pydantic >= 2.7 (Tracardi 1.0);
* numbers and numeric strings as Unix time in seconds, or milliseconds above 2e10.

Naive values are taken as UTC, as Tracardi does. Error texts follow speedate's wording; the
error *type* (``datetime_type`` / ``datetime_parsing``) and the accept/reject decision are what
clients can rely on.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

__all__ = ["DateTimeInvalid", "format_datetime", "parse_datetime"]

_FAST = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt_ ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_DIGITS = frozenset(b"0123456789")
_MS_WATERSHED = 20_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class DateTimeInvalid(ValueError):
    """A value pydantic would not accept as a datetime.

    ``kind`` is the pydantic error type and ``reason`` the text after "Input should be a valid
    datetime, " (``None`` for ``datetime_type``, which has no reason).
    """

    def __init__(self, kind: str, reason: str | None = None) -> None:
        super().__init__(reason or kind)
        self.kind = kind
        self.reason = reason


def parse_datetime(value: object, *, date_only: bool = False) -> datetime:
    """Parse ``value`` as pydantic would; the result is timezone-aware (UTC when naive).

    :param date_only: accept a bare ``YYYY-MM-DD`` (pydantic >= 2.7).
    :raises DateTimeInvalid: when pydantic would reject the value.
    """
    if isinstance(value, str):
        match = _FAST.fullmatch(value)
        if match is not None:
            try:
                return _from_match(match)
            except ValueError:
                pass  # out-of-range field: let the slow path name it
        return _parse_string(value, date_only)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DateTimeInvalid("datetime_type")
    return _from_timestamp(value)


def format_datetime(value: datetime) -> str:
    """Write ``value`` as ISO 8601 the way pydantic serialises it (``Z`` for UTC)."""
    text = value.isoformat()
    if text.endswith("+00:00"):
        return text[:-6] + "Z"
    return text


def _from_match(match: re.Match[str]) -> datetime:
    year, month, day, hour, minute, second, fraction, _zulu, sign, tz_hour, tz_minute = (
        match.groups()
    )
    micro = int((fraction + "00000")[:6]) if fraction else 0
    tz = timezone.utc
    if sign is not None:
        offset = timedelta(hours=int(tz_hour), minutes=int(tz_minute or 0))
        if offset >= timedelta(hours=24):
            raise ValueError("offset")
        if offset:
            tz = timezone(-offset if sign == "-" else offset)
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
    )


def _from_timestamp(value: float) -> datetime:
    if value != value or value in (float("inf"), float("-inf")):
        raise DateTimeInvalid("datetime_parsing", "NaN values not permitted")
    seconds = value / 1000 if abs(value) > _MS_WATERSHED else value
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        if seconds > 0:
            raise DateTimeInvalid(
                "datetime_parsing", "dates after 9999 are not supported as unix timestamps"
            ) from None
        raise DateTimeInvalid(
            "datetime_parsing", "dates before 0000 are not supported as unix timestamps"
        ) from None


def _parse_string(value: str, date_only: bool) -> datetime:
    """The slow path: find speedate's error, or fall back to a numeric timestamp."""
    try:
        return _rfc3339(value.encode("utf-8", "surrogatepass"), date_only)
    except DateTimeInvalid as error:
        if _NUMBER.fullmatch(value):
            number = float(value)
            return _from_timestamp(int(number) if number.is_integer() else number)
        raise error from None


def _digits(data: bytes, start: int, count: int, what: str) -> int:
    if len(data) < start + count:
        raise DateTimeInvalid("datetime_parsing", "input is too short")
    chunk = data[start : start + count]
    if not all(byte in _DIGITS for byte in chunk):
        raise DateTimeInvalid("datetime_parsing", f"invalid character in {what}")
    return int(chunk)


def _expect(data: bytes, at: int, allowed: bytes, reason: str) -> None:
    if len(data) <= at:
        raise DateTimeInvalid("datetime_parsing", "input is too short")
    if data[at] not in allowed:
        raise DateTimeInvalid("datetime_parsing", reason)


def _rfc3339(data: bytes, date_only: bool) -> datetime:
    if len(data) < 10:
        raise DateTimeInvalid("datetime_parsing", "input is too short")
    year = _digits(data, 0, 4, "year")
    _expect(data, 4, b"-", "invalid date separator, expected `-`")
    month = _digits(data, 5, 2, "month")
    _expect(data, 7, b"-", "invalid date separator, expected `-`")
    day = _digits(data, 8, 2, "day")
    if not 1 <= month <= 12:
        raise DateTimeInvalid("datetime_parsing", "month value is outside expected range of 1-12")
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _DAYS_IN_MONTH[month - 1] or (month == 2 and day == 29 and not leap):
        raise DateTimeInvalid("datetime_parsing", "day value is outside expected range")
    if len(data) == 10 and date_only:
        return datetime(year, month, day, tzinfo=timezone.utc)
    sep = "invalid datetime separator, expected `T`, `t`, `_` or space"
    if len(data) == 10:
        raise DateTimeInvalid("datetime_parsing", sep)
    _expect(data, 10, b"Tt_ ", sep)
    hour = _digits(data, 11, 2, "hour")
    _expect(data, 13, b":", "invalid time separator, expected `:`")
    minute = _digits(data, 14, 2, "minute")
    pos = 16
    second = micro = 0
    if len(data) > pos and data[pos] == ord(":"):
        second = _digits(data, pos + 1, 2, "second")
        pos += 3
        if len(data) > pos and data[pos] == ord("."):
            end = pos + 1
            while end < len(data) and data[end] in _DIGITS:
                end += 1
            if end == pos + 1:
                raise DateTimeInvalid("datetime_parsing", "second fraction value is missing")
            micro = int((data[pos + 1 : end] + b"00000")[:6])
            pos = end
    if hour > 23:
        raise DateTimeInvalid("datetime_parsing", "hour value is outside expected range of 0-23")
    if minute > 59:
        raise DateTimeInvalid("datetime_parsing", "minute value is outside expected range of 0-59")
    if second > 59:
        raise DateTimeInvalid("datetime_parsing", "second value is outside expected range of 0-59")
    tz = timezone.utc
    if len(data) > pos:
        marker = data[pos]
        if marker in b"Zz":
            pos += 1
        elif marker in b"+-":
            tz_hour = _digits(data, pos + 1, 2, "timezone hour")
            pos += 3
            tz_minute = 0
            if len(data) > pos:
                if data[pos] == ord(":"):
                    pos += 1
                tz_minute = _digits(data, pos, 2, "timezone minute")
                pos += 2
            offset = timedelta(hours=tz_hour, minutes=tz_minute)
            if offset >= timedelta(hours=24):
                raise DateTimeInvalid(
                    "datetime_parsing", "timezone offset must be less than 24 hours"
                )
            if offset:
                tz = timezone(-offset if marker == ord("-") else offset)
    if len(data) > pos:
        raise DateTimeInvalid(
            "datetime_parsing", "unexpected extra characters at the end of the input"
        )
    return datetime(year, month, day, hour, minute, second, micro, tz)
