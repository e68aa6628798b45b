"""The lean HTTP client as the SDK's transport, against raw servers written byte for byte."""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from raw_server import CERT, RawServer, Reply, Request, ok, serve

from tracardi_tracker import __version__
from tracardi_tracker._http import LeanTransport
from tracardi_tracker._retry import RetryableServerError, is_retryable
from tracardi_tracker._transport import interpret
from tracardi_tracker.exceptions import DeliveryError, TransportError

BODY = b'{"events": []}'


@pytest.fixture
def transport() -> Iterator[LeanTransport]:
    lean = LeanTransport(timeout=5)
    yield lean
    lean.close()


def answer_ok(number: int, request: Request) -> Reply:
    return Reply(ok())


# -- what is sent ---------------------------------------------------------------------------


def test_requests_carry_the_headers_httptransport_sends(transport: LeanTransport) -> None:
    with serve(answer_ok) as server:
        transport.post(server.url, BODY)
    (request,) = server.requests
    port = server.url.split(":")[2].split("/")[0]
    assert request.line == "POST /track HTTP/1.1"
    assert request.headers["host"] == f"127.0.0.1:{port}"
    assert request.headers["user-agent"] == f"tracardi-tracker-python/{__version__}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["content-length"] == str(len(BODY))
    assert request.body == BODY
    assert "authorization" not in request.headers


def test_x_forwarded_for_goes_with_its_own_request_only(transport: LeanTransport) -> None:
    with serve(answer_ok) as server:
        transport.post(server.url, BODY, headers={"X-Forwarded-For": "203.0.113.7"})
        transport.post(server.url, BODY)
        transport.post(server.url, BODY, headers={"X-Forwarded-For": "198.51.100.1"})
    sent = [request.values("X-Forwarded-For") for request in server.requests]
    assert sent == [["203.0.113.7"], [], ["198.51.100.1"]]
    assert server.connections == 1  # all on one keep-alive connection


def test_a_header_given_for_a_request_replaces_the_default_of_that_name(
    transport: LeanTransport,
) -> None:
    with serve(answer_ok) as server:
        transport.post(server.url, BODY, headers={"user-agent": "mine/1.0"})
        transport.post(server.url, BODY)
    first, second = server.requests
    assert first.values("User-Agent") == ["mine/1.0"]
    assert first.values("Host") == [server.url.split("/")[2]]
    assert second.values("User-Agent") == [f"tracardi-tracker-python/{__version__}"]


@pytest.mark.parametrize("value", ["1.2.3.4\r\nX-Evil: 1", "1.2.3.4\n", "a\0b", "żółw"])
def test_a_header_that_would_break_the_request_is_refused_and_not_retried(
    transport: LeanTransport, value: str
) -> None:
    with serve(answer_ok) as server:
        with pytest.raises(DeliveryError) as raised:
            transport.post(server.url, BODY, event_ids=["e-1"], headers={"X-Forwarded-For": value})
        transport.post(server.url, BODY)  # the transport is still usable
    assert not is_retryable(raised.value)
    assert raised.value.event_ids == ("e-1",)
    assert [request.headers.get("x-evil") for request in server.requests] == [None]
    assert len(server.requests) == 1


def test_a_url_with_a_path_and_query_is_requested_as_given(transport: LeanTransport) -> None:
    with serve(answer_ok, path="/tracardi api/track?source=a%2Fb&x=1#frag") as server:
        transport.post(server.url, BODY)
    assert server.requests[0].line == "POST /tracardi%20api/track?source=a%2Fb&x=1 HTTP/1.1"


def test_an_ipv6_literal_host_is_reached_and_named_in_brackets(transport: LeanTransport) -> None:
    try:
        server = RawServer(answer_ok, host="::1")
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    try:
        response = transport.post(server.url, BODY)
    finally:
        server.stop()
    assert response.profile_id == "p-1"
    assert server.requests[0].headers["host"] == server.url.split("/")[2]
    assert server.requests[0].headers["host"].startswith("[::1]:")


# -- reading answers ----------------------------------------------------------------------------


def test_chunked_answers_are_read_whole(transport: LeanTransport) -> None:
    content = json.dumps({"profile": {"id": "p-chunked"}, "session": {"id": "s-2"}}).encode()
    pieces = [content[:7], content[7:20], content[20:]]
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked
        + b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    with serve(lambda n, r: Reply(answer)) as server:
        first = transport.post(server.url, BODY)
        second = transport.post(server.url, BODY)
    assert (first.profile_id, first.session_id) == ("p-chunked", "s-2")
    assert second.profile_id == "p-chunked"
    assert server.connections == 1  # the connection stayed usable after the chunked answer


def test_gzip_answers_are_decoded(transport: LeanTransport) -> None:
    content = gzip.compress(json.dumps({"profile": {"id": "p-gz"}}).encode())
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(
        content
    )
    with serve(lambda n, r: Reply(answer + content)) as server:
        assert transport.post(server.url, BODY).profile_id == "p-gz"


def test_interim_and_bodiless_answers_are_read_and_the_connection_kept(
    transport: LeanTransport,
) -> None:
    replies = {
        1: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok(),
        2: b"HTTP/1.1 204 No Content\r\n\r\n",
        3: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        4: ok(),
    }
    with serve(lambda n, r: Reply(replies[n])) as server:
        first = transport.post(server.url, BODY)
        with pytest.raises(DeliveryError, match="answered 204") as raised:
            transport.post(server.url, BODY)  # not a success for Tracardi, as with requests
        empty = transport.post(server.url, BODY)
        last = transport.post(server.url, BODY)
    assert (first.status, first.profile_id) == (200, "p-1")
    assert raised.value.status == 204
    assert (empty.status, empty.profile_id, empty.body) == (200, None, None)
    assert (last.status, last.profile_id) == (200, "p-1")
    assert server.connections == 1


def test_an_answer_ended_by_closing_the_connection_is_read_whole(
    transport: LeanTransport,
) -> None:
    content = json.dumps({"profile": {"id": "p-eof"}}).encode()
    with serve(lambda n, r: Reply(b"HTTP/1.0 200 OK\r\n\r\n" + content, "close")) as server:
        first = transport.post(server.url, BODY)
        second = transport.post(server.url, BODY)
    assert (first.profile_id, second.profile_id) == ("p-eof", "p-eof")
    assert server.connections == 2


def test_connection_close_answers_are_honoured_and_the_next_post_reconnects(
    transport: LeanTransport,
) -> None:
    with serve(lambda n, r: Reply(ok(None, "Connection: close"), "close")) as server:
        transport.post(server.url, BODY)
        transport.post(server.url, BODY)
    assert [request.connection for request in server.requests] == [1, 2]


@pytest.mark.parametrize(
    ("status", "retry_after", "seconds"),
    [
        (429, "7", 7.0),
        (503, "2", 2.0),
        (503, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        (429, None, None),
    ],
)
def test_429_and_503_are_the_retryable_error_httptransport_raises(
    transport: LeanTransport, status: int, retry_after: str | None, seconds: float | None
) -> None:
    content = b'{"detail": "slow down"}'
    extra = f"Retry-After: {retry_after}\r\n" if retry_after else ""
    answer = f"HTTP/1.1 {status} X\r\n{extra}Content-Length: {len(content)}\r\n\r\n"
    with (
        serve(lambda n, r: Reply(answer.encode() + content)) as server,
        pytest.raises(RetryableServerError) as raised,
    ):
        transport.post(server.url, BODY, event_ids=["e-1", "e-2"])
    headers = {"Retry-After": retry_after} if retry_after else {}
    with pytest.raises(RetryableServerError) as expected:
        interpret(status, content, headers, event_ids=["e-1", "e-2"])
    got, want = raised.value, expected.value
    assert (got.status, got.retry_after, got.event_ids, str(got)) == (
        want.status,
        want.retry_after,
        want.event_ids,
        str(want),
    )
    assert got.retry_after == seconds
    assert is_retryable(got)


# -- connections that end ------------------------------------------------------------------------


def test_an_idle_connection_the_server_closed_is_reopened_and_the_request_resent_once(
    transport: LeanTransport,
) -> None:
    # the first answer keeps the connection alive, then the server closes it (an idle timeout)
    with serve(lambda n, r: Reply(ok(), "close" if n == 1 else "keep")) as server:
        transport.post(server.url, BODY)
        assert server.closed.acquire(timeout=5)
        response = transport.post(server.url, b'{"second": 1}')
    assert response.profile_id == "p-1"
    assert [(r.connection, r.body) for r in server.requests] == [(1, BODY), (2, b'{"second": 1}')]


def test_a_connection_closed_mid_answer_is_a_transport_error_and_not_resent(
    transport: LeanTransport,
) -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"
    with serve(
        lambda n, r: Reply(ok() if n == 1 else cut, "keep" if n == 1 else "close")
    ) as server:
        transport.post(server.url, BODY)
        with pytest.raises(TransportError, match="RemoteDisconnected") as raised:
            transport.post(server.url, BODY, event_ids=["e-7"])
    assert raised.value.event_ids == ("e-7",)
    assert len(server.requests) == 2  # the second was not sent again: it may have been taken


def test_a_stalled_server_is_a_transport_error_carrying_the_event_ids() -> None:
    lean = LeanTransport(timeout=0.3)
    with (
        serve(lambda n, r: Reply(b"", "stall")) as server,
        pytest.raises(TransportError, match=r"within 0\.3s") as raised,
    ):
        lean.post(server.url, BODY, event_ids=["e-1"])
    lean.close()
    assert raised.value.event_ids == ("e-1",)
    assert is_retryable(raised.value)


def test_a_server_that_stops_reading_times_out_the_send_as_a_transport_error() -> None:
    lean = LeanTransport(timeout=0.3)
    with socket.create_server(("127.0.0.1", 0)) as deaf:  # accepts, never reads
        url = f"http://127.0.0.1:{deaf.getsockname()[1]}/track"
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"within 0\.3s") as raised:
            lean.post(url, b"x" * 64_000_000, event_ids=["e-1"])  # more than the buffers hold
        assert time.monotonic() - started < 5
    lean.close()
    assert raised.value.event_ids == ("e-1",)
    assert is_retryable(raised.value)


def test_nothing_listening_is_a_transport_error(transport: LeanTransport) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/track"
    with pytest.raises(TransportError, match="could not reach") as raised:
        transport.post(url, BODY, event_ids=["e-1"])
    assert raised.value.event_ids == ("e-1",)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/track", "http:///track", "http://h:99999/"])
def test_a_url_it_cannot_send_to_is_a_transport_error(transport: LeanTransport, url: str) -> None:
    with pytest.raises(TransportError, match="cannot send to"):
        transport.post(url, BODY)


# -- TLS ------------------------------------------------------------------------------------------


def test_https_is_verified_against_a_ca_bundle_path() -> None:
    lean = LeanTransport(timeout=5, verify=str(CERT))
    with serve(answer_ok, tls=True) as server:
        response = lean.post(server.url, BODY)
        lean.post(server.url, BODY)
    lean.close()
    assert response.profile_id == "p-1"
    assert server.connections == 1


def test_https_with_a_certificate_nobody_vouches_for_is_a_transport_error() -> None:
    lean = LeanTransport(timeout=5, verify=True)
    with (
        serve(answer_ok, tls=True) as server,
        pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        lean.post(server.url, BODY)
    lean.close()
    assert server.requests == []


def test_https_without_verification_takes_any_certificate() -> None:
    lean = LeanTransport(timeout=5, verify=False)
    with serve(answer_ok, tls=True) as server:
        assert lean.post(server.url, BODY).profile_id == "p-1"
    lean.close()


def test_https_trusts_requests_ca_bundle_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(CERT))
    lean = LeanTransport(timeout=5)  # verify=True
    with serve(answer_ok, tls=True) as server:
        assert lean.post(server.url, BODY).profile_id == "p-1"
    lean.close()


def test_a_missing_ca_bundle_is_a_transport_error(transport: LeanTransport) -> None:
    lean = LeanTransport(timeout=5, verify="/nonexistent/ca.pem")
    with pytest.raises(TransportError, match=r"/nonexistent/ca\.pem"):
        lean.post("https://127.0.0.1:1/track", BODY)


def test_an_idle_tls_connection_the_server_closed_is_reopened() -> None:
    lean = LeanTransport(timeout=5, verify=str(CERT))
    with serve(lambda n, r: Reply(ok(), "close" if n == 1 else "keep"), tls=True) as server:
        lean.post(server.url, BODY)
        assert server.closed.acquire(timeout=5)
        assert lean.post(server.url, BODY).profile_id == "p-1"
    lean.close()
    assert [request.connection for request in server.requests] == [1, 2]


# -- threads, close and fork ---------------------------------------------------------------------


def test_concurrent_posts_each_get_their_answer_on_connections_of_their_own() -> None:
    lean = LeanTransport(timeout=5, max_idle=3)

    def echo(number: int, request: Request) -> Reply:
        return Reply(ok({"profile": {"id": request.body.decode()}}))

    answers: dict[str, list[str | None]] = {}
    with serve(echo) as server:

        def worker(name: str) -> None:
            answers[name] = [
                lean.post(server.url, f"{name}-{n}".encode()).profile_id for n in range(25)
            ]

        threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        idle = sum(len(connections) for connections in lean._idle.values())
        lean.close()
    assert answers == {f"t{i}": [f"t{i}-{n}" for n in range(25)] for i in range(6)}
    assert idle <= 3
    assert server.connections <= 6 + 25 * 6  # bounded: no connection per request leak
    assert len(server.requests) == 150


def test_close_from_another_thread_lets_the_request_in_flight_finish_then_closes_it() -> None:
    lean = LeanTransport(timeout=5)
    release = threading.Event()
    arrived = threading.Event()

    def slow(number: int, request: Request) -> Reply:
        arrived.set()
        release.wait(5)
        return Reply(ok())

    outcome: list[object] = []
    with serve(slow) as server:
        thread = threading.Thread(target=lambda: outcome.append(lean.post(server.url, BODY)))
        thread.start()
        assert arrived.wait(5)
        lean.close()
        lean.close()  # idempotent
        release.set()
        thread.join(5)
        assert server.closed.acquire(timeout=5)  # the connection was closed after its answer
        lean.post(server.url, BODY)  # a closed transport opens a new connection when used
    lean.close()
    assert [getattr(item, "profile_id", item) for item in outcome] == ["p-1"]
    assert lean._idle == {}
    assert server.connections == 2


def test_reset_forgets_connections_and_the_next_post_opens_its_own(
    transport: LeanTransport,
) -> None:
    with serve(answer_ok) as server:
        transport.post(server.url, BODY)
        transport.reset()
        transport.post(server.url, BODY)
    assert [request.connection for request in server.requests] == [1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_posts_on_its_own_connection_and_the_parents_still_works(
    transport: LeanTransport,
) -> None:
    with serve(answer_ok) as server:
        transport.post(server.url, BODY)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                transport.reset()  # what the emitter's fork hook does
                status = transport.post(server.url, b'{"child": 1}').status
                os.write(write_end, str(status).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        report = os.read(read_end, 100).decode()
        os.close(read_end)
        transport.post(server.url, b'{"parent": 1}')
    assert report == "200"
    by_body = {request.body: request.connection for request in server.requests}
    assert by_body[BODY] == by_body[b'{"parent": 1}'] != by_body[b'{"child": 1}']
