"""HTTP behaviour: headers, every status Tracardi answers, retries and their limits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from tracardi_tracker import (
    DeliveryError,
    Event,
    PayloadRejectedError,
    RetryPolicy,
    ServerError,
    SourceRejectedError,
    SyncEmitter,
    Tracker,
    TrackResponse,
    TransportError,
    __version__,
)
from tracardi_tracker._retry import RetryableServerError
from tracardi_tracker._transport import HttpTransport, retry_after

URL = "http://tracardi.test:8686/track"
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01, max_elapsed=5)
OK = {
    "task": "t-1",
    "ux": [],
    "response": {},
    "events": [],
    "profile": {"id": "p-1"},
    "session": {"id": "s-1"},
    "errors": [],
    "warnings": [],
}


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make(**emitter: Any) -> Tracker:
    """A tracker whose emitter sends through ``requests``, where ``responses`` intercepts
    it; the emitters' default (lean) transport is tested in tests/http."""
    emitter.setdefault("retry", FAST)
    emitter.setdefault("transport", HttpTransport())
    return Tracker("http://tracardi.test:8686/", "src", emitter=SyncEmitter(**emitter))


def test_requests_carry_json_type_our_user_agent_and_no_gzip(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(URL, json=OK)
    make().track(Event("a"))
    request = mocked.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    assert f"tracardi-tracker-python/{__version__}" == request.headers["User-Agent"]
    assert "Content-Encoding" not in request.headers
    assert "Authorization" not in request.headers
    assert json.loads(request.body or b"")["events"][0]["type"] == "a"


def test_a_timeout_is_always_set_and_tls_is_verified(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=OK)
    make().track(Event("a"))
    kwargs = mocked.calls[0].request.req_kwargs
    assert kwargs["timeout"] == 10.0
    assert kwargs["verify"] not in (False, None)  # True, or the CA bundle the machine names


def test_success_callback_gets_the_events_and_tracardis_answer(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(URL, json=OK)
    seen: list[tuple[list[str], TrackResponse]] = []
    tracker = make(
        on_success=lambda events, response: seen.append(([e.event_id for e in events], response))
    )
    event_id = tracker.track(Event("a"))
    ((ids, response),) = seen
    assert [event_id] == ids
    assert (
        response.profile_id,
        response.session_id,
        response.task,
        response.status,
    ) == ("p-1", "s-1", "t-1", 200)
    assert tracker.profile_id == "p-1"


def test_status_226_is_a_success(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={**OK, "errors": ["workflow failed"]}, status=226)
    tracker = make()
    tracker.track(Event("a"))
    assert tracker.profile_id == "p-1"


def test_a_null_body_is_a_success(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, body="null", content_type="application/json")
    tracker = make()
    tracker.track(Event("a"))
    assert tracker.profile_id is None


@pytest.mark.parametrize("status", [401, 406])
def test_rejected_source_raises_and_is_not_retried(
    mocked: responses.RequestsMock, status: int
) -> None:
    mocked.post(URL, json={"detail": "Invalid event source `src`."}, status=status)
    failures: list[DeliveryError] = []
    tracker = make(on_failure=lambda events, error: failures.append(error))
    with pytest.raises(SourceRejectedError) as raised:
        tracker.track(Event("a", event_id="e-1"))
    assert len(mocked.calls) == 1
    assert (status, ("e-1",)) == (raised.value.status, raised.value.event_ids)
    assert [raised.value] == failures


@pytest.mark.parametrize("status", [400, 422])
def test_rejected_payload_raises_with_the_servers_detail_and_is_not_retried(
    mocked: responses.RequestsMock, status: int
) -> None:
    detail = [{"type": "missing", "loc": ["body", "type"], "msg": "Field required"}]
    mocked.post(URL, json={"detail": detail}, status=status)
    with pytest.raises(PayloadRejectedError) as raised:
        make().track(Event("a"))
    assert len(mocked.calls) == 1
    assert detail == raised.value.detail
    assert "Field required" in str(raised.value)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_retryable_statuses_are_retried_then_succeed(
    mocked: responses.RequestsMock, status: int
) -> None:
    mocked.post(URL, json={"detail": "busy"}, status=status)
    mocked.post(URL, json={"detail": "busy"}, status=status)
    mocked.post(URL, json=OK)
    tracker = make()
    tracker.track(Event("a"))
    assert len(mocked.calls) == 3
    assert tracker.profile_id == "p-1"


def test_retries_are_bounded_then_the_server_error_is_raised(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(URL, json={"detail": "down"}, status=503)
    with pytest.raises(ServerError) as raised:
        make().track(Event("a", event_id="e-9"))
    assert len(mocked.calls) == 3
    assert (raised.value.status, raised.value.event_ids) == (503, ("e-9",))


def test_connection_errors_are_retried_then_raised(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(TransportError):
        make().track(Event("a"))
    assert len(mocked.calls) == 3


def test_timeouts_are_retried_then_raised(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, body=requests.ReadTimeout("slow"))
    mocked.post(URL, json=OK)
    tracker = make()
    tracker.track(Event("a"))
    assert len(mocked.calls) == 2


def test_an_unexpected_status_is_reported_not_retried(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"detail": "Not Found"}, status=404)
    with pytest.raises(DeliveryError, match="404"):
        make().track(Event("a"))
    assert len(mocked.calls) == 1


def test_retry_after_is_honoured(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"detail": "slow down"}, status=429, headers={"Retry-After": "0.3"})
    mocked.post(URL, json=OK)
    policy = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=5)
    started = time.monotonic()
    make(retry=policy).track(Event("a"))
    assert time.monotonic() - started >= 0.3


def test_retry_after_is_waited_out_beyond_max_wait_up_to_its_own_cap() -> None:
    policy = RetryPolicy(initial_wait=0.01, max_wait=2.0, max_retry_after=120.0)
    asked = RetryableServerError("busy", status=429, retry_after=60)
    too_long = RetryableServerError("busy", status=429, retry_after=3600)
    assert policy.wait_for(1, asked) == 60.0
    assert policy.wait_for(1, too_long) == 120.0
    assert all(0 <= policy.wait_for(n, None) <= 2.0 for n in range(1, 20))


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_a_stop_event_ends_the_backoff_at_once() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        stop.set()
        raise RetryableServerError("down", status=503, retry_after=30)

    started = time.monotonic()
    with pytest.raises(ServerError):
        RetryPolicy(attempts=5, max_wait=30).call(failing, stop_event=stop)
    assert time.monotonic() - started < 5
    assert len(calls) == 1


def test_retrying_stops_once_max_elapsed_has_passed_counting_the_first_try() -> None:
    calls: list[float] = []
    retried: list[BaseException] = []

    def failing() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(0.15)  # a slow first try uses up most of the budget
        raise RetryableServerError("down", status=503, retry_after=None)

    policy = RetryPolicy(attempts=1000, initial_wait=0.01, max_wait=0.01, max_elapsed=0.25)
    started = time.monotonic()
    with pytest.raises(ServerError):
        policy.call(failing, on_retry=retried.append)
    assert 0.25 <= time.monotonic() - started < 1.0
    assert len(calls) >= 2  # retried after the slow first try, then stopped by the time
    assert len(retried) == len(calls) - 1  # every retry is reported, none after the last


def test_a_callers_session_sends_json_headers_and_keeps_its_own_user_agent(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(URL, json=OK)
    plain, named = requests.Session(), requests.Session()
    named.headers["User-Agent"] = "shop-backend/7"
    named.headers["X-Team"] = "growth"
    for session in (plain, named):
        Tracker(URL.removesuffix("/track"), "src", emitter=SyncEmitter(session=session)).track(
            Event("a")
        )
    sent = [call.request.headers for call in mocked.calls]
    assert all(h["Content-Type"] == "application/json" for h in sent)
    assert all(h["Accept"] == "application/json" for h in sent)
    assert sent[0]["User-Agent"] == f"tracardi-tracker-python/{__version__}"
    assert (sent[1]["User-Agent"], sent[1]["X-Team"]) == ("shop-backend/7", "growth")
