"""Datetimes as pydantic accepts them (the contract's table of formats)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from collector_helpers import event, payload

from tracardi_tracker.collector._datetimes import DateTimeInvalid, format_datetime, parse_datetime
from tracardi_tracker.collector._engine import Engine
from tracardi_tracker.collector._validation import _fast_time

ACCEPTED = [
    ("2023-01-01 00:00:00", "2023-01-01T00:00:00Z"),
    ("2023-01-01T00:00:00", "2023-01-01T00:00:00Z"),
    ("2023-01-01T00:00:00Z", "2023-01-01T00:00:00Z"),
    ("2023-01-01T00:00:00+02:00", "2023-01-01T00:00:00+02:00"),
    ("2023-01-01T00:00:00.123Z", "2023-01-01T00:00:00.123000Z"),
    ("2023-01-01T00:00:00.123456789Z", "2023-01-01T00:00:00.123456Z"),
    ("2023-01-01 00:00", "2023-01-01T00:00:00Z"),
    ("2023-01-01t00:00:00z", "2023-01-01T00:00:00Z"),
    ("2023-01-01_00:00:00-00:00", "2023-01-01T00:00:00Z"),
    ("2023-01-01T00:00:00+0530", "2023-01-01T00:00:00+05:30"),
    (1672531200, "2023-01-01T00:00:00Z"),
    (1672531200000, "2023-01-01T00:00:00Z"),
    (1672531200.5, "2023-01-01T00:00:00.500000Z"),
    ("1672531200", "2023-01-01T00:00:00Z"),
]

REJECTED = [
    ("2023-01-01", "invalid datetime separator, expected `T`, `t`, `_` or space"),
    ("2023-1-1 0:0:0", "invalid character in month"),
    ("2023-01-01T00:00:00 +0200", "unexpected extra characters at the end of the input"),
    ("01/01/2023", "invalid character in year"),
    ("yesterday", "input is too short"),
    ("2023-13-01T00:00", "month value is outside expected range of 1-12"),
    ("2023-02-29T00:00", "day value is outside expected range"),
    ("2023-01-01T24:00", "hour value is outside expected range of 0-23"),
    ("2023-01-01T00:00:00+24:00", "timezone offset must be less than 24 hours"),
]


@pytest.mark.parametrize(("value", "stored"), ACCEPTED)
def test_accepted_formats_are_normalised(value: object, stored: str) -> None:
    assert stored == format_datetime(parse_datetime(value))


@pytest.mark.parametrize(("value", "reason"), REJECTED)
def test_rejected_formats_name_their_problem(value: str, reason: str) -> None:
    with pytest.raises(DateTimeInvalid) as raised:
        parse_datetime(value)

    expected = ("datetime_parsing", reason)
    assert expected == (raised.value.kind, raised.value.reason)


@pytest.mark.parametrize("value", [True, None, [], {}])
def test_other_types_are_not_datetimes(value: object) -> None:
    with pytest.raises(DateTimeInvalid) as raised:
        parse_datetime(value)

    expected = ("datetime_type", None)
    assert expected == (raised.value.kind, raised.value.reason)


def test_date_only_is_midnight_utc_with_pydantic_27() -> None:
    expected = "2023-01-01T00:00:00Z"
    assert expected == format_datetime(parse_datetime("2023-01-01", date_only=True))


@pytest.mark.parametrize("value", [v for v, _ in ACCEPTED] + [v for v, _ in REJECTED])
def test_fast_path_agrees_with_the_full_parser(value: object) -> None:
    try:
        full: str | None = format_datetime(parse_datetime(value))
    except DateTimeInvalid:
        full = None

    fast = _fast_time(value)

    assert fast in (None, full)


@pytest.mark.parametrize(("version", "status"), [("0.8", 422), ("0.9", 422), ("1.0", 200)])
def test_date_only_event_time_depends_on_the_version(
    make_engine: Callable[..., Engine], version: str, status: int
) -> None:
    engine = make_engine(tracardi_version=version)
    body: Any = payload(event(time={"create": "2023-01-01"}))

    reply = engine.handle(
        "POST", "/track", "", {"content-type": "application/json"}, json.dumps(body).encode()
    )

    assert status == reply.status
