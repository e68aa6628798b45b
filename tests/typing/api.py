"""Type-checked by mypy (not run): the public API used the way the README shows it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from tracardi_tracker import (
    DeliveryError,
    Envelope,
    Event,
    Identity,
    Options,
    PagePing,
    PageView,
    RetryPolicy,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    SyncEmitter,
    Time,
    Tracker,
    TrackResponse,
)


def on_success(events: Sequence[Envelope], response: TrackResponse) -> None:
    profile: str | None = response.profile_id
    del events, profile


def on_failure(events: Sequence[Envelope], error: DeliveryError) -> None:
    ids: tuple[str, ...] = error.event_ids
    del events, ids


def use() -> None:
    emitter = SyncEmitter(
        batch_size=10,
        timeout=5.0,
        retry=RetryPolicy(attempts=3),
        on_success=on_success,
        on_failure=on_failure,
    )
    subject = Subject().set_user_id("1234").set_platform("srv").set_lang("en")
    with Tracker(
        "http://localhost:8686",
        "source-id",
        emitter=emitter,
        subject=subject,
        namespace="web",
        app_id="shop",
        options=Options(save_session=False),
        tags=["server"],
        session_timeout=timedelta(minutes=10),
    ) as tracker:
        when = Time(create=datetime(2023, 1, 1, tzinfo=timezone.utc), insert="2023-01-01T00:00:01Z")
        event_id: str = tracker.track(PageView("https://a.example/", "Home", time=when))
        tracker.track(PagePing("https://a.example/", min_x=0, max_x=1, min_y=0, max_y=1))
        tracker.track(ScreenView("s1", "Home", transition_type="push"))
        tracker.track(StructuredEvent("shop", "buy", value=9.5, true_timestamp=1672531200000))
        tracker.track(SelfDescribing(SelfDescribingJson("iglu:com.acme/x/jsonschema/1-0-0", {})))
        tracker.track(Event("Add To Cart", {"sku": "A1"}, tags=["cart"]))
        identity: Identity = tracker.identity(Subject(session_id="cookie"))
        profile: str | None = tracker.profile_id
        session: str = tracker.new_session()
        unsent: int = tracker.flush(timeout=1.0)
        del event_id, identity, profile, session, unsent
