"""The HTTP server: keep-alive, routes, inspection API, HTML page, life cycle, storage."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_helpers import SESSION, USER_AGENT, event, payload, send

from tracardi_tracker.collector import (
    Collector,
    CollectorConfigError,
    CollectorError,
    CollectorStartError,
    CollectorTimeoutError,
)


def _connection(collector: Collector) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(collector.host, collector.port, timeout=5)


def _post(conn: http.client.HTTPConnection, body: Any) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    conn.request("POST", "/track", json.dumps(body), headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_requests_share_one_keep_alive_connection(tracardi_collector: Collector) -> None:
    conn = _connection(tracardi_collector)
    first, _ = _post(conn, payload(event(id="e1")))
    sock = conn.sock

    second, _ = _post(conn, payload(event(id="e2")))

    expected = (200, 200, True, ["e1", "e2"])
    actual = (first, second, conn.sock is sock, [e.id for e in tracardi_collector.events()])
    conn.close()
    assert expected == actual


def test_requests_session_reuses_its_connection(tracardi_collector: Collector) -> None:
    with requests.Session() as session:
        statuses = [send(tracardi_collector, payload(), session=session).status_code for _ in "ab"]

    assert statuses == [200, 200]


def test_chunked_body_is_read(tracardi_collector: Collector) -> None:
    body = json.dumps(payload(event(id="chunked"))).encode()
    chunks = iter([body[:10], body[10:]])

    response = requests.post(
        tracardi_collector.track_url,
        data=chunks,
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        timeout=5,
    )

    expected = (200, ["chunked"])
    assert expected == (response.status_code, [e.id for e in tracardi_collector.events()])


def test_a_request_that_breaks_the_server_is_answered_500_and_the_next_one_is_served(
    tracardi_collector: Collector,
) -> None:
    # year 0 parses but no Python datetime holds it: Tracardi's pydantic raises a bare
    # ValueError there, which its server answers with a plain-text 500
    broken = payload(event(id="y0", time={"create": "0000-01-01T00:00:00Z"}))
    conn = _connection(tracardi_collector)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    conn.request("POST", "/track", json.dumps(broken), headers)
    response = conn.getresponse()
    answer = (response.status, response.getheader("Content-Type"), response.read())
    conn.close()
    conn = _connection(tracardi_collector)
    status, _ = _post(conn, payload(event(id="after")))
    conn.close()

    assert answer == (500, "text/plain; charset=utf-8", b"Internal Server Error")
    assert status == 200
    assert [e.id for e in tracardi_collector.events()] == ["after"]


def test_get_track_is_method_not_allowed(tracardi_collector: Collector) -> None:
    response = requests.get(tracardi_collector.track_url, timeout=5)

    expected = (405, {"detail": "Method Not Allowed"}, "POST")
    assert expected == (response.status_code, response.json(), response.headers["allow"])


def test_unknown_path_is_not_found(tracardi_collector: Collector) -> None:
    response = requests.get(tracardi_collector.url + "/nothing", timeout=5)

    expected = (404, {"detail": "Not Found"})
    assert expected == (response.status_code, response.json())


def test_every_answer_carries_a_process_time(tracardi_collector: Collector) -> None:
    response = send(tracardi_collector, payload())

    assert float(response.headers["x-process-time"]) >= 0


def test_micro_good_filters_by_type_and_profile(tracardi_collector: Collector) -> None:
    send(tracardi_collector, payload(event("Page View"), event("click"), profile={"id": "p1"}))
    send(tracardi_collector, payload(event("page-view"), session={"id": "other"}))
    profile = tracardi_collector.events()[0].profile_id

    response = requests.get(
        tracardi_collector.url + "/micro/good",
        params={"type": "page view", "profile": profile},
        timeout=5,
    )

    expected = [("page-view", profile, SESSION)]
    actual = [(e["type"], e["profile_id"], e["session_id"]) for e in response.json()]
    assert expected == actual


def test_micro_all_bad_and_reset(tracardi_collector: Collector) -> None:
    send(tracardi_collector, payload(event(), event()))
    send(tracardi_collector, {"events": []})
    url = tracardi_collector.url

    counts = requests.get(url + "/micro/all", timeout=5).json()
    bad = requests.get(url + "/micro/bad", timeout=5).json()
    after_reset = requests.post(url + "/micro/reset", timeout=5).json()

    expected = (
        {"total": 3, "good": 2, "bad": 1},
        [(422, "POST", "/track", "Field required at body.source")],
        {"total": 0, "good": 0, "bad": 0},
        [],
    )
    actual = (
        counts,
        [(b["status"], b["method"], b["path"], b["reason"]) for b in bad],
        after_reset,
        tracardi_collector.events(),
    )
    assert expected == actual


def test_micro_profiles_can_be_added_and_listed(tracardi_collector: Collector) -> None:
    url = tracardi_collector.url + "/micro/profiles"

    added = requests.post(url, json={"id": "owner", "ids": ["old-1"]}, timeout=5)
    listed = requests.get(url, timeout=5).json()

    expected = (200, [("owner", ["old-1"])])
    assert expected == (added.status_code, [(p["id"], p["ids"]) for p in listed])


def test_micro_info_names_the_imitated_version(
    tracardi_collector_factory: Callable[..., Collector],
) -> None:
    collector = tracardi_collector_factory(tracardi_version="1.0", sources=["b", "a"])

    info = requests.get(collector.url + "/micro/info", timeout=5).json()

    expected = ("1.0", ["a", "b"], ":memory:")
    assert expected == (info["tracardi_version"], info["sources"], info["db"])


def test_html_page_lists_events_with_values_escaped(tracardi_collector: Collector) -> None:
    send(tracardi_collector, payload(event("xss-test", properties={"name": "<script>x</script>"})))

    page = requests.get(tracardi_collector.url + "/", timeout=5)

    expected = ("text/html; charset=utf-8", True, False, True)
    actual = (
        page.headers["content-type"],
        "&lt;script&gt;x&lt;/script&gt;" in page.text,
        "<script>x" in page.text,
        "xss-test" in page.text,
    )
    assert expected == actual


def test_wait_for_returns_once_enough_events_arrived(tracardi_collector: Collector) -> None:
    def later() -> None:
        time.sleep(0.05)
        send(tracardi_collector, payload(event("late")))

    thread = threading.Thread(target=later)
    thread.start()

    events = tracardi_collector.wait_for(1, timeout=5, type="late")
    thread.join()

    assert [e.type for e in events] == ["late"]


def test_wait_for_times_out_naming_what_arrived(tracardi_collector: Collector) -> None:
    send(tracardi_collector, payload(event("other")))

    with pytest.raises(CollectorTimeoutError, match=r"expected 1 event.*'other'"):
        tracardi_collector.wait_for(1, timeout=0.05, type="wanted")


# -- life cycle -------------------------------------------------------------------------------


def test_port_zero_picks_a_free_port_and_starts_quickly() -> None:
    started = time.perf_counter()
    with Collector() as collector:
        elapsed = time.perf_counter() - started
        response = send(collector, payload())

    expected = (True, True, 200)
    assert expected == (collector.port > 0, elapsed < 0.5, response.status_code)


def test_stop_is_idempotent_and_a_stopped_collector_does_not_restart() -> None:
    collector = Collector().start()
    url = collector.track_url
    collector.stop()
    collector.stop()

    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=payload(), timeout=2)
    with pytest.raises(CollectorError, match="cannot be started again"):
        collector.start()


def test_stop_closes_idle_keep_alive_connections() -> None:
    collector = Collector().start()
    conn = _connection(collector)
    _post(conn, payload())

    collector.stop()

    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        _post(conn, payload())
    conn.close()


def test_server_thread_is_a_daemon(tracardi_collector: Collector) -> None:
    names = {t.name: t.daemon for t in threading.enumerate()}

    assert names[f"tracardi-collector-{tracardi_collector.port}"] is True


def test_non_loopback_address_needs_consent() -> None:
    with pytest.raises(CollectorConfigError, match="allow_remote"):
        Collector(host="0.0.0.0")


def test_non_loopback_address_is_accepted_with_consent() -> None:
    collector = Collector(host="0.0.0.0", allow_remote=True)

    expected = ("0.0.0.0", True)
    assert expected == (collector.config.host, collector.config.allow_remote)


def test_unknown_version_is_a_config_error() -> None:
    with pytest.raises(CollectorConfigError, match=r"unknown Tracardi version '2\.0'"):
        Collector(tracardi_version="2.0")


def test_taken_port_is_a_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        collector = Collector(port=port)

        with pytest.raises(CollectorStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            collector.start()


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(CollectorError, match="not been started"):
        _ = Collector().url


# -- storage ----------------------------------------------------------------------------------


def test_accepted_events_are_in_the_database_after_stop(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with Collector(db=str(db)) as collector:
        answer = send(collector, payload(event(id="kept", properties={"n": 1}))).json()

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT event_id, type, profile_id, session_id, source_id, payload FROM events"
        ).fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    (row,) = rows
    expected = (("kept", "page-view", answer["profile"]["id"], SESSION), {"n": 1}, "wal")
    assert expected == (row[:4], json.loads(row[5])["properties"], mode)


def test_every_concurrent_request_is_stored(tracardi_collector: Collector) -> None:
    def worker(index: int) -> None:
        with requests.Session() as session:
            for round_ in range(5):
                body = payload(event(id=f"{index}-{round_}"), session={"id": f"s{index}"})
                assert send(tracardi_collector, body, session=session).status_code == 200

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected = {f"{i}-{r}" for i in range(8) for r in range(5)}
    assert expected == {e.id for e in tracardi_collector.events()}


def test_x_context_header_is_echoed(tracardi_collector: Collector) -> None:
    response = send(tracardi_collector, payload(), headers={"x-context": "staging"})

    expected = (200, "staging")
    assert expected == (response.status_code, response.headers["x-context"])
