"""The ASGI middleware: visitor scope per task, page views, cookies, a loop never blocked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from web_helpers import PROFILE, SESSION, call_asgi

from tracardi_tracker import Event, Subject, SyncEmitter, Tracker
from tracardi_tracker._capture import CapturingTransport, tracardi_like
from tracardi_tracker.collector import Collector
from tracardi_tracker.web import current_visit
from tracardi_tracker.web.asgi import ASGIApp, Message, Receive, Scope, Send, TracardiMiddleware


class Meeting:
    """Waits until ``parties`` tasks arrived (``asyncio.Barrier`` is 3.11+)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.all_here = asyncio.Event()

    async def wait(self) -> None:
        self.parties -= 1
        if self.parties <= 0:
            self.all_here.set()
        await asyncio.wait_for(self.all_here.wait(), 5)


def shop(tracker: Tracker, ready: Meeting | None = None) -> ASGIApp:
    """An ASGI app; ``/buy?X`` tracks an event, ``/missing`` is a 404."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "passed", "scope": scope["type"]})
            return
        if ready is not None:
            await ready.wait()  # every request is inside its scope at once
        status = 404 if scope["path"] == "/missing" else 200
        if scope["path"].startswith("/buy"):
            tracker.track(Event("Purchase", {"who": scope["query_string"].decode()}))
            await asyncio.sleep(0)  # let the other request's task run inside its scope
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_a_first_visit_gets_a_session_cookie_then_its_profile_cookie(
    make_tracker: Callable[..., Tracker], collector: Collector
) -> None:
    tracker = make_tracker(collector)
    app = TracardiMiddleware(shop(tracker), tracker)

    async def main() -> list[tuple[str | None, str | None]]:
        first = await call_asgi(app, "/")
        assert await tracker.aflush(5) == 0
        session = first.cookie(SESSION)
        second = await call_asgi(app, "/next", cookies={SESSION: session})
        third = await call_asgi(app, "/buy", query="x", cookies=second_cookies(second, session))
        assert await tracker.aflush(5) == 0
        return [(r.cookie(SESSION), r.cookie(PROFILE)) for r in (first, second, third)]

    def second_cookies(response: Any, session: str | None) -> dict[str, str | None]:
        return {SESSION: session, PROFILE: response.cookie(PROFILE)}

    (s1, p1), (s2, p2), (s3, p3) = asyncio.run(main())
    events = collector.events()
    profile = events[0].profile_id
    assert (s1, s1, s1) == (s1, s2, s3)
    assert (None, profile, None) == (p1, p2, p3)
    assert [(profile, s1)] * 4 == [(e.profile_id, e.session_id) for e in events]


def test_concurrent_tasks_are_each_tracked_for_their_own_visitor(
    make_tracker: Callable[..., Tracker], collector: Collector
) -> None:
    tracker = make_tracker(collector)
    names = ("alice", "bob")

    async def main() -> dict[str, str | None]:
        ready = Meeting(len(names))
        app = TracardiMiddleware(shop(tracker, ready), tracker)
        cookies: dict[str, dict[str, str | None]] = {name: {} for name in names}

        async def visit(name: str) -> None:
            for n in range(3):
                response = await call_asgi(
                    app, f"/buy/{name}/{n}", query=name, cookies=cookies[name]
                )
                cookies[name][SESSION] = response.cookie(SESSION)

        await asyncio.gather(*(visit(name) for name in names))
        assert await tracker.aflush(5) == 0
        return {name: cookies[name][SESSION] for name in names}

    sessions = asyncio.run(main())
    profiles = set()
    for name, session in sessions.items():
        events = collector.events(session=session)
        whose = {
            e.properties.get("who") or e.payload["context"]["page"]["path"].split("/")[2]
            for e in events
        }
        assert (6, {name}) == (len(events), whose)
        profiles |= {e.profile_id for e in events}
    assert len(profiles) == 2
    assert len(collector.events()) == 12


def test_a_sync_emitter_never_blocks_the_event_loop() -> None:
    def slow(payload: dict[str, Any]) -> tuple[int, Any]:
        time.sleep(0.3)  # Tracardi takes its time
        return tracardi_like(payload)

    transport = CapturingTransport(slow)
    tracker = Tracker("http://tracardi.test", "s", emitter=SyncEmitter(transport=transport))
    app = TracardiMiddleware(shop(tracker), tracker)

    async def main() -> tuple[int, str | None, str | None]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        response = await call_asgi(app, "/")
        done.set()
        await task
        session = response.cookie(SESSION)
        return (
            ticks,
            tracker.identity(Subject(session_id=session)).profile_id,
            response.cookie(PROFILE),
        )

    ticks, answered, profile = asyncio.run(main())
    tracker.close()
    assert ticks >= 10  # the loop kept running while the page view was sent
    # Answered before the response started: the profile cookie is on the first response.
    assert (True, answered) == (answered is not None, profile)


def test_the_scope_holds_only_while_the_request_runs(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    seen: list[str | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        visit = current_visit()
        seen.append(None if visit is None else visit.session_id)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        await call_asgi(TracardiMiddleware(app, tracker), "/", cookies={SESSION: "s-1"})
        seen.append(None if current_visit() is None else "leaked")

    asyncio.run(main())
    assert seen == ["s-1", None]


def test_websocket_and_lifespan_pass_through_untouched(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app({"type": "lifespan"}, receive, send)
        await app({"type": "websocket", "path": "/ws", "headers": []}, receive, send)

    asyncio.run(main())
    assert sent == [
        {"type": "passed", "scope": "lifespan"},
        {"type": "passed", "scope": "websocket"},
    ]
    assert transport.payloads == []


def test_page_views_follow_the_status_and_the_rules(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker, exclude=["/healthz"])

    async def main() -> list[list[str]]:
        responses = [
            await call_asgi(app, "/missing"),
            await call_asgi(app, "/healthz"),
            await call_asgi(app, "/", method="POST"),
            await call_asgi(app, "/a b", query="q=1", scheme="https"),
        ]
        return [list(response.cookies) for response in responses]

    cookies = asyncio.run(main())
    assert cookies == [[SESSION], [], [SESSION], [SESSION, PROFILE]]
    (payload,) = transport.payloads
    assert payload["events"][0]["context"]["page"]["url"] == "https://shop.example/a%20b?q=1"
