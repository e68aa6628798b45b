"""The emitters' default transport: lean where it is safe, requests where a proxy or
.netrc applies; redirects; delivery to the project's collector."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from raw_server import Reply, Request, ok, serve

from tracardi_tracker import BackgroundEmitter, Event, Subject, SyncEmitter, Tracker
from tracardi_tracker._default_transport import DefaultTransport, needs_requests
from tracardi_tracker._transport import HttpTransport
from tracardi_tracker.exceptions import DeliveryError
from tracardi_tracker.testing import Collector

BODY = b'{"events": []}'
PROXY_VARIABLES = ["http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD"]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No proxy settings and no .netrc, whatever the machine running the tests has."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return monkeypatch


@pytest.fixture
def transport(clean_environment: pytest.MonkeyPatch) -> Iterator[DefaultTransport]:
    chosen = DefaultTransport(timeout=5)
    yield chosen
    chosen.close()


def test_emitters_given_neither_transport_nor_session_use_the_default_transport() -> None:
    session = requests.Session()
    given = HttpTransport()
    emitters = [
        SyncEmitter(),
        BackgroundEmitter(),
        SyncEmitter(session=session),
        BackgroundEmitter(session=session),
        SyncEmitter(transport=given),
        BackgroundEmitter(transport=given),
    ]
    kinds = [type(emitter._transport) for emitter in emitters]
    for emitter in emitters:
        emitter.close(1)
    session.close()
    assert kinds == [DefaultTransport] * 2 + [HttpTransport] * 4
    assert [emitter._transport is given for emitter in emitters[4:]] == [True, True]


@pytest.mark.parametrize(
    ("environment", "url", "proxied"),
    [
        ({}, "http://127.0.0.1:8686/track", False),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://tracardi.test/track", True),
        ({"http_proxy": "http://proxy:3128"}, "http://tracardi.test/track", True),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://tracardi.test/track", False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://tracardi.test/track", True),
        ({"ALL_PROXY": "socks5://proxy:1080"}, "http://tracardi.test/track", True),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1"}, "http://127.0.0.1:1/track", False),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, "http://a.example.com/", False),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "other.com"}, "http://a.example.com/", True),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "*"}, "http://a.example.com/", False),
    ],
)
def test_a_url_goes_through_requests_exactly_when_requests_would_proxy_it(
    clean_environment: pytest.MonkeyPatch, environment: dict[str, str], url: str, proxied: bool
) -> None:
    for name, value in environment.items():
        clean_environment.setenv(name, value)
    requests_proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    assert (needs_requests(url), requests_proxy is not None) == (proxied, proxied)


def test_a_proxy_in_the_environment_is_used_through_requests(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    with serve(lambda n, r: Reply(ok()), path="") as proxy:
        clean_environment.setenv("HTTP_PROXY", proxy.url)
        tracker = Tracker("http://tracardi.test:8686", "src", emitter=SyncEmitter())
        tracker.track(Event("through-the-proxy"))
        tracker.close()
    (request,) = proxy.requests
    assert request.line == "POST http://tracardi.test:8686/track HTTP/1.1"  # proxy form
    assert tracker.profile_id == "p-1"


def test_netrc_credentials_for_the_host_are_sent_through_requests(
    transport: DefaultTransport, clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password secret\n")
    netrc.chmod(0o600)
    clean_environment.setenv("NETRC", str(netrc))
    with serve(lambda n, r: Reply(ok())) as server:
        transport.post(server.url, BODY)
    expected = "Basic " + base64.b64encode(b"user:secret").decode()
    assert server.requests[0].headers["authorization"] == expected


@pytest.mark.parametrize("status", [307, 308])
def test_redirects_that_keep_the_method_are_followed_with_the_same_body(
    transport: DefaultTransport, status: int
) -> None:
    def moved(number: int, request: Request) -> Reply:
        if number == 1:
            head = f"HTTP/1.1 {status} X\r\nLocation: /moved?x=1\r\nContent-Length: 0\r\n\r\n"
            return Reply(head.encode())
        return Reply(ok())

    with serve(moved) as server:
        response = transport.post(server.url, BODY, headers={"X-Forwarded-For": "192.0.2.1"})
    assert response.profile_id == "p-1"
    assert [(r.line, r.body, r.headers["x-forwarded-for"]) for r in server.requests] == [
        ("POST /track HTTP/1.1", BODY, "192.0.2.1"),
        ("POST /moved?x=1 HTTP/1.1", BODY, "192.0.2.1"),
    ]


def test_a_redirect_that_would_turn_the_post_into_a_get_is_reported_not_followed(
    transport: DefaultTransport,
) -> None:
    answer = b"HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    with (
        serve(lambda n, r: Reply(answer)) as server,
        pytest.raises(DeliveryError, match="301") as raised,
    ):
        transport.post(server.url, BODY, event_ids=["e-1"])
    assert raised.value.event_ids == ("e-1",)
    assert len(server.requests) == 1


def test_a_redirect_loop_ends_as_an_error(transport: DefaultTransport) -> None:
    answer = b"HTTP/1.1 307 X\r\nLocation: /track\r\nContent-Length: 0\r\n\r\n"
    with serve(lambda n, r: Reply(answer)) as server, pytest.raises(DeliveryError, match="307"):
        transport.post(server.url, BODY)
    assert len(server.requests) == 31  # the first and 30 redirects, as requests allows


def test_close_is_idempotent_and_reset_keeps_the_transport_usable(
    transport: DefaultTransport,
) -> None:
    with serve(lambda n, r: Reply(ok())) as server:
        transport.post(server.url, BODY)
        transport.reset()
        transport.post(server.url, BODY)
        transport.close()
        transport.close()
    assert [request.connection for request in server.requests] == [1, 2]


@pytest.mark.e2e
def test_sync_emitters_called_from_many_threads_deliver_every_event_once(
    tracardi_collector: Collector, clean_environment: pytest.MonkeyPatch
) -> None:
    emitter = SyncEmitter()
    tracker = Tracker(tracardi_collector.url, "e2e-source", emitter=emitter)
    sent: list[str] = []
    lock = threading.Lock()

    def visitor(number: int) -> None:
        subject = Subject(user_id=f"u{number}")
        for n in range(20):
            event_id = tracker.track(Event("x", {"n": n}, event_subject=subject))
            with lock:
                sent.append(event_id)

    threads = [threading.Thread(target=visitor, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    tracker.close()
    assert isinstance(emitter._transport, DefaultTransport)
    assert emitter._transport._routes == {tracardi_collector.track_url: False}  # all lean
    assert Counter(event.id for event in tracardi_collector.events()) == Counter(sent)
    assert len(sent) == 120


@pytest.mark.e2e
def test_the_background_emitter_delivers_through_the_lean_client(
    tracardi_collector: Collector, clean_environment: pytest.MonkeyPatch
) -> None:
    emitter = BackgroundEmitter(batch_size=50, flush_interval=0.02)
    tracker = Tracker(tracardi_collector.url, "e2e-source", emitter=emitter)
    ids = [
        tracker.track(Event("x", {"n": n}, event_subject=Subject(user_id=f"u{n % 7}")))
        for n in range(500)
    ]
    assert tracker.flush(30) == 0
    routes = dict(emitter._transport._routes)  # type: ignore[attr-defined]
    tracker.close()
    assert routes == {tracardi_collector.track_url: False}
    assert Counter(event.id for event in tracardi_collector.events()) == Counter(ids)


@pytest.mark.e2e
def test_tracking_to_a_plain_http_endpoint_loads_neither_requests_nor_ssl_nor_asyncio(
    tracardi_collector: Collector,
) -> None:
    # requests, ssl and asyncio cost ~17 MB of memory between them; a fresh process shows
    # which modules a tracker really loads
    script = (
        "import sys\n"
        "from tracardi_tracker import PageView, Tracker\n"
        "tracker = Tracker(sys.argv[1], 'src')\n"
        "tracker.track(PageView('https://shop.example/'))\n"
        "assert tracker.flush(30) == 0\n"
        "tracker.close()\n"
        "print(sorted({'requests', 'ssl', 'asyncio', 'urllib3'} & set(sys.modules)))\n"
    )
    environment = {
        name: value for name, value in os.environ.items() if not name.lower().endswith("_proxy")
    }
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    environment["NETRC"] = "/nonexistent/netrc"
    finished = subprocess.run(
        [sys.executable, "-c", script, tracardi_collector.url],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=True,
    )
    assert finished.stdout.strip() == "[]"
    assert len(tracardi_collector.events()) == 1
