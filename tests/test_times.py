"""Times: defaults, accepted forms, the naive-datetime policy and the wire format."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from tracardi_tracker import Event, InvalidEventError, Subject, Time, Tracker
from tracardi_tracker._capture import CapturingTransport
from tracardi_tracker._times import (
    format_epoch_bytes,
    format_epoch_us,
    format_utc,
    from_epoch_us,
    to_utc,
)

UTC = timezone.utc
CEST = timezone(timedelta(hours=2))


def test_insert_defaults_to_when_the_event_was_made_and_create_to_insert(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    event = Event("x")
    tracker.track(event)
    expected = format_utc(event.made_at)
    assert {"create": expected, "insert": expected} == transport.events[0]["time"]


def test_true_timestamp_in_ms_becomes_time_create(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(Event("x", true_timestamp=1672531200123))
    assert transport.events[0]["time"]["create"] == "2023-01-01T00:00:00.123000Z"


def test_given_times_are_sent_in_utc_with_z(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    when = Time(
        create=datetime(2023, 1, 1, 12, 0, tzinfo=CEST),
        insert="2023-01-01T10:00:05.5+00:00",
        update=1672567205,
    )
    tracker.track(Event("x", time=when))
    expected = {
        "create": "2023-01-01T10:00:00Z",
        "insert": "2023-01-01T10:00:05.500000Z",
        "update": "2023-01-01T10:00:05Z",
    }
    assert expected == transport.events[0]["time"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC)),
        ("2023-01-01T02:00:00+02:00", datetime(2023, 1, 1, tzinfo=UTC)),
        ("2023-01-01T00:00:00Z", datetime(2023, 1, 1, tzinfo=UTC)),
        ("2023-01-01 00:00:00z", datetime(2023, 1, 1, tzinfo=UTC)),
        (1672531200, datetime(2023, 1, 1, tzinfo=UTC)),
        (1672531200.5, datetime(2023, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        (1672531200000, datetime(2023, 1, 1, tzinfo=UTC)),
    ],
)
def test_accepted_time_forms(value: Any, expected: datetime) -> None:
    assert expected == to_utc(value, "time.create")


@pytest.mark.parametrize(
    "value",
    [
        datetime(2023, 1, 1),  # naive: the SDK never guesses a zone
        "2023-01-01T00:00:00",  # no offset
        "2023-01-01",  # date only: Tracardi 0.9 answers 422
        date(2023, 1, 1),
        "yesterday",
        "01/01/2023",
        True,
        float("nan"),
        float("inf"),
        [2023],
    ],
)
def test_rejected_time_forms_name_the_field(value: Any) -> None:
    with pytest.raises(InvalidEventError) as raised:
        Time(create=value)
    assert raised.value.path == "create"


def test_times_keep_at_most_microseconds() -> None:
    when = datetime(2023, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert format_utc(when) == "2023-01-01T00:00:00.123456Z"


def test_time_is_never_sent_as_null(tracker: Tracker, transport: CapturingTransport) -> None:
    tracker.track(Event("x", time=Time()))
    assert transport.events[0]["time"]["insert"] is not None


def test_session_and_profile_metadata_go_only_when_given(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(Event("x"))
    visitor = Subject(
        profile_id="p1",
        session_metadata=Time(create="2023-03-01T09:59:58Z"),
        profile_metadata=Time(create="2021-06-01T00:00:00Z"),
    )
    tracker.track(Event("x", event_subject=visitor))
    first, second = transport.payloads
    assert "metadata" not in first["session"]
    assert second["session"]["metadata"] == {"create": "2023-03-01T09:59:58Z"}
    assert second["profile"]["metadata"] == {"create": "2021-06-01T00:00:00Z"}


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 6, 24, 10, 0, tzinfo=UTC),
        datetime(2024, 6, 24, 10, 0, 0, 500000, tzinfo=UTC),
        datetime(2024, 6, 24, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 6, 24, 10, 0, 0, 1, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 123456, tzinfo=UTC),
    ],
)
def test_the_fast_formatting_of_stamped_times_matches_format_utc(moment: datetime) -> None:
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert format_epoch_us(micros) == format_utc(moment)
    assert format_epoch_bytes(micros) == format_utc(moment).encode()
    assert from_epoch_us(micros) == moment


def test_an_event_is_stamped_with_the_time_it_was_made() -> None:
    before = datetime.now(UTC)
    event = Event("x")
    after = datetime.now(UTC)
    assert before - timedelta(milliseconds=1) <= event.made_at <= after + timedelta(milliseconds=1)
    assert event.made_at.tzinfo is not None
