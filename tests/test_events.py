"""Event classes: Tracardi types, validation at construction, common fields."""

from __future__ import annotations

from typing import Any

import pytest

from tracardi_tracker import (
    Event,
    InvalidEventError,
    PagePing,
    PageView,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Time,
    Tracker,
)
from tracardi_tracker._capture import CapturingTransport

LINK_CLICK = SelfDescribingJson("iglu:com.acme/link_click/jsonschema/1-0-1", {"target": "x"})


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (Event("Page View"), "page-view"),
        (Event("purchase_order"), "purchase-order"),
        (Event("Add To Cart!"), "add-to-cart"),
        (PageView("https://a.example/"), "page-view"),
        (PagePing("https://a.example/"), "page-ping"),
        (ScreenView("s1", "Home"), "screen-view"),
        (StructuredEvent("shop", "Add To Basket"), "add-to-basket"),
        (SelfDescribing(LINK_CLICK), "link-click"),
    ],
)
def test_event_type_is_the_slug_of_its_name(
    tracker: Tracker, transport: CapturingTransport, event: Any, expected: str
) -> None:
    tracker.track(event)
    assert expected == transport.events[-1]["type"]


def test_track_returns_the_uuid4_it_sends_as_the_event_id(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    import uuid

    event_id = tracker.track(Event("signup"))
    assert uuid.UUID(event_id).version == 4
    assert event_id == transport.events[0]["id"]


def test_given_event_id_is_sent_as_is(tracker: Tracker, transport: CapturingTransport) -> None:
    assert tracker.track(Event("signup", event_id="row-17")) == "row-17"
    assert transport.events[0]["id"] == "row-17"


def test_each_track_of_one_event_object_gets_its_own_id(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    event = Event("signup")
    first, second = tracker.track(event), tracker.track(event)
    assert first != second


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Event(""), "type"),
        (lambda: Event("  "), "type"),
        (lambda: Event("!!!"), "type"),
        (lambda: Event(3), "type"),  # type: ignore[arg-type]
        (lambda: Event("x", properties=[1]), "properties"),  # type: ignore[arg-type]
        (lambda: Event("x", tags="a,b"), "tags"),
        (lambda: Event("x", tags=["a", 1]), "tags[1]"),  # type: ignore[list-item]
        (lambda: Event("x", event_id="x" * 65), "id"),
        (lambda: Event("x", event_subject={"user_id": "u"}), "event_subject"),  # type: ignore[arg-type]
        (lambda: Event("x", context="page"), "context"),  # type: ignore[arg-type]
        (lambda: Event("x", context=[{"a": 1}]), "context[0]"),  # type: ignore[list-item]
        (lambda: PageView(""), "page_url"),
        (lambda: StructuredEvent("shop", ""), "action"),
        (lambda: StructuredEvent("shop", "buy", value="9"), "value"),  # type: ignore[arg-type]
        (lambda: StructuredEvent("shop", "buy", value=float("nan")), "value"),
        (lambda: ScreenView("", "Home"), "id_"),
        (lambda: SelfDescribingJson("com.acme/x/jsonschema/1-0-0", {}), "schema"),
        (lambda: Event("x", true_timestamp=1, time=Time(create=2)), "true_timestamp"),
    ],
)
def test_bad_input_raises_naming_the_field(make: Any, field: str) -> None:
    with pytest.raises(InvalidEventError) as raised:
        make()
    assert field == raised.value.path


def test_page_view_fills_context_page_like_the_js_tracker(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(PageView("https://shop.example/a/b?x=1", "B", "https://ref.example/p?utm=n"))
    expected = {
        "url": "https://shop.example/a/b?x=1",
        "path": "/a/b",
        "hash": None,
        "title": "B",
        "referer": {"host": "ref.example", "query": {"utm": "n"}},
    }
    assert expected == transport.events[0]["context"]["page"]


def test_page_ping_sends_scroll_offsets_as_properties(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(PagePing("https://a.example/", min_x=0, max_x=10, min_y=5, max_y=50))
    assert transport.events[0]["properties"] == {"min_x": 0, "max_x": 10, "min_y": 5, "max_y": 50}
    assert transport.events[0]["context"]["page"]["url"] == "https://a.example/"


def test_event_context_dict_merges_with_the_class_context(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(PageView("https://a.example/", context={"campaign": {"id": "c1"}}))
    assert {"campaign", "page"} == set(transport.events[0]["context"])


def test_context_entities_are_sent_with_schema_and_data(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(Event("x", context=[LINK_CLICK]))
    expected = [{"schema": LINK_CLICK.schema, "data": {"target": "x"}}]
    assert expected == transport.events[0]["context"]["entities"]


def test_tracker_tags_come_before_event_tags(
    make_tracker: Any, transport: CapturingTransport
) -> None:
    make_tracker(tags=["server"]).track(Event("x", tags=["backfill"]))
    assert transport.events[0]["tags"] == ["server", "backfill"]


def test_event_options_are_sent_as_the_event_config(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(Event("x", options={"fire": True}))
    assert transport.events[0]["options"] == {"fire": True}


def test_subject_setters_chain_and_validate() -> None:
    subject = Subject().set_user_id("1234").set_screen_resolution(1920, 1080).set_lang("pl")
    assert (
        subject.user_id,
        subject.screen_resolution,
        subject.lang,
    ) == ("1234", (1920, 1080), "pl")
    with pytest.raises(InvalidEventError) as raised:
        subject.set_color_depth("24")  # type: ignore[arg-type]
    assert raised.value.path == "subject.color_depth"
