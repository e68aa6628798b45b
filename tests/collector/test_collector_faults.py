"""Faults on demand: outages, failures, throttling, latency, resets, refused connections."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import pytest
import requests
from collector_helpers import event, payload, send

from tracardi_tracker import cli
from tracardi_tracker.collector import Collector, Faults


def _statuses(collector: Collector, count: int) -> list[int]:
    return [send(collector, payload()).status_code for _ in range(count)]


def _seconds_until_accepted(collector: Collector, started: float, limit: float = 3.0) -> float:
    """Retry ``/track`` until it answers 200; how long after ``started`` that happened."""
    while time.monotonic() - started < limit:
        try:
            if send(collector, payload()).status_code == 200:
                return time.monotonic() - started
        except requests.ConnectionError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"/track did not recover within {limit}s")


def test_outage_answers_503_for_its_window_and_stores_nothing(
    tracardi_collector: Collector,
) -> None:
    started = time.monotonic()
    tracardi_collector.outage(0.3)
    during = send(tracardi_collector, payload())
    stored_during = len(tracardi_collector.events())

    recovered_after = _seconds_until_accepted(tracardi_collector, started)

    expected = (503, {"detail": "Service Unavailable"}, "outage", 0, True, 1, [])
    actual = (
        during.status_code,
        during.json(),
        during.headers["x-collector-fault"],
        stored_during,
        recovered_after >= 0.3,
        len(tracardi_collector.events()),
        tracardi_collector.bad(),
    )
    assert expected == actual


def test_fail_next_fails_exactly_that_many_requests(tracardi_collector: Collector) -> None:
    tracardi_collector.fail_next(2, status=500)

    statuses = _statuses(tracardi_collector, 3)

    expected = ([500, 500, 200], 1)
    assert expected == (statuses, len(tracardi_collector.events()))


def test_fail_rate_with_a_seed_is_repeatable(
    tracardi_collector_factory: Callable[..., Collector],
) -> None:
    faults = Faults(fail_rate=0.5, seed=42)
    first = tracardi_collector_factory(faults=faults)
    second = tracardi_collector_factory(faults=faults)

    a, b = _statuses(first, 20), _statuses(second, 20)

    expected = (a, True, a.count(200))
    assert expected == (b, 0 < a.count(503) < 20, len(first.events()))


def test_throttle_answers_429_with_retry_after(tracardi_collector: Collector) -> None:
    tracardi_collector.throttle(count=1, retry_after=7)

    throttled = send(tracardi_collector, payload())
    after = send(tracardi_collector, payload())

    expected = (429, "7", {"detail": "Too Many Requests"}, 200)
    actual = (
        throttled.status_code,
        throttled.headers["retry-after"],
        throttled.json(),
        after.status_code,
    )
    assert expected == actual


def test_throttle_window_ends(tracardi_collector: Collector) -> None:
    started = time.monotonic()
    tracardi_collector.throttle(0.2)
    during = send(tracardi_collector, payload()).status_code

    recovered_after = _seconds_until_accepted(tracardi_collector, started)

    expected = (429, True)
    assert expected == (during, recovered_after >= 0.2)


def test_latency_delays_answers_but_still_stores(tracardi_collector: Collector) -> None:
    tracardi_collector.set_faults(latency_seconds=0.2)

    started = time.perf_counter()
    response = send(tracardi_collector, payload())
    elapsed = time.perf_counter() - started

    expected = (200, True, 1)
    assert expected == (response.status_code, elapsed >= 0.2, len(tracardi_collector.events()))


def test_reset_next_drops_the_connection_without_storing(tracardi_collector: Collector) -> None:
    tracardi_collector.set_faults(reset_next=1)

    with pytest.raises(requests.ConnectionError):
        send(tracardi_collector, payload())
    after = send(tracardi_collector, payload(event(id="after")))

    expected = (200, ["after"])
    assert expected == (after.status_code, [e.id for e in tracardi_collector.events()])


def test_refused_connections_come_back_on_the_same_port(tracardi_collector: Collector) -> None:
    port = tracardi_collector.port
    tracardi_collector.refuse_connections(0.3)

    with pytest.raises(requests.ConnectionError):
        send(tracardi_collector, payload())
    time.sleep(0.4)
    after = send(tracardi_collector, payload())

    expected = (port, 200, 1)
    assert expected == (
        tracardi_collector.port,
        after.status_code,
        len(tracardi_collector.events()),
    )


def test_refusing_resets_open_keep_alive_connections(tracardi_collector: Collector) -> None:
    with requests.Session() as session:
        assert send(tracardi_collector, payload(), session=session).status_code == 200
        tracardi_collector.refuse_connections(0.3)

        with pytest.raises(requests.ConnectionError):
            send(tracardi_collector, payload(), session=session)


def test_faults_do_not_touch_the_inspection_api(tracardi_collector: Collector) -> None:
    tracardi_collector.outage(5)

    response = requests.get(tracardi_collector.url + "/micro/all", timeout=5)

    expected = (200, {"total": 0, "good": 0, "bad": 0})
    assert expected == (response.status_code, response.json())


def test_faults_are_set_shown_and_cleared_over_http(tracardi_collector: Collector) -> None:
    url = tracardi_collector.url + "/micro/faults"

    set_answer = requests.post(url, json={"fail_next": 1, "status": 502}, timeout=5).json()
    failed = send(tracardi_collector, payload()).status_code
    shown = requests.get(url, timeout=5).json()
    requests.delete(url, timeout=5)

    expected = (1, 502, {"delayed": 0, "reset": 0, "failed": 1, "throttled": 0}, Faults())
    actual = (
        set_answer["remaining"]["fail_next"],
        failed,
        shown["injected"],
        tracardi_collector.faults,
    )
    assert expected == actual


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"outage": 1}, "unknown fault settings: outage"),
        ({"fail_rate": 2}, "fail_rate must be between 0 and 1"),
        ({"status": 200}, "status must be an HTTP error status"),
        ({"latency_seconds": "1"}, "latency_seconds must be a number"),
    ],
)
def test_invalid_fault_settings_are_a_400(
    tracardi_collector: Collector, body: dict[str, object], message: str
) -> None:
    response = requests.post(tracardi_collector.url + "/micro/faults", json=body, timeout=5)

    expected = (400, True)
    assert expected == (response.status_code, response.json()["detail"].startswith(message))


def test_start_up_faults_apply_from_the_start(
    tracardi_collector_factory: Callable[..., Collector],
) -> None:
    collector = tracardi_collector_factory(faults=Faults(fail_next=1))

    assert _statuses(collector, 2) == [503, 200]


def test_command_line_fault_flags_make_the_same_faults() -> None:
    parser = cli._build_parser()
    argv = ["collector", "--outage", "0.5", "--fail-rate", "0.1", "--seed", "3", "--throttle-next",
            "2", "--retry-after", "4", "--latency", "0.01", "--refuse", "1", "--reset-next", "1",
            "--fail-next", "2", "--fail-status", "500", "--throttle", "2"]  # fmt: skip

    args: argparse.Namespace = parser.parse_args(argv)

    expected = Faults(
        outage_seconds=0.5,
        fail_rate=0.1,
        seed=3,
        throttle_next=2,
        retry_after=4,
        latency_seconds=0.01,
        refuse_seconds=1,
        reset_next=1,
        fail_next=2,
        status=500,
        throttle_seconds=2,
    )
    assert expected == cli._faults_from(args)


def test_refusing_can_be_asked_for_over_http(tracardi_collector: Collector) -> None:
    started = time.monotonic()

    answer = requests.post(
        tracardi_collector.url + "/micro/faults", json={"refuse_seconds": 0.3}, timeout=5
    )
    with pytest.raises(requests.ConnectionError, match="Connection refused"):
        send(tracardi_collector, payload())
    recovered_after = _seconds_until_accepted(tracardi_collector, started)

    expected = (200, 0.3, True)
    actual = (
        answer.status_code,
        answer.json()["settings"]["refuse_seconds"],
        recovered_after >= 0.3,
    )
    assert expected == actual


def test_clearing_faults_ends_a_refusal_at_once(tracardi_collector: Collector) -> None:
    tracardi_collector.refuse_connections(30)

    tracardi_collector.clear_faults()

    assert send(tracardi_collector, payload()).status_code == 200


def test_refusals_asked_for_in_quick_succession_leave_the_collector_serving(
    tracardi_collector: Collector,
) -> None:
    # a refusal that comes while the listening socket is being made again used to close
    # that socket under the server being set up: the collector then accepted connections
    # it never answered (a session's tests after one such test all timed out)
    answered = []
    for n in range(10):
        tracardi_collector.refuse_connections(30)
        tracardi_collector.clear_faults()  # listens again, at once...
        tracardi_collector.refuse_connections(0.05)  # ...and refuses before it is set up
        time.sleep(0.15)
        answered.append(send(tracardi_collector, payload(event(id=f"e{n}"))).status_code)

    assert answered == [200] * 10
    assert len(tracardi_collector.events()) == 10


def test_a_delayed_answer_does_not_hold_up_other_connections(
    tracardi_collector: Collector,
) -> None:
    tracardi_collector.set_faults(latency_seconds=0.5)
    delayed = threading.Thread(target=send, args=(tracardi_collector, payload()))
    delayed.start()
    time.sleep(0.05)

    started = time.perf_counter()
    answer = requests.get(tracardi_collector.url + "/micro/all", timeout=5)
    elapsed = time.perf_counter() - started
    delayed.join()

    assert (answer.status_code, elapsed < 0.3) == (200, True)
