"""Which profile and session ids the collector answers with (the contract's §4.2)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import SESSION, event, is_uuid4, payload, send

from tracardi_tracker.collector import Collector


def _ids(response: Any) -> tuple[str | None, str | None]:
    body = response.json()
    return body["profile"]["id"], body["session"]["id"]


@pytest.mark.parametrize(("version", "kept"), [("0.8", False), ("0.9", True), ("1.0", False)])
def test_unknown_profile_id_is_kept_only_by_09(
    collector_for: Any, version: str, kept: bool
) -> None:
    collector = collector_for(version)

    profile, _ = _ids(send(collector, payload(profile={"id": "client-made"})))

    expected = (kept, True)
    assert expected == (profile == "client-made", kept or is_uuid4(profile))


def test_static_profile_ids_keep_unknown_profile_ids_in_every_version(
    tracardi_collector_factory: Callable[..., Collector],
) -> None:
    collector = tracardi_collector_factory(tracardi_version="1.0", static_profile_ids=True)

    profile, _ = _ids(send(collector, payload(profile={"id": "client-made"})))

    assert profile == "client-made"


def test_answered_profile_id_is_known_afterwards(collector: Collector) -> None:
    first, _ = _ids(send(collector, payload(session={"id": "s1"})))

    second, _ = _ids(send(collector, payload(session={"id": "s2"}, profile={"id": first})))

    assert first == second


def test_known_session_gives_its_profile_when_none_is_sent(collector: Collector) -> None:
    first, _ = _ids(send(collector, payload()))

    second, session = _ids(send(collector, payload()))

    expected = (first, SESSION)
    assert expected == (second, session)


def test_missing_session_gets_a_new_random_id_each_time(collector: Collector) -> None:
    body = {"source": {"id": "s"}, "events": [event()]}

    _, first = _ids(send(collector, body))
    _, second = _ids(send(collector, {**body, "session": {"id": "  "}}))

    expected = (True, True, True)
    assert expected == (is_uuid4(first), is_uuid4(second), first != second)


@pytest.mark.parametrize("version", ["0.9", "1.0"])
def test_profile_ids_are_merged_and_then_answer_with_the_owner(
    collector_for: Any, version: str
) -> None:
    collector = collector_for(version)
    owner, _ = _ids(send(collector, payload(profile={"id": "x", "ids": ["crm:1", "crm:2"]})))

    answered, _ = _ids(send(collector, payload(session={"id": "new"}, profile={"id": "crm:2"})))

    record = collector.profile(owner or "")
    expected = (owner, ("crm:1", "crm:2"))
    assert expected == (answered, record.ids if record else None)


def test_profile_ids_are_ignored_by_08(collector_for: Any) -> None:
    collector = collector_for("0.8")

    owner, _ = _ids(send(collector, payload(profile={"id": "x", "ids": ["crm:1"]})))

    record = collector.profile(owner or "")
    expected = ((), None)
    assert expected == (record.ids if record else None, collector.profile("crm:1"))


@pytest.mark.parametrize("version", ["0.8", "0.9"])
def test_session_owner_wins_over_the_payload_profile_before_10(
    collector_for: Any, version: str
) -> None:
    collector = collector_for(version)
    collector.add_profile("A")
    collector.add_profile("B")
    send(collector, payload(profile={"id": "A"}))

    answered = _ids(send(collector, payload(profile={"id": "B"})))

    assert answered == ("A", SESSION)


def test_existing_payload_profile_gets_a_shadow_session_in_10(collector_for: Any) -> None:
    collector = collector_for("1.0")
    collector.add_profile("A")
    collector.add_profile("B")
    send(collector, payload(profile={"id": "A"}))

    answered = _ids(send(collector, payload(profile={"id": "B"})))

    digest = hashlib.md5(SESSION.encode()).hexdigest()
    shadow = f"shd-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"
    session = collector.session(SESSION)
    expected = (("B", shadow), "A")
    assert expected == (answered, session.profile_id if session else None)


def test_unknown_payload_profile_keeps_the_session_owner_in_10(collector_for: Any) -> None:
    collector = collector_for("1.0")
    collector.add_profile("A")
    send(collector, payload(profile={"id": "A"}))

    answered = _ids(send(collector, payload(profile={"id": "never-seen"})))

    assert answered == ("A", SESSION)


def test_session_metadata_is_taken_only_when_the_session_is_created(
    collector_for: Any,
) -> None:
    collector = collector_for("0.9")
    first = {"create": "2023-03-01T09:59:58Z", "insert": "2023-03-01T10:00:00Z"}
    send(collector, payload(session={"id": SESSION, "metadata": first}))

    send(collector, payload(session={"id": SESSION, "metadata": {"create": "2024-01-01T00:00:00"}}))

    session = collector.session(SESSION)
    expected = {"insert": "2023-03-01T10:00:00Z", "create": "2023-03-01T09:59:58Z", "update": None}
    assert expected == (session.metadata if session else None)


def test_profile_metadata_is_taken_only_when_the_profile_is_created(
    collector_for: Any,
) -> None:
    collector = collector_for("0.9")
    body = payload(profile={"id": "p1", "metadata": {"create": "2021-06-01T00:00:00Z"}})
    send(collector, body)

    send(collector, payload(profile={"id": "p1", "metadata": {"create": "2022-01-01T00:00:00Z"}}))

    record = collector.profile("p1")
    metadata = record.metadata if record else {}
    expected = ("2021-06-01T00:00:00Z", True)
    assert expected == (metadata["create"], str(metadata["insert"]).endswith("Z"))


def test_session_metadata_is_ignored_by_08(collector_for: Any) -> None:
    collector = collector_for("0.8")

    send(collector, payload(session={"id": SESSION, "metadata": {"create": "not a time"}}))

    session = collector.session(SESSION)
    assert (session.metadata if session else "missing") is None


def test_profiles_and_sessions_survive_a_restart_with_the_same_database(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "events.db")
    with Collector(db=db, tracardi_version="0.8") as first:
        profile, _ = _ids(send(first, payload()))

    with Collector(db=db, tracardi_version="0.8") as second:
        answered = _ids(send(second, payload(session={"id": "other"}, profile={"id": profile})))
        stored = len(second.events())

    expected = ((profile, "other"), 2)
    assert expected == (answered, stored)
