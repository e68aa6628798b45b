"""BackgroundEmitter: never blocks the caller, never loses an event silently."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tracardi_tracker import (
    BackgroundEmitter,
    DeliveryError,
    Envelope,
    Event,
    PayloadRejectedError,
    QueueFullError,
    RetryPolicy,
    Subject,
    Tracker,
    UndeliveredError,
)
from tracardi_tracker._capture import CapturingTransport, tracardi_like

FAST_RETRY = RetryPolicy(attempts=1000, initial_wait=0.005, max_wait=0.02, max_elapsed=60)


class Gate:
    """A responder that holds every request until opened."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.waiting = threading.Event()

    def __call__(self, payload: dict[str, Any]) -> tuple[int, Any]:
        self.waiting.set()
        self.open.wait(10)
        return tracardi_like(payload)


class Failures:
    """Collects on_failure reports."""

    def __init__(self) -> None:
        self.reports: list[tuple[list[str], DeliveryError]] = []
        self.lock = threading.Lock()

    def __call__(self, events: Any, error: DeliveryError) -> None:
        with self.lock:
            self.reports.append(([envelope.event_id for envelope in events], error))

    @property
    def event_ids(self) -> list[str]:
        return [event_id for ids, _ in self.reports for event_id in ids]


def track_for_ten_visitors(tracker: Tracker) -> list[str]:
    """Track 1,000 events for ten visitors in turn; their ids, in order."""
    people = [Subject(user_id=f"u{n}") for n in range(10)]
    return [tracker.track(Event("x", {"n": n}, event_subject=people[n % 10])) for n in range(1000)]


@pytest.fixture
def make_background() -> Iterator[Callable[..., tuple[Tracker, BackgroundEmitter]]]:
    made: list[BackgroundEmitter] = []

    def make(transport: Any, **kwargs: Any) -> tuple[Tracker, BackgroundEmitter]:
        kwargs.setdefault("flush_interval", 0.01)
        kwargs.setdefault("retry", FAST_RETRY)
        emitter = BackgroundEmitter(transport=transport, **kwargs)
        made.append(emitter)
        return Tracker("http://t.example", "src", emitter=emitter), emitter

    yield make
    for emitter in made:
        emitter.close(1)


def test_every_event_is_delivered_in_order(make_background: Any) -> None:
    transport = CapturingTransport()
    tracker, emitter = make_background(transport, batch_size=7)
    ids = [tracker.track(Event("x", {"n": n})) for n in range(100)]
    assert tracker.flush(5) == 0
    assert [event["id"] for event in transport.events] == ids
    assert emitter.stats().sent == 100


def test_track_does_not_wait_for_the_network(make_background: Any) -> None:
    gate = Gate()
    transport = CapturingTransport(gate)
    tracker, emitter = make_background(transport, batch_size=10)
    for n in range(1000):
        tracker.track(Event("x", {"n": n}))
    assert gate.waiting.wait(5)
    assert emitter.stats().queued == 1000  # all accepted while the server holds the first
    gate.open.set()
    assert tracker.flush(5) == 0
    assert len(transport.events) == 1000


def test_events_wait_encoded_not_as_objects_while_the_server_is_slow(
    make_background: Any,
) -> None:
    gate = Gate()
    transport = CapturingTransport(gate)
    tracker, emitter = make_background(transport, batch_size=10)
    track_for_ten_visitors(tracker)
    assert gate.waiting.wait(5)
    waiting = [body for batch in emitter._outbox for body in batch.bodies]
    assert len(waiting) >= 1000 - 2 * 10  # all but what the two senders hold
    assert all(type(body) is bytes for body in waiting)
    gate.open.set()
    assert tracker.flush(5) == 0
    assert len(transport.events) == 1000


def test_a_visitor_buffer_goes_when_its_json_reaches_max_batch_bytes(
    make_background: Any,
) -> None:
    transport = CapturingTransport()
    tracker, _ = make_background(
        transport, batch_size=1000, max_batch_bytes=2_000, flush_interval=60
    )
    ids = [tracker.track(Event("x", {"text": "a" * 200})) for _ in range(30)]
    deadline = time.monotonic() + 5
    while len(transport.events) < 20 and time.monotonic() < deadline:  # no flush()
        time.sleep(0.01)
    sizes = [len(payload["events"]) for payload in transport.payloads]
    assert sizes
    assert all(size < 30 for size in sizes)
    assert tracker.flush(5) == 0
    assert [event["id"] for event in transport.events] == ids


def test_over_max_buffer_bytes_the_fullest_buffer_goes_first(make_background: Any) -> None:
    transport = CapturingTransport()
    tracker, emitter = make_background(
        transport, batch_size=1000, max_buffer_bytes=20_000, flush_interval=60
    )
    heavy, light = Subject(user_id="heavy"), Subject(user_id="light")
    for n in range(5):
        tracker.track(Event("x", {"n": n}, event_subject=light))
    for n in range(200):  # about 175 bytes each: over the bound at about the 115th
        tracker.track(Event("x", {"n": n, "pad": "p" * 20}, event_subject=heavy))
    deadline = time.monotonic() + 5
    while not transport.payloads and time.monotonic() < deadline:  # no flush()
        time.sleep(0.01)
    first = transport.payloads[0]  # the heavy visitor's, not the light one's (older)
    assert all("pad" in event["properties"] for event in first["events"])
    assert emitter._buffered <= 20_000
    assert tracker.flush(5) == 0
    assert len(transport.events) == 205


def test_close_reports_what_waits_behind_senders_stuck_in_a_request(
    make_background: Any,
) -> None:
    gate = Gate()  # never opened: the server holds every request
    failures = Failures()
    tracker, _ = make_background(CapturingTransport(gate), batch_size=10, on_failure=failures)
    ids = track_for_ten_visitors(tracker)
    assert gate.waiting.wait(5)
    started = time.monotonic()
    assert tracker.close(0.3) == 1000
    assert time.monotonic() - started < 2
    reported = set(failures.event_ids)
    assert len(reported) >= 1000 - 2 * 10  # all but the two payloads in flight
    assert reported <= set(ids)
    gate.open.set()


def test_the_first_payload_of_a_visitor_is_answered_before_the_rest_go(
    make_background: Any,
) -> None:
    transport = CapturingTransport()
    tracker, _ = make_background(transport, batch_size=1)
    for n in range(5):
        tracker.track(Event("x", {"n": n}))
    tracker.flush(5)
    first, *rest = transport.payloads
    assert "profile" not in first
    assert {payload["profile"]["id"] for payload in rest} == {tracker.profile_id}


class InFlight:
    """A responder that takes a while and records how many payloads, and which
    visitors' payloads, were in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: list[str] = []
        self.most = 0
        self.overlapped_one_visitor = False

    def __call__(self, payload: dict[str, Any]) -> tuple[int, Any]:
        user = payload["context"]["user"]["id"]
        with self.lock:
            self.overlapped_one_visitor |= user in self.now
            self.now.append(user)
            self.most = max(self.most, len(self.now))
        time.sleep(0.02)
        with self.lock:
            self.now.remove(user)
        return tracardi_like(payload)


def test_senders_post_for_different_visitors_side_by_side_and_one_visitor_in_order(
    make_background: Any,
) -> None:
    responder = InFlight()
    transport = CapturingTransport(responder)
    tracker, _ = make_background(transport, batch_size=5, senders=3)
    people = [Subject(user_id=f"u{n}") for n in range(6)]
    sent = {person.user_id: [] for person in people}
    for n in range(120):
        person = people[n % 6]
        sent[person.user_id].append(tracker.track(Event("x", {"n": n}, event_subject=person)))
    assert tracker.flush(10) == 0
    assert responder.most == 3
    assert not responder.overlapped_one_visitor
    for user, ids in sent.items():
        arrived = [
            event["id"]
            for payload in transport.payloads
            if payload["context"]["user"]["id"] == user
            for event in payload["events"]
        ]
        assert arrived == ids


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest", "block"])
def test_a_full_queue_drops_by_policy_and_reports_every_drop(
    make_background: Any, policy: str
) -> None:
    gate = Gate()
    failures = Failures()
    transport = CapturingTransport(gate)
    tracker, emitter = make_background(
        transport,
        batch_size=1,
        max_queue=5,
        on_full=policy,
        block_timeout=0.05,
        on_failure=failures,
    )
    ids = [tracker.track(Event("x", {"n": n})) for n in range(1)]
    assert gate.waiting.wait(5)  # the worker holds event 0 in flight
    ids += [tracker.track(Event("x", {"n": n})) for n in range(1, 11)]
    stats = emitter.stats()
    assert stats.dropped == 6  # max_queue counts every event held: 1 in flight + 4 queued
    assert all(isinstance(error, QueueFullError) for _, error in failures.reports)
    gate.open.set()
    assert tracker.flush(5) == 0
    delivered = [event["id"] for event in transport.events]
    if policy != "drop_oldest":  # block gives up after block_timeout: the newest go
        assert failures.event_ids == ids[5:]
    else:  # the oldest still queued go; how many the worker already took is timing
        assert len(failures.event_ids) == 6
        assert failures.event_ids == sorted(failures.event_ids, key=ids.index)
        assert ids[0] == delivered[0]
        assert ids[-1] == delivered[-1]
    assert sorted(delivered + failures.event_ids) == sorted(ids)


def test_callers_blocked_at_a_full_queue_still_send_payloads_of_many_events(
    make_background: Any,
) -> None:
    def slow(payload: dict[str, Any]) -> tuple[int, Any]:
        time.sleep(0.002)  # a server's time: callers wake as each payload is answered
        return tracardi_like(payload)

    transport = CapturingTransport(slow)
    tracker, emitter = make_background(
        transport, batch_size=1000, max_queue=100, on_full="block", flush_interval=60
    )
    ids = track_for_ten_visitors(tracker)  # ten times the queue's bound
    assert tracker.flush(5) == 0
    assert sorted(event["id"] for event in transport.events) == sorted(ids)
    assert emitter.stats().dropped == 0
    # the fullest buffers go when the queue is full (a quarter of the bound at a time),
    # not every buffer at every blocked event, which made payloads of one event each
    assert len(transport.payloads) <= len(ids) // 5


def test_retryable_failures_are_retried_until_they_pass(make_background: Any) -> None:
    calls = {"n": 0}

    def flaky(payload: dict[str, Any]) -> tuple[int, Any]:
        calls["n"] += 1
        return (503, {"detail": "down"}) if calls["n"] <= 3 else tracardi_like(payload)

    transport = CapturingTransport(flaky)
    tracker, emitter = make_background(transport)
    tracker.track(Event("x"))
    assert tracker.flush(5) == 0
    assert emitter.stats().retried == 3
    assert emitter.stats().sent == 1


def test_a_rejected_payload_is_reported_and_not_retried(make_background: Any) -> None:
    failures = Failures()
    transport = CapturingTransport(lambda payload: (422, {"detail": [{"loc": [], "msg": "bad"}]}))
    tracker, emitter = make_background(transport, on_failure=failures)
    event_id = tracker.track(Event("x"))
    assert tracker.flush(5) == 0
    ((ids, error),) = failures.reports
    assert ids == [event_id]
    assert isinstance(error, PayloadRejectedError)
    assert len(transport.requests) == 1
    assert emitter.stats().failed == 1


def test_reports_name_each_event_by_its_own_id_however_it_is_written(
    make_background: Any,
) -> None:
    # what waits keeps no id beside the event's JSON: the ids are read back from it
    failures = Failures()
    transport = CapturingTransport(lambda payload: (422, {"detail": [{"loc": [], "msg": "bad"}]}))
    tracker, _ = make_background(transport, on_failure=failures)
    given = ["plain-1", "zażółć", 'a "quoted" \\ id', "line\nbreak", "x" * 64]
    for event_id in given:
        tracker.track(Event("x", event_id=event_id))
    assert tracker.flush(5) == 0
    ((ids, error),) = failures.reports
    assert ids == given
    assert list(error.event_ids) == given


def test_flush_returns_by_its_deadline_with_the_unsent_count(make_background: Any) -> None:
    gate = Gate()
    tracker, _ = make_background(CapturingTransport(gate), batch_size=5)
    for n in range(12):
        tracker.track(Event("x", {"n": n}))
    started = time.monotonic()
    assert tracker.flush(0.3) == 12
    assert time.monotonic() - started < 2
    gate.open.set()


def test_close_against_a_dead_server_returns_by_its_deadline_and_reports_the_unsent(
    make_background: Any,
) -> None:
    failures = Failures()
    dead = CapturingTransport(lambda payload: (503, {"detail": "down"}))
    tracker, emitter = make_background(dead, batch_size=5, on_failure=failures)
    ids = [tracker.track(Event("x", {"n": n})) for n in range(12)]
    started = time.monotonic()
    unsent = tracker.close(0.3)
    elapsed = time.monotonic() - started
    assert unsent == 12
    assert elapsed < 2
    deadline = time.monotonic() + 5
    while len(failures.event_ids) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(failures.event_ids) == sorted(ids)
    assert all(isinstance(error, UndeliveredError) for _, error in failures.reports)
    assert emitter.stats().failed == 12
    assert tracker.close() == 0


def test_many_threads_and_visitors_never_mix_ids(make_background: Any) -> None:
    transport = CapturingTransport()
    tracker, _ = make_background(transport, batch_size=200)
    visitors = [Subject(user_id=f"user-{n}") for n in range(100)]

    def work(thread: int) -> None:
        for n in range(1000):
            visitor = visitors[(thread * 1000 + n) % 100]
            tracker.track(Event("x", {"user": visitor.user_id}, event_subject=visitor))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.flush(20) == 0
    sessions: dict[str, set[str]] = {}
    profiles: dict[str, set[str]] = {}
    count = 0
    for payload in transport.payloads:
        user = payload["context"]["user"]["id"]
        for event in payload["events"]:
            count += 1
            assert event["properties"]["user"] == user
        sessions.setdefault(user, set()).add(payload["session"]["id"])
        if "profile" in payload:
            profiles.setdefault(user, set()).add(payload["profile"]["id"])
    assert count == 16_000
    assert all(len(ids) == 1 for ids in sessions.values())
    assert all(len(ids) == 1 for ids in profiles.values())
    assert len({next(iter(ids)) for ids in sessions.values()}) == 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_sends_its_own_events_once_and_not_the_parents(
    make_background: Any,
) -> None:
    gate = Gate()
    transport = CapturingTransport(gate)
    tracker, _ = make_background(transport, batch_size=100)
    tracker.track(Event("parent-before-fork"))
    tracker.emitter.flush(0)  # wake the worker now
    assert gate.waiting.wait(5)  # the parent's payload is in flight, held by the gate
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its transport copy records into its own memory
        try:
            gate.open.set()
            before = len(transport.requests)  # the parent's in-flight request is in the copy
            tracker.track(Event("child"))
            unsent = tracker.flush(5)
            types = [e["type"] for r in transport.requests[before:] for e in r.payload["events"]]
            os.write(write_end, f"{unsent}|{','.join(types)}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = os.read(read_end, 1000).decode()
    os.close(read_end)
    assert status == 0
    assert report == "0|child"
    gate.open.set()
    assert tracker.flush(5) == 0
    assert [event["type"] for event in transport.events] == ["parent-before-fork"]


def test_envelopes_given_to_callbacks_name_their_events(make_background: Any) -> None:
    seen: list[Envelope] = []
    tracker, _ = make_background(
        CapturingTransport(), on_success=lambda events, response: seen.extend(events)
    )
    event_id = tracker.track(Event("x"))
    tracker.flush(5)
    assert [envelope.event_id for envelope in seen] == [event_id]


def test_block_never_stalls_an_event_loop_it_drops_and_reports_instead(
    make_background: Any,
) -> None:
    import asyncio

    gate = Gate()
    failures = Failures()
    tracker, emitter = make_background(
        CapturingTransport(gate),
        batch_size=1,
        max_queue=2,
        on_full="block",
        block_timeout=5.0,
        on_failure=failures,
    )

    async def handler() -> float:
        tracker.track(Event("x"))
        await asyncio.to_thread(gate.waiting.wait, 5)
        started = time.monotonic()
        for _ in range(5):
            tracker.track(Event("x"))
        return time.monotonic() - started

    took = asyncio.run(handler())
    assert took < 1.0  # five 5-second blocks would have taken 25 s
    assert emitter.stats().dropped == 4
    assert len(failures.reports) == 4
    gate.open.set()


def test_after_close_no_new_request_starts_and_the_rest_is_reported(
    make_background: Any,
) -> None:
    def slow_failure(payload: dict[str, Any]) -> tuple[int, Any]:
        time.sleep(0.2)
        return 503, {"detail": "down"}

    failures = Failures()
    transport = CapturingTransport(slow_failure)
    tracker, _ = make_background(transport, on_failure=failures)
    ids = [tracker.track(Event("x", event_subject=Subject(user_id=f"u{n}"))) for n in range(5)]
    tracker.emitter.flush(0)  # five visitors: five payloads, sent one after another
    tracker.close(0.05)
    deadline = time.monotonic() + 5
    while len(failures.event_ids) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(failures.event_ids) == sorted(ids)
    assert len(transport.requests) <= 2  # the one in flight at close, at most one more


def test_a_visitor_whose_subject_changes_keeps_its_order_across_payloads(
    make_background: Any,
) -> None:
    transport = CapturingTransport()
    tracker, _ = make_background(transport, batch_size=100)
    desktop = Subject(user_id="u1", useragent="Desktop/1.0")
    phone = Subject(user_id="u1", useragent="Phone/2.0")
    ids = [
        tracker.track(Event("x", {"n": n}, event_subject=desktop if n % 5 < 2 else phone))
        for n in range(30)
    ]
    assert tracker.flush(5) == 0
    assert [event["id"] for event in transport.events] == ids
    agent_of = {
        event["id"]: payload["context"]["browser"]["local"]["browser"]["userAgent"]
        for payload in transport.payloads
        for event in payload["events"]
    }
    assert [agent_of[event_id] for event_id in ids] == [
        "Desktop/1.0" if n % 5 < 2 else "Phone/2.0" for n in range(30)
    ]
    assert len({payload["session"]["id"] for payload in transport.payloads}) == 1


def test_an_event_that_cannot_be_encoded_is_reported_alone_and_the_rest_go(
    make_background: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracardi_tracker import _worker

    encode = _worker.encode_event

    def flaky(event: Any, event_id: str, tags: tuple[str, ...] = ()) -> bytes:
        if event.properties == {"n": 3}:
            raise RuntimeError("a conversion failed")
        return encode(event, event_id, tags)

    monkeypatch.setattr(_worker, "encode_event", flaky)
    failures = Failures()
    transport = CapturingTransport()
    tracker, emitter = make_background(transport, batch_size=3, on_failure=failures)
    ids = [tracker.track(Event("x", {"n": n})) for n in range(6)]
    assert tracker.flush(5) == 0
    assert failures.event_ids == [ids[3]]
    assert "could not be encoded" in str(failures.reports[0][1])
    assert [event["id"] for event in transport.events] == ids[:3] + ids[4:]
    assert emitter.stats().failed == 1


def test_a_subclass_that_replaces_emit_sees_every_event() -> None:
    seen: list[str] = []

    class Logging(BackgroundEmitter):
        def emit(self, envelope: Envelope) -> None:
            seen.append(envelope.event_id)
            super().emit(envelope)

    transport = CapturingTransport()
    emitter = Logging(transport=transport, flush_interval=0.01, retry=FAST_RETRY)
    tracker = Tracker("http://t.example", "src", emitter=emitter)
    ids = [tracker.track(Event("x", {"n": n})) for n in range(5)]
    assert tracker.close(5) == 0
    assert seen == ids
    assert [event["id"] for event in transport.events] == ids
