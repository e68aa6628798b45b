"""A resent event overwrites the stored one, as Tracardi's index keeps one per id."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tracardi_tracker.collector import Collector


def post(collector: Collector, events: list[dict[str, object]]) -> int:
    body = json.dumps({"source": {"id": "s"}, "session": {"id": "s-1"}, "events": events})
    request = urllib.request.Request(
        collector.track_url,
        data=body.encode(),
        headers={"Content-Type": "application/json", "User-Agent": "resend-test/1"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return int(answer.status)


def test_an_event_sent_twice_is_stored_once_with_the_latest_content(
    tracardi_collector: Collector,
) -> None:
    assert post(tracardi_collector, [{"id": "e-1", "type": "first", "properties": {"v": 1}}]) == 200
    assert post(tracardi_collector, [{"id": "e-2", "type": "other"}]) == 200
    assert post(tracardi_collector, [{"id": "e-1", "type": "first", "properties": {"v": 2}}]) == 200
    stored = tracardi_collector.events()
    assert [(event.id, event.properties) for event in stored] == [("e-1", {"v": 2}), ("e-2", {})]


def test_a_resend_after_a_restart_on_the_same_database_still_overwrites(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    with Collector(db=str(db)) as first:
        assert post(first, [{"id": "e-1", "type": "first"}]) == 200
    with Collector(db=str(db)) as second:
        assert post(second, [{"id": "e-1", "type": "again"}]) == 200
        assert post(second, [{"id": "e-2", "type": "new"}]) == 200
        stored = second.events()
    assert [(event.seq, event.id, event.type) for event in stored] == [
        (1, "e-1", "again"),
        (2, "e-2", "new"),
    ]
