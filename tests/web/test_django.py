"""The Django middleware, sync and async, through Django's test clients."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Callable, Iterator

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from web_helpers import PROFILE, SESSION  # noqa: E402

from tracardi_tracker import Event, Tracker  # noqa: E402
from tracardi_tracker.collector import Collector  # noqa: E402
from tracardi_tracker.web.django import TracardiMiddleware, tracker_from_settings  # noqa: E402

URLCONF = "tracardi_tracker_web_test_urls"
current: dict[str, Tracker] = {}


def sync_view(request: HttpRequest) -> HttpResponse:
    current["tracker"].track(Event("Viewed", {"how": "sync"}))
    return HttpResponse("ok")


async def async_view(request: HttpRequest) -> HttpResponse:
    current["tracker"].track(Event("Viewed", {"how": "async"}))
    return HttpResponse("ok")


@pytest.fixture(scope="module", autouse=True)
def django_settings() -> Iterator[None]:
    urls = types.ModuleType(URLCONF)
    urls.urlpatterns = [path("sync", sync_view), path("async", async_view)]  # type: ignore[attr-defined]
    sys.modules[URLCONF] = urls
    if not settings.configured:
        settings.configure(
            SECRET_KEY="test",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=URLCONF,
            MIDDLEWARE=["tracardi_tracker.web.django.TracardiMiddleware"],
        )
        django.setup()
    yield
    del sys.modules[URLCONF]


@pytest.fixture
def tracker(make_tracker: Callable[..., Tracker], collector: Collector) -> Tracker:
    tracker = make_tracker(collector, sync=True)
    current["tracker"] = tracker
    return tracker


def test_sync_views_are_tracked_for_the_visitor_and_get_cookies(
    tracker: Tracker, collector: Collector
) -> None:
    with override_settings(TRACARDI_TRACKER=tracker):
        client = Client()
        first = client.get("/sync")
        second = client.get("/sync")

    session, profile = first.cookies[SESSION], first.cookies[PROFILE]
    assert (session["httponly"], session["samesite"], session["max-age"]) == (True, "Lax", 1800)
    assert session.value == second.cookies[SESSION].value
    events = collector.events()
    assert [(profile.value, session.value)] * 4 == [(e.profile_id, e.session_id) for e in events]
    assert [e.type for e in events] == ["viewed", "page-view"] * 2


def test_async_views_are_tracked_for_the_visitor_and_get_cookies(
    tracker: Tracker, collector: Collector
) -> None:
    async def visit() -> tuple[str, str]:
        client = AsyncClient()
        first = await client.get("/async")
        cookies = {SESSION: first.cookies[SESSION].value, PROFILE: first.cookies[PROFILE].value}
        client.cookies.load(cookies)
        second = await client.get("/async")
        assert PROFILE not in second.cookies  # known and unchanged
        return cookies[SESSION], cookies[PROFILE]

    with override_settings(TRACARDI_TRACKER=tracker):
        session, profile = asyncio.run(visit())

    events = collector.events()
    assert [(profile, session)] * 4 == [(e.profile_id, e.session_id) for e in events]
    assert {"async"} == {e.properties.get("how") for e in events if e.type == "viewed"}


def test_the_tracker_can_be_named_by_a_dotted_path_or_made_from_settings() -> None:
    module = types.ModuleType("tracardi_tracker_web_test_tracking")
    module.tracker = Tracker("http://a.test", "s1")  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        with override_settings(TRACARDI_TRACKER=f"{module.__name__}.tracker"):
            assert tracker_from_settings() is module.tracker
        with override_settings(TRACARDI_ENDPOINT="http://b.test", TRACARDI_SOURCE_ID="s2"):
            made = tracker_from_settings()
            assert (made.url, made.source_id) == ("http://b.test/track", "s2")
            assert tracker_from_settings() is made  # one per process, not per handler
        with override_settings(
            TRACARDI_WEB={"profile_cookie": "pid"}, TRACARDI_TRACKER=module.tracker
        ):
            middleware = TracardiMiddleware(lambda request: HttpResponse())
            assert middleware.config.profile_cookie == "pid"
    finally:
        module.tracker.close(0)
        del sys.modules[module.__name__]
