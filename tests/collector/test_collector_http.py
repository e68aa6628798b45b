"""The request reader: HTTP/1.x as ``http.server`` reads it, headers as ``email`` reads them."""

from __future__ import annotations

import json
import re
import socket

from collector_helpers import SESSION, SOURCE

from tracardi_tracker.collector import Collector

BODY = json.dumps(
    {"source": {"id": SOURCE}, "session": {"id": SESSION}, "events": [{"type": "page-view"}]}
).encode()


def exchange(collector: Collector, data: bytes, *, first_line_only: bool = False) -> bytes:
    """Send raw bytes; everything answered until the server closes (or the first line)."""
    with socket.create_connection((collector.host, collector.port), timeout=5) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
            if first_line_only and b"\r\n" in answer:
                break
    return answer


def post(headers: str, body: bytes = BODY) -> bytes:
    head = f"POST /track HTTP/1.1\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    return head.encode("latin-1") + body


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


def test_two_requests_are_answered_on_one_connection(tracardi_collector: Collector) -> None:
    second = b"GET /micro/all HTTP/1.1\r\nConnection: close\r\n\r\n"

    answer = exchange(tracardi_collector, post("Content-Type: application/json\r\n") + second)

    expected = (2, b'{"total":1,"good":1,"bad":0}')
    assert expected == (answer.count(b"HTTP/1.1 200 OK"), answer[answer.rindex(b"\r\n\r\n") + 4 :])


def test_the_first_of_repeated_headers_counts(tracardi_collector: Collector) -> None:
    headers = "Connection: close\r\nUser-Agent: curl/8.5\r\nUser-Agent: Googlebot/2.1\r\n"

    answer = exchange(tracardi_collector, post(headers))

    assert (status_line(answer), tracardi_collector.summary()["good"]) == (b"HTTP/1.1 200 OK", 1)


def test_a_folded_header_line_continues_the_value(tracardi_collector: Collector) -> None:
    headers = "Connection: close\r\nUser-Agent: acme/1.0\r\n (Googlebot)\r\n"

    answer = exchange(tracardi_collector, post(headers))

    (bad,) = tracardi_collector.bad()
    expected = (True, "Traffic from bot is not allowed.", "acme/1.0\r\n (Googlebot)")
    assert expected == (status_line(answer).startswith(b"HTTP/1.1 4"), bad.reason, bad.user_agent)


def test_blanks_around_header_values_are_read_as_email_reads_them(
    tracardi_collector: Collector,
) -> None:
    headers = "Content-Type:   application/json  \r\nConnection:\tclose\r\nUser-Agent:  a b \r\n"

    exchange(tracardi_collector, post(headers))

    (event,) = tracardi_collector.events()
    assert event.type == "page-view"


def test_a_line_that_is_not_a_header_ends_the_headers(tracardi_collector: Collector) -> None:
    data = b"GET /micro/all HTTP/1.1\r\nnot a header\r\nConnection: close\r\n\r\n"

    answer = exchange(tracardi_collector, data, first_line_only=True)

    assert status_line(answer) == b"HTTP/1.1 200 OK"  # (the connection is kept open)


def test_head_answers_the_headers_of_get_without_the_body(tracardi_collector: Collector) -> None:
    data = b"HEAD /micro/all HTTP/1.1\r\nConnection: close\r\n\r\n"

    answer = exchange(tracardi_collector, data)

    head, _, body = answer.partition(b"\r\n\r\n")
    expected = (b"HTTP/1.1 200 OK", True, b"")
    assert expected == (status_line(head), b"\r\ncontent-length: 28" in head, body)


def test_expect_100_continue_is_answered_before_the_body(tracardi_collector: Collector) -> None:
    headers = "Content-Type: application/json\r\nExpect: 100-continue\r\nConnection: close\r\n"

    answer = exchange(tracardi_collector, post(headers))

    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")


def test_http_10_closes_the_connection_unless_asked_to_keep_it(
    tracardi_collector: Collector,
) -> None:
    closed = exchange(tracardi_collector, b"GET /micro/all HTTP/1.0\r\n\r\n")
    kept = exchange(
        tracardi_collector,
        b"GET /micro/all HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        first_line_only=True,
    )

    assert (status_line(closed), status_line(kept)) == (b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK")
    assert b"connection: close" in closed


def test_a_hundred_header_lines_are_too_many(tracardi_collector: Collector) -> None:
    lines = "".join(f"X-{n}: y\r\n" for n in range(100))
    fewer = "".join(f"X-{n}: y\r\n" for n in range(98))

    refused = exchange(tracardi_collector, f"GET /micro/all HTTP/1.1\r\n{lines}\r\n".encode())
    accepted = exchange(
        tracardi_collector, f"GET /micro/all HTTP/1.1\r\nConnection: close\r\n{fewer}\r\n".encode()
    )

    expected = (b"HTTP/1.1 431 Too many headers", b"HTTP/1.1 200 OK")
    assert expected == (status_line(refused), status_line(accepted))


def test_a_header_line_over_64_kib_is_refused(tracardi_collector: Collector) -> None:
    data = b"GET /micro/all HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"

    answer = exchange(tracardi_collector, data)

    assert status_line(answer) == b"HTTP/1.1 431 Line too long"


def test_malformed_request_lines_are_answered_as_http_server_answers_them(
    tracardi_collector: Collector,
) -> None:
    lines = [b"GET / HTTX/1.1", b"GET / HTTP/1.\xb2", b"GET / HTTP/2.0", b"GET / x HTTP/1.1"]
    lines.append(b"POST /track")

    answers = [exchange(tracardi_collector, line + b"\r\n\r\n") for line in lines]

    # http.server answers a request line it cannot read as HTTP/0.9: no status line
    errors = [re.findall(rb"Error code: (\d+)</p>\s*<p>Message: (.*)\.</p>", a) for a in answers]
    assert errors == [
        [(b"400", b"Bad request version ('HTTX/1.1')")],
        [(b"400", "Bad request version ('HTTP/1.\u00b2')".encode())],
        [(b"505", b"Invalid HTTP version (2.0)")],
        [(b"400", b"Bad request syntax ('GET / x HTTP/1.1')")],
        [(b"400", b"Bad HTTP/0.9 request type ('POST')")],
    ]
