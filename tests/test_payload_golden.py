"""Golden files pin the exact payload of every event class.

Regenerate after a deliberate change with ``UPDATE_GOLDEN=1 pytest tests/test_payload_golden.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tracardi_tracker import (
    BaseEvent,
    Event,
    PagePing,
    PageView,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    SyncEmitter,
    Time,
    Tracker,
)
from tracardi_tracker._capture import CapturingTransport

GOLDEN = Path(__file__).parent / "golden"
WHEN = Time(
    create=datetime(2023, 3, 1, 10, 2, 11, 250000, tzinfo=timezone.utc),
    insert=datetime(2023, 3, 1, 10, 2, 12, tzinfo=timezone.utc),
)
VISITOR = Subject(session_id="0c2f4e6a-8b1d-4f3e-a5c7-9e1b3d5f7a92")
COMMON: dict[str, Any] = {
    "time": WHEN,
    "event_id": "b6c3f0e2-4d1a-4c9b-8e7f-1a2b3c4d5e6f",
    "event_subject": VISITOR,
}
RETURNING_VISITOR = Subject(
    user_id="crm:12345",
    platform="web",
    screen_resolution=(1920, 1080),
    viewport=(1280, 720),
    color_depth=24,
    timezone="Europe/Warsaw",
    lang="en-GB",
    ip_address="203.0.113.7",
    useragent="Mozilla/5.0 (X11; Linux x86_64)",
    profile_id="6a1f7d3e-2b9c-4e8a-8f55-31c2d0e4b7a9",
    profile_ids=["newsletter:77"],
    session_id="0c2f4e6a-8b1d-4f3e-a5c7-9e1b3d5f7a92",
    profile_metadata=Time(create="2021-06-01T00:00:00Z"),
    session_metadata=Time(create="2023-03-01T09:59:58Z", insert="2023-03-01T10:00:00Z"),
)

CASES: dict[str, BaseEvent] = {
    "page_view": PageView(
        "https://shop.example/shoes/red?size=42#reviews",
        "Red shoes",
        "https://search.example/?q=red+shoes",
        **COMMON,
    ),
    "page_ping": PagePing(
        "https://shop.example/shoes/red", "Red shoes", None, 0, 120, 300, 1800, **COMMON
    ),
    "screen_view": ScreenView(
        "screen-2", "Basket", "feed", "Home", "screen-1", "feed", "push", **COMMON
    ),
    "structured_event": StructuredEvent(
        "shop", "Add To Basket", "red shoes", "sku", 49.9, **COMMON
    ),
    "self_describing": SelfDescribing(
        SelfDescribingJson(
            "iglu:com.acme/link_click/jsonschema/1-0-1",
            {"targetUrl": "https://acme.example/docs", "elementId": "docs-link"},
        ),
        context=[SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"tier": "gold"})],
        **COMMON,
    ),
    "custom_event": Event(
        "Purchase Order",
        {"order_id": "A-991", "value": 49.9, "currency": "EUR"},
        context={"page": {"url": "https://shop.example/checkout", "title": "Checkout"}},
        tags=["backfill"],
        options={"fire": True},
        **COMMON,
    ),
    "returning_visitor": Event(
        "purchase-order",
        {"order_id": "A-991"},
        time=WHEN,
        event_id="b6c3f0e2-4d1a-4c9b-8e7f-1a2b3c4d5e6f",
        event_subject=RETURNING_VISITOR,
    ),
}


def payload_for(event: BaseEvent) -> dict[str, Any]:
    transport = CapturingTransport()
    with Tracker(
        "http://tracardi.test:8686",
        "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387",
        emitter=SyncEmitter(transport=transport),
        namespace="web",
        app_id="acme-shop",
    ) as tracker:
        tracker.track(event)
    (payload,) = transport.payloads
    return payload


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_event_class_sends_its_golden_payload(name: str) -> None:
    actual = payload_for(CASES[name])
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert expected == actual


def test_the_fast_encoder_and_the_standard_library_send_the_same_json() -> None:
    from tracardi_tracker import _serialization

    for name in sorted(CASES):
        payload = payload_for(CASES[name])
        assert json.loads(_serialization.dumps(payload)) == json.loads(
            _serialization._stdlib_dumps(payload)
        )
    assert _serialization._ORJSON is not None  # the dev extras install the fast path
