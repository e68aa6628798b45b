"""The terminal table of stored events."""

from __future__ import annotations

from typing import Any

from tracardi_tracker.collector import StoredEvent, format_events


def _stored(seq: int, type_: str, **payload: Any) -> StoredEvent:
    body = {"id": f"e{seq}", "type": type_, "time": payload.pop("time", {}), **payload}
    return StoredEvent(
        seq=seq,
        id=f"e{seq}",
        type=type_,
        profile_id="6a1f7d3e-2b9c-4e8a-8f55-31c2d0e4b7a9",
        session_id=None,
        source_id="s",
        task="t",
        received_at="2024-06-24T10:00:05Z",
        payload=body,
    )


def test_table_shows_time_type_short_ids_properties_and_page() -> None:
    events = [
        _stored(1, "page-view", time={"insert": "2024-06-24T10:00:00.123456Z", "create": None},
                properties={}, context={"page": {"url": "https://shop.example/"}}),
        _stored(2, "add-to-cart", time={"insert": "2024-06-24T10:00:01Z",
                                        "create": "2024-06-24T09:59:59+02:00"},
                properties={"sku": "A1"}),
    ]  # fmt: skip

    table = format_events(events, width=100)

    expected = "\n".join(
        [
            "TIME                       TYPE         PROFILE   SESSION  PROPERTIES",
            "2024-06-24 10:00:00Z       page-view    6a1f7d3e  -        page=https://shop.example/",
            '2024-06-24 09:59:59+02:00  add-to-cart  6a1f7d3e  -        {"sku": "A1"}',
            "2 events",
        ]
    )
    assert expected == table


def test_long_properties_are_cut_to_the_width() -> None:
    event = _stored(1, "x", time={"insert": "2024-06-24T10:00:00Z"}, properties={"t": "y" * 200})

    line = format_events([event], width=80).splitlines()[1]

    expected = (80, "…")
    assert expected == (len(line), line[-1])


def test_no_events_says_so() -> None:
    assert format_events([]) == "No events stored."
