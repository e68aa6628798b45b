"""The WSGI middleware: visitor scope per request, page views, cookies, first visits."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from web_helpers import BROWSER, PROFILE, SESSION, call_wsgi

from tracardi_tracker import Event, Subject, Tracker
from tracardi_tracker._capture import CapturingTransport
from tracardi_tracker.collector import Collector
from tracardi_tracker.web import WebConfig, current_visit
from tracardi_tracker.web.wsgi import TracardiMiddleware

WSGIApp = Callable[..., Iterable[bytes]]


def shop(tracker: Tracker, barrier: threading.Barrier | None = None) -> WSGIApp:
    """A WSGI app; ``/buy?sku=X`` tracks an event, ``/fail`` raises, ``/missing`` is a 404."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if barrier is not None:
            barrier.wait(5)  # every request is inside its scope at once
        if path == "/fail":
            raise RuntimeError("boom")
        if path == "/missing":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no"]
        if path.startswith("/buy"):
            tracker.track(Event("Purchase", {"who": environ.get("QUERY_STRING", "")}))
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<h1>ok</h1>"]

    return app


def test_a_first_visit_with_a_sync_emitter_gets_both_cookies_at_once(
    make_tracker: Callable[..., Tracker], collector: Collector
) -> None:
    tracker = make_tracker(collector, sync=True)
    app = TracardiMiddleware(shop(tracker), tracker)

    first = call_wsgi(app, "/")

    (event,) = collector.events()
    assert (event.profile_id, event.session_id) == (first.cookie(PROFILE), first.cookie(SESSION))
    assert event.profile_id is not None


def test_a_first_visit_with_the_background_emitter_gets_the_profile_cookie_next_time(
    make_tracker: Callable[..., Tracker], collector: Collector
) -> None:
    tracker = make_tracker(collector)
    app = TracardiMiddleware(shop(tracker), tracker)

    first = call_wsgi(app, "/")
    session = first.cookie(SESSION)
    assert first.cookie(PROFILE) is None  # Tracardi has not answered yet: no id to write
    assert tracker.flush(5) == 0
    (landing,) = collector.events()
    profile = landing.profile_id
    second = call_wsgi(app, "/products", cookies={SESSION: session})
    # The session cookie expired: only the profile cookie comes back.
    third = call_wsgi(app, "/later", cookies={PROFILE: second.cookie(PROFILE)})
    assert tracker.flush(5) == 0

    events = [
        (e.payload["context"]["page"]["path"], e.profile_id, e.session_id)
        for e in collector.events()
    ]
    new_session = third.cookie(SESSION)
    assert profile is not None
    assert new_session not in (None, session)
    assert profile == second.cookie(PROFILE)
    assert [
        ("/", profile, session),
        ("/products", profile, session),
        ("/later", profile, new_session),
    ] == events
    assert third.cookie(PROFILE) == profile  # re-set with the new session: a rolling year


def test_the_session_cookie_rolls_on_every_response_with_the_flags_of_the_js_tracker(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker)
    cookies = {SESSION: "s-1", PROFILE: "p-1"}

    responses = [call_wsgi(app, "/", cookies=cookies), call_wsgi(app, "/missing", cookies=cookies)]

    for response in responses:
        morsel = response.cookies[SESSION]
        flags = (morsel.value, morsel["max-age"], morsel["path"], morsel["httponly"])
        assert flags == ("s-1", "1800", "/", True)
        assert (morsel["samesite"], morsel["secure"]) == ("Lax", "")
        assert PROFILE not in response.cookies  # known and unchanged
    secure = call_wsgi(app, "/", https=True).cookies[SESSION]
    assert secure["secure"] is True


def test_the_request_context_reaches_the_payload(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker, trusted_proxies=["10.0.0.0/8"])

    call_wsgi(
        app,
        "/buy",
        query="sku=A1",
        headers={
            "Accept-Language": "pl-PL,pl;q=0.9",
            "Referer": "https://search.example/?q=shoes",
            "X-Forwarded-For": "192.0.2.44, 10.0.0.3",
            "X-Forwarded-Proto": "https",
        },
        cookies={SESSION: "s-7", PROFILE: "p-7"},
        remote_addr="10.0.0.2",
    )

    purchase, page_view = transport.requests
    context = page_view.payload["context"]["browser"]["local"]["browser"]
    page = page_view.payload["events"][0]["context"]["page"]
    assert (
        page_view.payload["session"]["id"],
        page_view.payload["profile"]["id"],
    ) == ("s-7", "p-7")
    assert (context["userAgent"], context["language"]) == (BROWSER, "pl-PL")
    assert page_view.headers["X-Forwarded-For"] == "192.0.2.44"
    assert page["url"] == "https://shop.example/buy?sku=A1"
    assert "search.example" in str(page["referer"])
    assert purchase.payload["session"]["id"] == "s-7"  # the app's own event: same visitor
    assert purchase.payload["events"][0]["properties"] == {"who": "sku=A1"}


def test_only_successful_gets_get_page_views_but_every_request_is_scoped(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker)
    cookies = {SESSION: "s-2"}

    call_wsgi(app, "/buy", method="POST", query="x", cookies=cookies)
    call_wsgi(app, "/missing", cookies=cookies)
    call_wsgi(app, "/", method="HEAD", cookies=cookies)

    sent = [(p["session"]["id"], p["events"][0]["type"]) for p in transport.payloads]
    assert sent == [("s-2", "purchase")]


def test_excluded_paths_and_bots_are_passed_through_untouched(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker, exclude=["/static/*", "/healthz"])

    responses = [
        call_wsgi(app, "/static/app.css"),
        call_wsgi(app, "/healthz"),
        call_wsgi(
            app, "/", headers={"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
        ),
    ]

    assert [list(response.cookies) for response in responses] == [[], [], []]
    assert transport.payloads == []


def test_page_views_can_be_switched_off_while_cookies_and_scope_stay(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker, config=WebConfig(page_views=False))

    response = call_wsgi(app, "/buy", query="b", cookies={SESSION: "s-3"})

    assert response.cookie(SESSION) == "s-3"
    assert [(p["session"]["id"], p["events"][0]["type"]) for p in transport.payloads] == [
        ("s-3", "purchase")
    ]


def test_a_streaming_body_tracks_in_scope_and_the_scope_ends_at_close(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    seen: list[str | None] = []

    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for n in range(2):
            tracker.track(Event("Chunk Sent", {"n": n}))
            visit = current_visit()
            seen.append(None if visit is None else visit.session_id)
            yield b"chunk"

    app = TracardiMiddleware(streaming, tracker, page_views=False)
    call_wsgi(app, "/download", cookies={SESSION: "s-4"})

    assert seen == ["s-4", "s-4"]
    assert [p["session"]["id"] for p in transport.payloads] == ["s-4", "s-4"]
    assert current_visit() is None


def test_an_error_in_the_app_propagates_and_closes_the_scope(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker)

    with pytest.raises(RuntimeError, match="boom"):
        call_wsgi(app, "/fail")

    assert current_visit() is None
    tracker.track(Event("Outside", {}))
    assert "session" in transport.payloads[-1]  # the tracker's own visitor again
    assert transport.payloads[-1]["session"]["id"] == tracker.session_id


def test_a_failing_tracker_never_breaks_the_response(
    make_tracker: Callable[..., Tracker],
    transport: CapturingTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker)
    tracker.close()

    with caplog.at_level(logging.WARNING, logger="tracardi_tracker.web"):
        response = call_wsgi(app, "/")

    assert (response.status, response.body) == (200, b"<h1>ok</h1>")
    assert "TrackerClosedError" in caplog.text


def test_concurrent_requests_in_threads_are_each_tracked_for_their_own_visitor(
    make_tracker: Callable[..., Tracker], collector: Collector
) -> None:
    tracker = make_tracker(collector)
    app = TracardiMiddleware(shop(tracker, threading.Barrier(2)), tracker)
    cookies: dict[str, dict[str, str | None]] = {"alice": {}, "bob": {}}

    def visit(name: str) -> None:
        for n in range(3):
            response = call_wsgi(app, f"/buy/{name}/{n}", query=name, cookies=cookies[name])
            cookies[name][SESSION] = response.cookie(SESSION)

    threads = [threading.Thread(target=visit, args=(name,)) for name in cookies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert tracker.flush(5) == 0

    for name in cookies:
        session = cookies[name][SESSION]
        events = collector.events(session=session)
        whose = {
            e.properties.get("who") or e.payload["context"]["page"]["path"].split("/")[2]
            for e in events
        }
        assert (6, {name}) == (len(events), whose)
        assert len({e.profile_id for e in events}) == 1
    profiles = {
        name: collector.events(session=c[SESSION])[0].profile_id for name, c in cookies.items()
    }
    assert profiles["alice"] != profiles["bob"]
    assert len(collector.events()) == 12


def test_a_response_never_closed_leaks_no_scope(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)
    app = TracardiMiddleware(shop(tracker), tracker)
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["HTTP_COOKIE"] = f"{SESSION}=s-5"

    result = app(environ, lambda status, headers, exc_info=None: None)
    assert list(result) == [b"<h1>ok</h1>"]
    del result  # as test clients do: never closed
    gc.collect()

    assert current_visit() is None
    tracker.track(Event("Outside", {}))
    assert transport.payloads[-1]["session"]["id"] != "s-5"


def test_a_view_can_name_the_logged_in_user_on_its_events(
    make_tracker: Callable[..., Tracker], transport: CapturingTransport
) -> None:
    tracker = make_tracker(transport=transport)

    def login(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        tracker.track(Event("Signed In", {}, event_subject=Subject(user_id="crm:42")))
        start_response("200 OK", [])
        return [b""]

    call_wsgi(
        TracardiMiddleware(login, tracker), "/login", cookies={SESSION: "s-6", PROFILE: "p-6"}
    )

    signed_in, page_view = transport.payloads
    assert (signed_in["session"]["id"], signed_in["profile"]["id"]) == ("s-6", "p-6")
    assert signed_in["context"]["user"]["id"] == "crm:42"
    assert "crm:42" in signed_in["profile"]["ids"]
    assert page_view["session"]["id"] == "s-6"
