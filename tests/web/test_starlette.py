"""Starlette and FastAPI: ``add_middleware``, sync and async handlers, the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

fastapi = pytest.importorskip("fastapi")

from web_helpers import PROFILE, SESSION, Response, call_asgi, lifespan  # noqa: E402

from tracardi_tracker import Event, Tracker, TrackerClosedError  # noqa: E402
from tracardi_tracker.collector import Collector  # noqa: E402
from tracardi_tracker.web.starlette import TracardiMiddleware  # noqa: E402


def make_app(tracker: Tracker) -> fastapi.FastAPI:
    @asynccontextmanager
    async def lifespan(app: fastapi.FastAPI) -> AsyncIterator[None]:
        yield
        await tracker.aclose()

    app = fastapi.FastAPI(lifespan=lifespan)
    app.add_middleware(TracardiMiddleware, tracker=tracker)

    @app.get("/async")
    async def in_the_loop() -> dict[str, str]:
        tracker.track(Event("Handled", {"how": "async"}))
        return {}

    @app.get("/sync")
    def in_a_thread() -> dict[str, str]:
        tracker.track(Event("Handled", {"how": "sync"}))
        return {}

    return app


def test_async_and_sync_handlers_track_for_the_visitor_and_the_lifespan_flushes(
    make_tracker: Callable[..., Tracker], collector: Collector
) -> None:
    tracker = make_tracker(collector)  # the background emitter, as in production

    app = make_app(tracker)

    async def serve() -> Response:
        async with lifespan(app):  # its shutdown's aclose() delivers everything
            first = await call_asgi(app, "/async")
            await call_asgi(app, "/sync", cookies={SESSION: first.cookie(SESSION)})
        return first

    first = asyncio.run(serve())
    session = first.cookie(SESSION)

    with pytest.raises(TrackerClosedError):  # the lifespan closed it
        tracker.track(Event("Late", {}))
    events = collector.events()
    assert {session} == {e.session_id for e in events}
    assert len({e.profile_id for e in events}) == 1
    assert [(e.type, e.properties.get("how")) for e in events] == [
        ("handled", "async"),
        ("page-view", None),
        ("handled", "sync"),
        ("page-view", None),
    ]
    assert PROFILE not in first.cookies  # background emitter: not known yet at the first answer
