"""Visitor scopes: per thread and per asyncio task, never leaking between requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from tracardi_tracker import Event, Subject, SyncEmitter, Tracker
from tracardi_tracker._capture import CapturingTransport


def users(transport: CapturingTransport) -> list[tuple[str, str]]:
    return [
        (payload.get("context", {}).get("user", {}).get("id", "-"), event["properties"]["who"])
        for payload in transport.payloads
        for event in payload["events"]
    ]


def test_track_inside_a_scope_is_for_the_scoped_visitor(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    alice = Subject(user_id="alice")
    with tracker.scope(alice):
        tracker.track(Event("x", {"who": "alice"}))
    tracker.track(Event("x", {"who": "-"}))
    assert users(transport) == [("alice", "alice"), ("-", "-")]
    assert tracker.identity(alice).profile_id is not None
    assert tracker.identity(alice).profile_id != tracker.profile_id


def test_the_event_subject_merges_over_the_scoped_one(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    with tracker.scope(Subject(user_id="alice", lang="en")):
        tracker.track(Event("x", {"who": "alice"}, event_subject=Subject(lang="pl")))
    context = transport.payloads[0]["context"]
    assert (context["user"]["id"], context["browser"]["local"]["browser"]["language"]) == (
        "alice",
        "pl",
    )


def test_concurrent_threads_each_track_for_their_own_visitor(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(emitter=SyncEmitter(transport=transport))
    barrier = threading.Barrier(2)

    def request(name: str) -> None:
        with tracker.scope(Subject(user_id=name)):
            barrier.wait(5)  # both scopes are open at once
            for _ in range(20):
                tracker.track(Event("x", {"who": name}))

    threads = [threading.Thread(target=request, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    pairs = users(transport)
    assert len(pairs) == 40
    assert all(user == who for user, who in pairs)


def test_concurrent_asyncio_tasks_each_track_for_their_own_visitor(
    tracker: Tracker, transport: CapturingTransport
) -> None:
    async def request(name: str) -> None:
        async with tracker.ascope(Subject(user_id=name)):
            for _ in range(20):
                tracker.track(Event("x", {"who": name}))
                await asyncio.sleep(0)  # let the other task run inside its own scope

    async def main() -> None:
        await asyncio.gather(request("alice"), request("bob"))
        assert await tracker.aflush(1) == 0

    asyncio.run(main())
    pairs = users(transport)
    assert len(pairs) == 40
    assert all(user == who for user, who in pairs)


def test_aclose_closes_the_tracker(tracker: Tracker) -> None:
    assert asyncio.run(tracker.aclose(1)) == 0
    assert tracker.close() == 0
