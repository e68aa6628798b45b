"""The Flask extension, through Flask's test client."""

from __future__ import annotations

from collections.abc import Callable

import pytest

flask = pytest.importorskip("flask")

from web_helpers import PROFILE, SESSION  # noqa: E402

from tracardi_tracker import ConfigurationError, Event, Tracker  # noqa: E402
from tracardi_tracker._capture import CapturingTransport  # noqa: E402
from tracardi_tracker.collector import Collector  # noqa: E402
from tracardi_tracker.web.flask import Tracardi  # noqa: E402


def make_app(tracardi: Tracardi) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/")
    def home() -> str:
        return "home"

    @app.post("/cart")
    def cart() -> str:
        tracardi.tracker.track(Event("Add To Cart", {"sku": flask.request.form["sku"]}))
        return "added"

    @app.get("/static/site.css")
    def css() -> str:
        return "body {}"

    return app


def test_the_extension_tracks_each_visitor_and_keeps_the_ids_in_cookies(
    make_tracker: Callable[..., Tracker], collector: Collector
) -> None:
    tracker = make_tracker(collector, sync=True)
    tracardi = Tracardi()
    app = make_app(tracardi)
    tracardi.init_app(app, tracker)
    client = app.test_client()

    first = client.get("/")
    session = client.get_cookie(SESSION)
    profile = client.get_cookie(PROFILE)
    client.post("/cart", data={"sku": "A1"})
    client.get("/static/site.css")

    assert first.status_code == 200
    assert session is not None
    assert profile is not None
    assert (session.http_only, profile.http_only) == (True, True)
    expected = [
        ("page-view", profile.value, session.value),
        ("add-to-cart", profile.value, session.value),
    ]
    assert expected == [(e.type, e.profile_id, e.session_id) for e in collector.events()]
    assert tracker is app.extensions["tracardi"]


def test_the_tracker_and_settings_can_come_from_the_app_config(
    transport: CapturingTransport,
) -> None:
    tracardi = Tracardi()
    app = make_app(tracardi)
    app.config.update(
        TRACARDI_ENDPOINT="http://tracardi.test:8686",
        TRACARDI_SOURCE_ID="flask-source",
        TRACARDI_WEB={"session_cookie": "sid", "page_views": False},
    )
    tracardi.init_app(app)
    with app.app_context():
        tracker = tracardi.tracker
    try:
        response = app.test_client().get("/")
        assert (tracker.url, tracker.source_id) == (
            "http://tracardi.test:8686/track",
            "flask-source",
        )
        assert "sid=" in response.headers["Set-Cookie"]
    finally:
        tracker.close(0)


def test_the_extension_needs_a_tracker_or_config() -> None:
    with pytest.raises(ConfigurationError, match="TRACARDI_ENDPOINT"):
        Tracardi(flask.Flask(__name__))
    with pytest.raises(ConfigurationError, match="init_app"):
        _ = Tracardi().tracker
