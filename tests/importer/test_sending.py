"""The default sender (requests in flight from one thread) against a scripted server, and
the payload bytes it sends."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from importer_helpers import SOURCE_ID, row
from scripted_server import Reply, ScriptedTracardi, scripted

from tracardi_tracker import Time
from tracardi_tracker._http import HttpConnection
from tracardi_tracker._retry import RetryPolicy
from tracardi_tracker._serialization import payload_to_wire
from tracardi_tracker.exceptions import PayloadRejectedError, TransportError
from tracardi_tracker.importer import ImportAbortedError, ImportSummary, _json, import_events
from tracardi_tracker.importer._checkpoint import Checkpoint
from tracardi_tracker.importer._sender import Batch, Delivery, RejectSink
from tracardi_tracker.models import Options

Files = Callable[..., Path]
RETRY = RetryPolicy(attempts=4, initial_wait=0.0, max_wait=0.0, max_elapsed=10.0)


def history(profiles: int, per_profile: int, gap_minutes: float = 40) -> list[dict[str, Any]]:
    """Rows in time order; each profile's events ``gap_minutes`` apart (a session each
    when longer than 30)."""
    rows = [
        row("view", index * gap_minutes + number / 100, f"p-{number}", properties={"n": index})
        for index in range(per_profile)
        for number in range(profiles)
    ]
    rows.sort(key=lambda item: item["time"]["create"])
    return rows


def send(server: ScriptedTracardi, path: Path, **options: Any) -> ImportSummary:
    """Import through the default sender (no transport_factory) into ``server``."""
    options.setdefault("retry", RETRY)
    return import_events([str(path)], endpoint=server.url, source_id=SOURCE_ID, **options)


def answered_ids(server: ScriptedTracardi) -> list[str]:
    return [event["id"] for event in server.events]


# -- the payload --------------------------------------------------------------------------------


@pytest.mark.parametrize("with_profile", [True, False])
def test_payload_bytes_are_what_the_sdk_serializer_makes(
    tmp_path: Path, with_profile: bool
) -> None:
    create = datetime(2023, 3, 1, 10, 0, 0, 250000, tzinfo=timezone.utc)
    insert = datetime(2023, 3, 1, 10, 0, 5, tzinfo=timezone.utc)
    wire = ("2023-03-01T10:00:00.25Z", "2023-03-01T10:00:05.000Z")  # as a row may have them
    batch = Batch("k", "p-1" if with_profile else None, "s-1", None, *wire)
    batch.profile_ids.extend(["crm:1", "email:a@b.c"])
    batch.profile_meta = {"create": "2021-06-01T00:00:00Z"}
    events = [
        {"id": "e-1", "type": "view", "time": {"create": "x"}, "properties": {}},
        {"id": "e-2", "type": "buy", "time": {"create": "y"}, "properties": {"n": 1}},
    ]
    for where, event in enumerate(events):
        batch.add(_json.encode(event), where, b"")
    checkpoint = Checkpoint(None, {}, restart=False)
    delivery = Delivery(
        url="http://x/track",
        source_id=SOURCE_ID,
        options=Options(),
        retry=RETRY,
        checkpoint=checkpoint,
        rejects=RejectSink(None, lambda where, raw: ("f", where, ""), None),
        stop=threading.Event(),
    )

    body, _profile = delivery.payload(batch, 0, 2, {})

    first = Time(create=create, insert=insert)
    expected = payload_to_wire(
        source_id=SOURCE_ID,
        session_id="s-1",
        session_metadata=first,
        profile_id="p-1" if with_profile else None,
        profile_ids=["crm:1", "email:a@b.c"],
        profile_metadata=Time(create="2021-06-01T00:00:00Z") if with_profile else None,
        context={},
        properties={},
        options=Options(),
        events=events,
    )
    assert body == _json.encode(expected)
    checkpoint.close()


def test_a_batch_keeps_its_events_encoded_and_gives_back_any_slice_and_its_ids() -> None:
    batch = Batch("k", "p-1", "s-1", None, "2023-03-01T10:00:00Z", None)
    events = [{"id": f"e-{number}", "properties": {"n": number}} for number in range(5)]
    for where, event in enumerate(events, 10):
        batch.add(_json.encode(event), where, f"row {where}".encode())

    middle = json.loads(b"[" + bytes(batch.encoded(1, 4)) + b"]")

    assert len(batch) == 5
    assert middle == events[1:4]
    assert json.loads(b"[" + bytes(batch.encoded(0, 5)) + b"]") == events
    assert batch.event_ids(3, 5) == ["e-3", "e-4"]
    assert batch.event_ids() == [event["id"] for event in events]
    assert (batch.positions[2], batch.raws[2]) == (12, b"row 12")


# -- in flight, in order ------------------------------------------------------------------------


def test_requests_overlap_and_each_profiles_payloads_still_arrive_in_time_order(
    jsonl: Files,
) -> None:
    path = jsonl(history(profiles=16, per_profile=6))

    with scripted(delay=0.01) as server:
        summary = send(server, path, concurrency=4)

    assert summary.sent == 96
    assert sorted(answered_ids(server)) == sorted(set(answered_ids(server)))
    assert 2 <= server.max_in_flight <= 4
    assert server.connections == 4
    by_profile: dict[str, list[str]] = defaultdict(list)
    for payload in server.payloads:
        for event in payload["events"]:
            by_profile[payload["profile"]["id"]].append(event["time"]["create"])
    assert len(by_profile) == 16
    assert all(times == sorted(times) and len(times) == 6 for times in by_profile.values())


def test_one_connection_sends_one_request_at_a_time(jsonl: Files) -> None:
    with scripted(delay=0.002) as server:
        summary = send(server, jsonl(history(profiles=5, per_profile=4)), concurrency=1)

    assert summary.sent == 20
    assert server.max_in_flight == 1


# -- failures -----------------------------------------------------------------------------------


def test_server_errors_are_retried_and_every_event_arrives_once(jsonl: Files) -> None:
    def flaky(number: int, payload: dict[str, Any]) -> Reply | None:
        return Reply(503, {"detail": "busy"}) if number in (2, 3) else None

    with scripted(flaky) as server:
        summary = send(server, jsonl(history(profiles=3, per_profile=4)), concurrency=2)

    assert summary.sent == 12
    assert summary.retries == 2
    assert summary.requests == len(server.payloads)
    assert len(answered_ids(server)) == len(set(answered_ids(server))) == 12


def test_throttling_waits_as_long_as_retry_after_says(jsonl: Files) -> None:
    def throttle(number: int, payload: dict[str, Any]) -> Reply | None:
        return (
            Reply(429, {"detail": "slow down"}, headers={"Retry-After": "0.3"})
            if number == 1
            else None
        )

    started = time.monotonic()
    with scripted(throttle) as server:
        summary = send(server, jsonl([row("view", minute) for minute in range(3)]))

    assert time.monotonic() - started >= 0.3
    assert (summary.sent, summary.retries) == (3, 1)


def test_a_payload_tracardi_refuses_is_split_and_only_the_bad_row_is_rejected(
    jsonl: Files, tmp_path: Path
) -> None:
    def picky(number: int, payload: dict[str, Any]) -> Reply | None:
        if any(event["properties"].get("bad") for event in payload["events"]):
            return Reply(422, {"detail": [{"loc": ["body", "properties"], "msg": "no"}]})
        return None

    rows = [row("view", minute, properties={"bad": minute == 4}) for minute in range(8)]
    rejects = tmp_path / "rejects.jsonl"
    with scripted(picky) as server:
        summary = send(server, jsonl(rows), rejects=rejects)

    assert (summary.sent, summary.rejected, summary.exit_code) == (7, 1, 1)
    assert len(set(answered_ids(server))) == 7
    (reject,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert reject["line"] == 5
    assert "Tracardi rejected it (422): properties: no" in reject["reason"]


def test_a_refused_source_stops_the_import_after_one_request(jsonl: Files) -> None:
    def refuse(number: int, payload: dict[str, Any]) -> Reply:
        return Reply(406, {"detail": "Event source disabled."})

    with scripted(refuse) as server, pytest.raises(ImportAbortedError, match="disabled") as caught:
        send(server, jsonl([row("view", minute) for minute in range(3)]), concurrency=1)

    assert caught.value.summary.exit_code == 3
    assert len(server.payloads) == 1


@pytest.mark.parametrize("how", ["close", "drop"])
def test_connections_the_server_closes_are_reopened_and_nothing_is_lost_or_repeated(
    jsonl: Files, how: str
) -> None:
    def closing(number: int, payload: dict[str, Any]) -> Reply:
        status, body = 200, {"profile": payload["profile"], "session": payload["session"]}
        return Reply(status, body, how=how)

    with scripted(closing) as server:
        summary = send(server, jsonl(history(profiles=4, per_profile=5)), concurrency=2)

    assert (summary.sent, summary.retries) == (20, 0)
    assert len(server.payloads) == summary.requests  # no request went twice
    assert server.connections == summary.requests


@pytest.mark.parametrize(("reset_at", "retries"), [(1, 1), (2, 0)])
def test_a_connection_reset_instead_of_an_answer_is_sent_again(
    jsonl: Files, reset_at: int, retries: int
) -> None:
    # on a new connection it is a failure (retried by the policy); on a reused one it is
    # what a server closing an idle connection looks like (sent again at once, once)
    def reset(number: int, payload: dict[str, Any]) -> Reply | None:
        return Reply(how="reset") if number == reset_at else None

    with scripted(reset) as server:
        summary = send(server, jsonl(history(profiles=2, per_profile=4)), concurrency=1)

    assert (summary.sent, summary.retries) == (8, retries)
    assert len(server.payloads) == len(server.answered) + 1
    assert sorted(answered_ids(server)) == sorted(set(answered_ids(server)))


def test_chunked_answers_are_read_and_replaced_profile_ids_adopted(
    jsonl: Files, tmp_path: Path
) -> None:
    def one_oh(number: int, payload: dict[str, Any]) -> Reply:
        profile = payload["profile"]["id"]
        new = profile if profile.startswith("new-") else f"new-{profile}"
        body = {"profile": {"id": new}, "session": payload["session"]}
        return Reply(200, body, how="chunked")

    with scripted(one_oh) as server:
        summary = send(
            server,
            jsonl(history(profiles=2, per_profile=3)),
            concurrency=1,
            profile_map=tmp_path / "profiles.jsonl",
        )

    assert (summary.sent, summary.profiles_replaced) == (6, 2)
    later = [payload["profile"] for payload in server.payloads[2:]]
    assert all(profile["id"].startswith("new-p-") for profile in later)
    assert all(profile["ids"] == [profile["id"][4:]] for profile in later)


# -- stopping and resuming ----------------------------------------------------------------------


def test_stopping_midway_and_resuming_sends_every_event_exactly_once(
    jsonl: Files, tmp_path: Path
) -> None:
    stop = threading.Event()

    def stopper(number: int, payload: dict[str, Any]) -> Reply | None:
        if number == 15:
            stop.set()
        return None

    path = jsonl(history(profiles=10, per_profile=10))
    checkpoint = tmp_path / "c"
    with scripted(stopper, delay=0.002) as server:
        first = send(server, path, checkpoint=checkpoint, stop=stop, batch_size=3)
        assert first.interrupted
        assert 0 < first.sent < 100
        second = send(server, path, checkpoint=checkpoint)

    ids = answered_ids(server)
    assert len(ids) == len(set(ids)) == 100
    assert second.skipped == first.sent
    assert second.complete


def test_the_rate_limit_holds_with_requests_in_flight(jsonl: Files) -> None:
    path = jsonl(history(profiles=30, per_profile=10, gap_minutes=1))

    started = time.monotonic()
    with scripted() as server:
        summary = send(server, path, rate=1000, batch_size=10)
    elapsed = time.monotonic() - started

    assert summary.sent == 300
    assert elapsed >= 0.25  # the first 10 go at once, the other 290 take 0.29 s


# -- the connection -----------------------------------------------------------------------------


@pytest.fixture
def raw_server() -> Iterator[Callable[[bytes], str]]:
    """``raw_server(answer)``: a one-shot server writing ``answer`` after a request, then
    closing the connection if the answer is a ``HTTP/1.0`` one, else keeping it open."""
    listeners: list[socket.socket] = []
    done = threading.Event()

    def start(answer: bytes) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            connection, _ = listener.accept()
            with connection:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += connection.recv(65536)
                connection.sendall(answer)
                if b"HTTP/1.0" not in answer:
                    done.wait(10)

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/track"

    yield start
    done.set()
    for listener in listeners:
        listener.close()


def test_an_interim_answer_and_a_body_that_ends_with_the_connection_are_read(
    raw_server: Callable[[bytes], str],
) -> None:
    body = b'{"profile": {"id": "p-9"}, "session": {"id": "s-9"}}'
    url = raw_server(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n" + body)
    connection = HttpConnection(url, timeout=5)

    response = connection.post(url, b"{}")

    assert (response.status, response.profile_id, response.session_id) == (200, "p-9", "s-9")
    assert connection.fileno() == -1  # HTTP/1.0 without keep-alive: closed


def test_a_refused_payload_is_the_sdks_error(raw_server: Callable[[bytes], str]) -> None:
    url = raw_server(b'HTTP/1.1 422 X\r\nContent-Length: 19\r\n\r\n{"detail": "wrong"}')

    connection = HttpConnection(url, timeout=5)
    with pytest.raises(PayloadRejectedError, match="wrong") as caught:
        connection.post(url, b"{}", event_ids=["e-1"])
    connection.close()

    assert caught.value.event_ids == ("e-1",)


def test_no_answer_within_the_timeout_is_a_transport_error(
    raw_server: Callable[[bytes], str],
) -> None:
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{")  # never finishes

    connection = HttpConnection(url, timeout=0.2)
    with pytest.raises(TransportError, match=r"within 0\.2s"):
        connection.post(url, b"{}")
    assert connection.fileno() == -1


def test_nothing_listening_is_a_transport_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/track"

    with pytest.raises(TransportError, match="could not reach"):
        HttpConnection(url, timeout=1).post(url, b"{}")


def test_the_request_names_the_host_and_port_and_the_body_length() -> None:
    connection = HttpConnection("http://[::1]:8686/tracker/track?x=1", headers={"X-A": "b"})

    head = connection._head.decode()

    assert head.startswith("POST /tracker/track?x=1 HTTP/1.1\r\nHost: [::1]:8686\r\n")
    assert "\r\nX-A: b\r\n" in head
    assert head.endswith("Content-Length: ")
