"""End to end against the local collector on 127.0.0.1: the core SDK (issue 2)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tracardi_tracker import (
    Event,
    PagePing,
    PageView,
    PayloadRejectedError,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    SourceRejectedError,
    StructuredEvent,
    Subject,
    SyncEmitter,
    Time,
    Tracker,
)
from tracardi_tracker._transport import HttpTransport
from tracardi_tracker.testing import Collector

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


def sync_tracker(collector: Collector, source: str = "e2e-source", **kwargs: object) -> Tracker:
    return Tracker(collector.url, source, emitter=SyncEmitter(), **kwargs)  # type: ignore[arg-type]


def test_every_event_class_is_accepted_with_its_id_type_and_times(
    tracardi_collector: Collector,
) -> None:
    when = Time(create=datetime(2023, 3, 1, 10, 2, 11, tzinfo=timezone.utc))
    events = [
        PageView("https://shop.example/", "Home", "https://ref.example/?q=x", time=when),
        PagePing("https://shop.example/", min_x=0, max_x=1, min_y=0, max_y=9, time=when),
        ScreenView("s1", "Basket", time=when),
        StructuredEvent("shop", "Add To Basket", value=9.5, time=when),
        SelfDescribing(SelfDescribingJson("iglu:com.acme/link_click/jsonschema/1-0-1", {"a": 1})),
        Event("Purchase Order", {"order": "A-1", "total": 49.9}, tags=["backfill"], time=when),
    ]
    with sync_tracker(tracardi_collector, app_id="e2e") as tracker:
        ids = [tracker.track(event) for event in events]
    stored = tracardi_collector.events()
    assert tracardi_collector.bad() == []
    assert [event.id for event in stored] == ids
    assert [event.type for event in stored] == [
        "page-view",
        "page-ping",
        "screen-view",
        "add-to-basket",
        "link-click",
        "purchase-order",
    ]
    assert stored[0].payload["time"]["create"] == "2023-03-01T10:02:11Z"
    assert stored[-1].payload["tags"] == ["backfill"]


def test_the_profile_tracardi_gives_is_adopted_and_used_for_the_next_events(
    tracardi_collector: Collector,
) -> None:
    with sync_tracker(tracardi_collector) as tracker:
        tracker.track(PageView("https://shop.example/"))
        profile, session = tracker.profile_id, tracker.session_id
        tracker.track(Event("signup"))
    assert profile is not None
    stored = tracardi_collector.events()
    assert {(event.profile_id, event.session_id) for event in stored} == {(profile, session)}


@pytest.mark.tracardi_collector(tracardi_version="1.0")
def test_an_unknown_profile_id_replaced_by_tracardi_1_0_is_adopted(
    tracardi_collector: Collector,
) -> None:
    visitor = Subject(profile_id="forged-profile-id")
    with sync_tracker(tracardi_collector) as tracker:
        tracker.track(Event("a", event_subject=visitor))
        tracker.track(Event("b", event_subject=visitor))
        given = tracker.identity(visitor).profile_id
    assert given not in (None, "forged-profile-id")
    assert [event.profile_id for event in tracardi_collector.events()] == [given, given]


@pytest.mark.tracardi_collector(tracardi_version="0.9", sources=["known-source"])
def test_an_unknown_source_raises_source_rejected_without_retry(
    tracardi_collector: Collector,
) -> None:
    with (
        sync_tracker(tracardi_collector, source="unknown-source") as tracker,
        pytest.raises(SourceRejectedError) as raised,
    ):
        tracker.track(Event("a"))
    assert raised.value.status == 406
    assert len(tracardi_collector.bad()) == 1


@pytest.mark.tracardi_collector(tracardi_version="0.8", sources=["known-source"])
def test_tracardi_0_8_rejects_an_unknown_source_with_401(tracardi_collector: Collector) -> None:
    with (
        sync_tracker(tracardi_collector, source="unknown-source") as tracker,
        pytest.raises(SourceRejectedError) as raised,
    ):
        tracker.track(Event("a"))
    assert raised.value.status == 401


def test_the_servers_validation_detail_reaches_the_exception(
    tracardi_collector: Collector,
) -> None:
    # The SDK never builds such a payload; post one by hand to see the mapping of a real 422.
    body = b'{"source": {"id": "s"}, "session": {"id": "s1"}, "events": [{"properties": {}}]}'
    transport = HttpTransport()
    with pytest.raises(PayloadRejectedError) as raised:
        transport.post(tracardi_collector.track_url, body, event_ids=["e-1"])
    transport.close()
    assert (raised.value.status, raised.value.event_ids) == (422, ("e-1",))
    assert isinstance(raised.value.detail, list)
    assert raised.value.detail[0]["msg"] == "Field required"


def test_the_readme_quickstart_runs_as_written(tracardi_collector: Collector) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    quickstart = blocks[0]
    assert quickstart == (ROOT / "examples" / "quickstart.py").read_text().split('"""\n\n', 1)[1]
    env = {
        **os.environ,
        "TRACARDI_ENDPOINT": tracardi_collector.url,
        "TRACARDI_SOURCE_ID": "readme",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", quickstart], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    stored = tracardi_collector.events()
    by_session: dict[str, list[str]] = {}
    for event in stored:  # visitors are sent side by side: order holds per visitor
        by_session.setdefault(event.session_id, []).append(event.type)
    assert sorted(by_session.values()) == [["page-view"], ["page-view", "add-to-cart"]]
    own = next(event for event in stored if event.type == "add-to-cart")
    assert f"own visitor: {own.profile_id} {own.session_id}" in result.stdout
