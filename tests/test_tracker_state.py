"""Tracker state: sessions, adopted ids, many visitors, the first-payload gate."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tracardi_tracker import (
    ConfigurationError,
    Event,
    Identity,
    Options,
    PageView,
    Subject,
    SyncEmitter,
    Tracker,
    TrackerClosedError,
)
from tracardi_tracker._capture import CapturingTransport, tracardi_like


def test_session_is_a_uuid4_made_on_first_use(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    assert tracker.session_id is None
    tracker.track(Event("x"))
    session = transport.payloads[0]["session"]["id"]
    assert uuid.UUID(session).version == 4
    assert session == tracker.session_id


def test_session_is_kept_while_events_keep_coming(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(Event("x"))
    tracker.track(Event("y"))
    first, second = transport.payloads
    assert first["session"]["id"] == second["session"]["id"]


def test_session_is_replaced_after_the_timeout_without_events(
    make_tracker: Callable[..., Tracker],
    transport: CapturingTransport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("tracardi_tracker.tracker.time.monotonic", lambda: clock[0])
    tracker = make_tracker(session_timeout=timedelta(minutes=30))
    tracker.track(Event("a"))
    clock[0] += 29 * 60
    tracker.track(Event("b"))
    clock[0] += 30 * 60 + 1
    tracker.track(Event("c"))
    a, b, c = (payload["session"]["id"] for payload in transport.payloads)
    assert a == b
    assert b != c


def test_new_session_starts_a_new_session(tracker: Tracker, transport: CapturingTransport) -> None:
    tracker.track(Event("a"))
    new = tracker.new_session()
    tracker.track(Event("b"))
    assert new == transport.payloads[1]["session"]["id"]
    assert transport.payloads[0]["session"]["id"] != new


def test_profile_is_absent_until_tracardi_gives_one_then_adopted(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    assert tracker.profile_id is None
    tracker.track(Event("a"))
    tracker.track(Event("b"))
    first, second = transport.payloads
    assert "profile" not in first
    assert tracker.profile_id == second["profile"]["id"]


def test_ids_tracardi_answers_replace_the_ones_sent(
    make_tracker: Callable[..., Tracker],
) -> None:
    def merged_elsewhere(payload: dict[str, Any]) -> tuple[int, Any]:
        status, body = tracardi_like(payload)
        body["profile"]["id"] = "merged-profile"
        body["session"]["id"] = "shd-" + payload["session"]["id"]
        return status, body

    transport = CapturingTransport(merged_elsewhere)
    tracker = make_tracker(emitter=SyncEmitter(transport=transport))
    tracker.track(Event("a", event_subject=Subject(profile_id="old-profile")))
    tracker.track(Event("b", event_subject=Subject(profile_id="old-profile")))
    tracker.track(Event("c"))
    first, second, third = transport.payloads
    assert first["profile"]["id"] == "old-profile"
    assert second["profile"]["id"] == "merged-profile"
    assert second["session"]["id"].startswith("shd-")
    assert tracker.identity(Subject(profile_id="old-profile")).profile_id == "merged-profile"
    assert third["session"]["id"].startswith("shd-") is False


def test_own_visitor_adopts_a_shadow_session(make_tracker: Callable[..., Tracker]) -> None:
    def shadow(payload: dict[str, Any]) -> tuple[int, Any]:
        status, body = tracardi_like(payload)
        if not payload["session"]["id"].startswith("shd-"):
            body["session"]["id"] = "shd-" + payload["session"]["id"]
        return status, body

    transport = CapturingTransport(shadow)
    tracker = make_tracker(emitter=SyncEmitter(transport=transport))
    tracker.track(Event("a"))
    tracker.track(Event("b"))
    assert transport.payloads[1]["session"]["id"] == tracker.session_id
    assert tracker.session_id is not None
    assert tracker.session_id.startswith("shd-")


def test_a_null_answer_keeps_the_ids(make_tracker: Callable[..., Tracker]) -> None:
    transport = CapturingTransport(lambda payload: (200, None))
    tracker = make_tracker(emitter=SyncEmitter(transport=transport))
    tracker.track(Event("a"))
    assert tracker.profile_id is None
    assert tracker.session_id == transport.payloads[0]["session"]["id"]


def test_options_go_out_under_the_keys_tracardi_reads_as_booleans(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    make_tracker(options={"saveEvent": False, "saveSession": False}).track(Event("a"))
    expected = {"saveEvents": False, "saveSession": False, "saveProfile": True, "debugger": False}
    assert expected == transport.payloads[0]["options"]


def test_non_boolean_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"options\.debugger"):
        Options(debugger="true")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"options\.saveEverything"):
        Options.from_mapping({"saveEverything": True})


def test_namespace_and_app_id_travel_in_every_payload_context(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(namespace="web", app_id="shop", context={"app": {"version": "4.2"}})
    tracker.track(Event("a"))
    tracker.track(Event("b", event_subject=Subject(user_id="u1")))
    for payload in transport.payloads:
        assert payload["context"]["tracker"] == {"namespace": "web", "app_id": "shop"}
        assert payload["context"]["app"] == {"version": "4.2"}


def test_payload_properties_are_sent_for_the_session(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    make_tracker(properties={"tenant": "eu"}).track(Event("a"))
    assert transport.payloads[0]["properties"] == {"tenant": "eu"}


def test_visitors_named_by_event_subject_never_share_ids(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    alice, bob = Subject(user_id="alice"), Subject(user_id="bob")
    for _ in range(2):
        tracker.track(Event("a", event_subject=alice))
        tracker.track(Event("b", event_subject=bob))
        tracker.track(Event("c"))
    by_user: dict[str, set[tuple[str, str]]] = {}
    for payload in transport.payloads[3:]:
        user = payload.get("context", {}).get("user", {}).get("id", "tracker")
        by_user.setdefault(user, set()).add((payload["session"]["id"], payload["profile"]["id"]))
    assert len(by_user) == 3
    assert all(len(ids) == 1 for ids in by_user.values())
    assert len({ids for values in by_user.values() for ids in values}) == 3


def test_identity_tells_the_app_the_profile_tracardi_gave_a_visitor(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    visitor = Subject(session_id="cookie-session")
    tracker.track(PageView("https://a.example/", event_subject=visitor))
    answered = transport.payloads[0]
    assert answered["session"]["id"] == "cookie-session"
    identity = tracker.identity(visitor)
    assert identity.profile_id is not None
    assert Identity(identity.profile_id, "cookie-session") == identity
    assert Identity(None, None) == Identity(tracker.profile_id, tracker.session_id)


def test_event_subject_merges_over_the_tracker_subject(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(subject=Subject(platform="srv", lang="en", useragent="svc/1"))
    tracker.track(Event("a", event_subject=Subject(lang="pl")))
    browser = transport.payloads[0]["context"]["browser"]["local"]
    assert browser["browser"] == {"userAgent": "svc/1", "language": "pl"}
    assert browser["device"] == {"platform": "srv"}


def test_tracker_identity_does_not_leak_into_a_named_visitor(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(subject=Subject(profile_id="service-profile", user_id="service"))
    tracker.track(Event("a", event_subject=Subject(session_id="visitor-session")))
    payload = transport.payloads[0]
    assert "profile" not in payload
    assert "user" not in payload.get("context", {})


def test_ip_address_is_sent_as_x_forwarded_for(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    tracker.track(Event("a", event_subject=Subject(ip_address="203.0.113.7")))
    assert transport.requests[0].headers == {"X-Forwarded-For": "203.0.113.7"}


def test_first_payload_of_a_new_session_completes_before_the_next_is_sent(
    make_tracker: Callable[..., Tracker],
) -> None:
    first_arrived, release_first = threading.Event(), threading.Event()
    in_flight: list[int] = []
    lock = threading.Lock()

    def slow_first(payload: dict[str, Any]) -> tuple[int, Any]:
        with lock:
            in_flight.append(1)
            concurrent = len(in_flight)
        if payload["events"][0]["type"] == "first":
            first_arrived.set()
            release_first.wait(5)
        with lock:
            in_flight.pop()
        assert concurrent == 1
        return tracardi_like(payload)

    transport = CapturingTransport(slow_first)
    tracker = make_tracker(emitter=SyncEmitter(transport=transport))
    visitor = Subject(session_id="brand-new")
    first = threading.Thread(target=tracker.track, args=(Event("first", event_subject=visitor),))
    first.start()
    assert first_arrived.wait(5)
    second = threading.Thread(target=tracker.track, args=(Event("second", event_subject=visitor),))
    second.start()
    second.join(0.2)
    assert len(transport.requests) == 1  # the second waits for the first's answer
    release_first.set()
    first.join(5)
    second.join(5)
    one, two = transport.payloads
    assert "profile" not in one
    assert tracker.identity(visitor).profile_id == two["profile"]["id"]


def test_track_after_close_raises_and_close_is_idempotent(tracker: Tracker) -> None:
    assert tracker.close() == 0
    assert tracker.close() == 0
    with pytest.raises(TrackerClosedError):
        tracker.track(Event("a"))


def test_context_manager_flushes_batched_events(transport: CapturingTransport) -> None:
    emitter = SyncEmitter(transport=transport, batch_size=10)
    with Tracker("http://t.example", "src", emitter=emitter) as tracker:
        tracker.track(Event("a"))
        tracker.track(Event("b"))
        assert transport.requests == []
    assert [[e["type"] for e in p["events"]] for p in transport.payloads] == [["a", "b"]]
    assert transport.closed


def test_batches_are_grouped_per_visitor_in_order(transport: CapturingTransport) -> None:
    emitter = SyncEmitter(transport=transport, batch_size=5)
    tracker = Tracker("http://t.example", "src", emitter=emitter)
    alice, bob = Subject(session_id="s-alice"), Subject(session_id="s-bob")
    for name, who in [("a1", alice), ("b1", bob), ("a2", alice), ("b2", bob), ("a3", alice)]:
        tracker.track(Event(name, event_subject=who))
    grouped = {p["session"]["id"]: [e["type"] for e in p["events"]] for p in transport.payloads}
    assert grouped == {"s-alice": ["a1", "a2", "a3"], "s-bob": ["b1", "b2"]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint": "localhost:8686"}, "endpoint"),
        ({"source_id": ""}, "source_id"),
        ({"source_id": "@internal"}, "internal"),
        ({"session_timeout": timedelta(0)}, "session_timeout"),
        ({"context": {"bad": float("nan")}}, "context.bad"),
    ],
)
def test_bad_configuration_raises(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"endpoint": "http://t.example", "source_id": "src", **kwargs}
    with pytest.raises(ConfigurationError, match=message):
        Tracker(arguments.pop("endpoint"), arguments.pop("source_id"), **arguments)


def test_sync_flush_starts_no_payload_after_its_deadline_and_keeps_the_rest() -> None:
    transport = CapturingTransport()
    failed: list[str] = []
    emitter = SyncEmitter(
        transport=transport,
        batch_size=100,
        on_failure=lambda events, error: failed.extend(e.event_id for e in events),
    )
    tracker = Tracker("http://t.example", "src", emitter=emitter)
    for n in range(5):
        tracker.track(Event("x", event_subject=Subject(user_id=f"u{n}")))
    assert tracker.flush(0.0) == 5  # the deadline has passed: nothing started, all kept
    assert transport.requests == []
    assert tracker.flush() == 0
    assert len(transport.requests) == 5
    late = [tracker.track(Event("y", event_subject=Subject(user_id=f"v{n}"))) for n in range(2)]
    assert tracker.close(0.0) == 2
    assert sorted(failed) == sorted(late)  # reported at close, not lost


def test_made_event_ids_are_canonical_distinct_uuid4s() -> None:
    from tracardi_tracker._visitors import new_event_id

    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids:
        parsed = uuid.UUID(event_id)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == event_id


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_hands_out_the_parents_pooled_event_ids() -> None:
    from tracardi_tracker._visitors import new_event_id, stock_event_ids

    stock_event_ids()  # the parent holds ids made ahead: the child must not reuse them
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(reader)
        os.write(writer, ",".join(new_event_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        child_ids = set(pipe.read().decode().split(","))
    os.waitpid(pid, 0)
    parent_ids = {new_event_id() for _ in range(100)}
    assert len(child_ids) == 100
    assert not child_ids & parent_ids


def test_a_visitor_the_registry_lets_go_gets_a_new_session_and_the_others_keep_theirs() -> None:
    transport = CapturingTransport()
    tracker = Tracker("http://t.example", "src", emitter=SyncEmitter(transport=transport))
    tracker._visitors.capacity = 2
    alice, bob, carol = (Subject(user_id=name) for name in ("alice", "bob", "carol"))
    first = tracker.track(Event("x", event_subject=alice))
    tracker.track(Event("x", event_subject=bob))
    tracker.track(Event("x", event_subject=alice))  # seen since listed: a second chance
    tracker.track(Event("x", event_subject=carol))  # over capacity: bob goes, not alice
    alice_session = tracker.identity(alice).session_id
    assert tracker.identity(bob).session_id is None  # forgotten
    tracker.track(Event("x", event_subject=alice))
    assert tracker.identity(alice).session_id == alice_session
    tracker.track(Event("x", event_subject=bob))  # made anew: a session of its own
    sessions = {
        event["id"]: payload["session"]["id"]
        for payload in transport.payloads
        for event in payload["events"]
    }
    assert sessions[first] == alice_session
    bob_sessions = [
        p["session"]["id"] for p in transport.payloads if p["context"]["user"]["id"] == "bob"
    ]
    assert len(set(bob_sessions)) == 2


def test_a_reused_subject_gets_its_payload_head_made_once_until_either_subject_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracker = Tracker(
        "http://t.example", "src", emitter=SyncEmitter(transport=CapturingTransport())
    )
    made: list[Subject] = []
    make_head = Tracker._head

    def counting(self: Tracker, subject: Subject) -> Any:
        made.append(subject)
        return make_head(self, subject)

    monkeypatch.setattr(Tracker, "_head", counting)
    alice = Subject(user_id="alice")
    for _ in range(5):
        tracker.track(Event("x", event_subject=alice))
    assert len(made) == 1
    alice.set_lang("pl")  # the event subject changed
    tracker.track(Event("x", event_subject=alice))
    tracker.subject.set_platform("srv")  # the tracker's own subject changed
    tracker.track(Event("x", event_subject=alice))
    tracker.track(Event("x", event_subject=alice))
    assert [(s.lang, s.platform) for s in made] == [(None, None), ("pl", None), ("pl", "srv")]
    other = Tracker("http://t.example", "src", emitter=SyncEmitter(transport=CapturingTransport()))
    other.track(Event("x", event_subject=alice))  # another tracker keeps its own
    assert len(made) == 4


def test_a_tracked_subject_can_still_be_pickled_and_copied() -> None:
    import copy
    import pickle

    tracker = Tracker(
        "http://t.example", "src", emitter=SyncEmitter(transport=CapturingTransport())
    )
    alice = Subject(user_id="alice", lang="pl")
    tracker.track(Event("x", event_subject=alice))  # the tracker keeps its memo on alice
    copies = [pickle.loads(pickle.dumps(alice)), copy.deepcopy(alice), copy.copy(alice)]
    assert copies == [alice] * 3
    for twin in copies:  # the same visitor for the tracker, found again
        tracker.track(Event("x", event_subject=twin))
        assert tracker.identity(twin) == tracker.identity(alice)
