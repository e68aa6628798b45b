"""The fast path for common events stores what the full check stores and rejects what it rejects,
including the event times it checks all together."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from collector_helpers import SESSION, SOURCE

from tracardi_tracker.collector._engine import Engine
from tracardi_tracker.collector._validation import _Checker, _fast_payload
from tracardi_tracker.collector._versions import get_version


def post(engine: Engine, *times: Any) -> tuple[int, Any]:
    events = [
        {"id": f"e-{n}", "type": "page-view", "time": {"insert": time, "create": time}}
        for n, time in enumerate(times)
    ]
    body = {"source": {"id": SOURCE}, "session": {"id": SESSION}, "events": events}
    reply = engine.handle(
        "POST", "/track", "", {"content-type": "application/json"}, json.dumps(body).encode()
    )
    return reply.status, json.loads(reply.body)


def stored_times(engine: Engine) -> list[tuple[str | None, str | None]]:
    return [(event.time["insert"], event.time["create"]) for event in engine.store.events()]


def test_times_written_as_stored_are_kept(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    times = [
        "2024-02-29T23:59:59.999999Z",
        "2024-02-29T00:00:00.000001Z",
        "1999-12-31T12:34:56.100000Z",
        "2024-06-24T10:00:00.123456Z",
    ]

    status, _ = post(engine, *times)

    assert (status, stored_times(engine)) == (200, [(time, time) for time in times])


def test_a_time_not_written_as_stored_among_others_is_normalised(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()

    status, _ = post(
        engine,
        "2024-06-24T10:00:00.000001Z",
        "2024-06-24T10:00:00.000000Z",
        "2024-06-24 10:00:00.000001Z",
        "2024-06-24T10:00:00.5Z",
    )

    expected = [
        "2024-06-24T10:00:00.000001Z",
        "2024-06-24T10:00:00Z",
        "2024-06-24T10:00:00.000001Z",
        "2024-06-24T10:00:00.500000Z",
    ]
    assert (status, stored_times(engine)) == (200, [(time, time) for time in expected])


@pytest.mark.parametrize(
    ("time", "reason"),
    [
        ("2024-06-24T24:00:00.000001Z", "hour value is outside expected range of 0-23"),
        ("2024-06-24T10:60:00.000001Z", "minute value is outside expected range of 0-59"),
        ("2024-06-24T10:00:60.000001Z", "second value is outside expected range of 0-59"),
        ("2023-02-29T10:00:00.000001Z", "day value is outside expected range"),
        ("2024-13-01T10:00:00.000001Z", "month value is outside expected range of 1-12"),
        ("2024-06-24T24:00:00.000Z", "hour value is outside expected range of 0-23"),
        ("2024-06-24T10:00:60.001Z", "second value is outside expected range of 0-59"),
        ("2023-02-29T10:00:00.001Z", "day value is outside expected range"),
        ("1900-02-29T10:00:00.001Z", "day value is outside expected range"),
        ("2024-04-31T10:00:00.001Z", "day value is outside expected range"),
        ("2024-00-10T10:00:00.001Z", "month value is outside expected range of 1-12"),
        ("2024-06-00T10:00:00.001Z", "day value is outside expected range"),
    ],
)
def test_an_impossible_time_among_valid_ones_is_rejected(
    make_engine: Callable[..., Engine], time: str, reason: str
) -> None:
    # among valid times of its own shape, which are checked in bulk: microseconds or milliseconds
    valid = {27: "2024-06-24T10:00:00.000001Z", 24: "2024-06-24T10:00:00.001Z"}[len(time)]
    engine = make_engine(tracardi_version="1.0")

    status, answer = post(engine, valid, time, valid)

    locs = [item["loc"] for item in answer["detail"]]
    messages = {item["msg"] for item in answer["detail"]}
    assert (status, locs, messages) == (
        422,
        [["body", "events", 1, "time", "insert"], ["body", "events", 1, "time", "create"]],
        {f"Input should be a valid datetime, {reason}"},
    )
    assert engine.store.count_events() == 0


def test_millisecond_times_are_stored_with_six_digits_as_the_full_check_stores_them(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    times = [
        "2024-02-29T23:59:59.999Z",
        "2000-02-29T00:00:00.001Z",
        "2024-06-24T10:00:00.000Z",
        "1999-12-31T12:34:56.100Z",
        "2024-06-24T10:00:00.5Z",  # not 24 characters: checked on its own
    ]

    status, _ = post(engine, *times)

    expected = [
        "2024-02-29T23:59:59.999000Z",
        "2000-02-29T00:00:00.001000Z",
        "2024-06-24T10:00:00Z",
        "1999-12-31T12:34:56.100000Z",
        "2024-06-24T10:00:00.500000Z",
    ]
    assert (status, stored_times(engine)) == (200, [(time, time) for time in expected])


def test_a_millisecond_time_in_another_shape_is_checked_on_its_own(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    times = ["2024-06-24T10:00:00.123Z", "2024-06-24 10:00:00.123Z", "2024-06-24T10:00:00.12z"]

    status, _ = post(engine, *times)

    assert (status, stored_times(engine)) == (
        200,
        [
            ("2024-06-24T10:00:00.123000Z", "2024-06-24T10:00:00.123000Z"),
            ("2024-06-24T10:00:00.123000Z", "2024-06-24T10:00:00.123000Z"),
            ("2024-06-24T10:00:00.120000Z", "2024-06-24T10:00:00.120000Z"),
        ],
    )


def test_events_sharing_a_millisecond_time_are_stored_alike_and_a_shared_bad_one_is_refused(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(tracardi_version="1.0")
    same = "2024-06-24T10:00:00.250Z"

    status, _ = post(engine, same, same, same, "2024-06-24T10:00:01.000Z")
    bad_status, answer = post(engine, *["2023-02-29T10:00:00.001Z"] * 3)

    stored = "2024-06-24T10:00:00.250000Z"
    assert (status, stored_times(engine)) == (
        200,
        [(stored, stored)] * 3 + [("2024-06-24T10:00:01Z", "2024-06-24T10:00:01Z")],
    )
    assert (bad_status, {tuple(item["loc"][:3]) for item in answer["detail"]}) == (
        422,
        {("body", "events", 0), ("body", "events", 1), ("body", "events", 2)},
    )


_NOW = datetime(2024, 6, 24, 10, 0, 0, 123456, tzinfo=timezone.utc)
_EVENT = {"id": "e-1", "type": "Page View", "time": {"create": "2024-06-24T10:00:00.001Z"}}
_META = {"create": "2024-06-24T09:00:00.001Z", "insert": "2024-06-24 09:00:00Z"}


@pytest.mark.parametrize("tracardi_version", ["0.8", "0.9", "1.0"])
@pytest.mark.parametrize(
    "envelope",
    [
        {"source": {"id": SOURCE}},
        {"source": {"id": SOURCE}, "session": {"id": SESSION, "metadata": _META}},
        {"source": {"id": SOURCE}, "session": {"id": SESSION, "metadata": {"update": None}}},
        {"source": {"id": SOURCE}, "session": None, "profile": None, "context": None},
        {
            "source": {"id": SOURCE},
            "profile": {"id": "p-1", "metadata": {}, "ids": ["p-2", "p-3"]},
            "context": {"page": {"url": "https://shop.example/"}},
            "properties": None,
            "request": None,
            "options": {"saveSession": False, "debugger": True},
        },
    ],
)
def test_a_common_payload_taken_quickly_is_what_the_full_check_makes_of_it(
    tracardi_version: str, envelope: dict[str, Any]
) -> None:
    version = get_version(tracardi_version)
    body = {**envelope, "events": [_EVENT, {**_EVENT, "id": "e-2"}]}
    checker = _Checker(version, _NOW, by_orjson=True)

    fast = _fast_payload(json.loads(json.dumps(body)), version, checker.now_text, True)
    full = checker.custom_init((), checker.tracker_payload, json.loads(json.dumps(body)))

    assert fast is not None
    assert full == fast


@pytest.mark.parametrize(
    "envelope",
    [
        {"source": {"id": SOURCE}, "profile_less": True},  # a key the full check reads
        {"source": {"id": SOURCE, "type": "rest"}},
        {"source": {"id": 7}},
        {"source": {"id": SOURCE}, "session": {"id": SESSION, "metadata": {"create": 1}}},
        {"source": {"id": SOURCE}, "session": {"id": SESSION, "metadata": {"at": "x"}}},
        {"source": {"id": SOURCE}, "profile": {"id": "p-1", "ids": ["p-2", 3]}},
        {"source": {"id": SOURCE}, "profile": {"id": "p-1", "primary_id": "p-0"}},
        {"source": {"id": SOURCE}, "options": None},
        {"source": {"id": SOURCE}, "options": {"scheduledFlowId": "f", "scheduledNodeId": "n"}},
        {"source": {"id": SOURCE}, "context": []},
        {"source": {"id": SOURCE}, "events": [{"type": " "}]},
    ],
)
def test_a_payload_out_of_the_common_case_is_left_to_the_full_check(
    envelope: dict[str, Any],
) -> None:
    version = get_version("1.0")
    body = {"events": [_EVENT], **envelope}

    assert _fast_payload(body, version, "2024-06-24T10:00:00.123456Z", True) is None
