"""Property values: what is converted, what is refused, and where the refusal points."""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest

from tracardi_tracker import Event, InvalidEventError, PageView, Time, Tracker
from tracardi_tracker._capture import CapturingTransport
from tracardi_tracker._serialization import dumps, encode_event, event_to_wire, read_event_id
from tracardi_tracker.events import BaseEvent


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Item:
    sku: str
    price: Decimal


@attrs.define
class Address:
    city: str
    since: date


def test_rich_values_are_converted(tracker: Tracker, transport: CapturingTransport) -> None:
    properties = {
        "at": datetime(2023, 1, 1, 12, tzinfo=timezone.utc),
        "day": date(2023, 1, 2),
        "price": Decimal("19.99"),
        "count": Decimal("3"),
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "color": Color.RED,
        "labels": {"b", "a"},
        "pair": (1, 2),
        "item": Item("A1", Decimal("1.5")),
        "address": Address("Wrocław", date(2020, 5, 1)),
    }
    tracker.track(Event("x", properties))
    expected = {
        "at": "2023-01-01T12:00:00Z",
        "day": "2023-01-02",
        "price": 19.99,
        "count": 3,
        "ref": "12345678-1234-5678-1234-567812345678",
        "color": "red",
        "labels": ["a", "b"],
        "pair": [1, 2],
        "item": {"sku": "A1", "price": 1.5},
        "address": {"city": "Wrocław", "since": "2020-05-01"},
    }
    assert expected == transport.events[0]["properties"]


@pytest.mark.parametrize(
    ("properties", "path"),
    [
        ({"items": [{"price": 1}, {"price": 2}, {"price": object()}]}, "properties.items[2].price"),
        ({"score": float("nan")}, "properties.score"),
        ({"score": float("-inf")}, "properties.score"),
        ({"amount": Decimal("NaN")}, "properties.amount"),
        ({"raw": b"bytes"}, "properties.raw"),
        ({"at": datetime(2023, 1, 1)}, "properties.at"),
        ({"nested": {1: "int key"}}, "properties.nested"),
    ],
)
def test_bad_values_raise_at_track_with_their_path_and_nothing_is_sent(
    tracker: Tracker, transport: CapturingTransport, properties: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidEventError) as raised:
        tracker.track(Event("x", properties))
    assert path == raised.value.path
    assert transport.requests == []


def test_bad_event_context_value_names_the_context_path(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    with pytest.raises(InvalidEventError) as raised:
        tracker.track(Event("x", context={"geo": {"lat": float("nan")}}))
    assert raised.value.path == "context.geo.lat"


@pytest.mark.parametrize(
    "event",
    [
        Event("Add To Cart", {"sku": "A1", "price": 49.9, "quantity": 2, "gift": False}),
        Event("Empty"),
        Event("x", {"at": datetime(2023, 1, 1, 12, tzinfo=timezone.utc), "labels": {"b", "a"}}),
        Event("x", {"huge": 2**70, "nested": {"color": Color.RED, "item": Item("A", Decimal(1))}}),
        Event("x", {"k": 1}, tags=("own",)),
        Event("Zakupy w koszyku ✓", {"note": 'a "quoted" \\ line\nbreak', "n": None}),
        PageView("https://shop.example/p/1?q=2#top", "Product", "https://ref.example/?a=b"),
        PageView('https://shop.example/ł?x="y"', 'Título "ñ"'),
        PageView(
            "https://shop.example/", time=Time(create=datetime(2020, 1, 1, tzinfo=timezone.utc))
        ),
    ],
)
@pytest.mark.parametrize("tags", [(), ("tracker-tag",)])
def test_encoded_event_is_its_wire_form_whichever_path_encodes_it(
    event: BaseEvent, tags: tuple[str, ...]
) -> None:
    # an id of the caller's is escaped, and read back from the JSON as it was given
    for event_id in ("e-1", str(uuid.uuid4()), "zażółć", 'own "id" \\ ✓', "line\nbreak"):
        wire = event_to_wire(event, event_id, tags)
        assert wire.get("tags", []) == [*tags, *event.tags]  # the tracker's first
        assert json.loads(encode_event(event, event_id, tags)) == wire
        assert encode_event(event, event_id, tags) == dumps(wire)
        assert read_event_id(encode_event(event, event_id, tags)) == event_id
