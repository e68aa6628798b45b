"""The example apps, run as their docs say, each a real server against the local collector."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import attrs
import pytest
import requests
from web_helpers import (
    BROWSER,
    EXAMPLES,
    PROFILE,
    ROOT,
    SESSION,
    SOURCE_ID,
    free_port,
    python,
    running,
)

from tracardi_tracker.collector import Collector


@attrs.frozen
class Example:
    """How to start an example, and the action it tracks an event for."""

    name: str
    framework: str
    args: tuple[str, ...]
    page: str  # a GET path that is a page
    action: str  # a POST path
    action_type: str
    graceful_sigterm: bool
    """Whether SIGTERM flushes the queue (uvicorn runs the lifespan's ``aclose()``); the
    Flask and Django development servers die on it without running ``atexit``."""

    def command(self, port: int) -> list[str]:
        return python(str(EXAMPLES / self.name), *(a.format(port=port) for a in self.args))


EXAMPLES_TO_RUN = [
    Example(
        "flask_app.py",
        "flask",
        ("--port", "{port}"),
        "/products/A1",
        "/cart",
        "add-to-cart",
        False,
    ),
    Example(
        "django_app.py",
        "django",
        ("runserver", "127.0.0.1:{port}", "--noreload"),
        "/articles/hello",
        "/like/hello",
        "article-liked",
        False,
    ),
    Example(
        "fastapi_app.py",
        "fastapi",
        ("--port", "{port}"),
        "/products/A1",
        "/cart",
        "add-to-cart",
        True,
    ),
]


def browse_until_the_profile_cookie_is_set(browser: requests.Session, url: str) -> int:
    """GET pages until a response sets the profile cookie; returns how many were fetched."""
    deadline = time.monotonic() + 10
    pages = 0
    while time.monotonic() < deadline:
        response = browser.get(url, timeout=5)
        assert response.status_code == 200
        pages += 1
        if PROFILE in response.cookies:
            return pages
        time.sleep(0.05)
    raise AssertionError("the profile cookie was never set")


@pytest.mark.e2e
@pytest.mark.parametrize("example", EXAMPLES_TO_RUN, ids=lambda e: e.framework)
def test_the_example_app_tracks_each_visitor_under_its_cookies(
    example: Example, collector: Collector, tmp_path: Path
) -> None:
    pytest.importorskip(example.framework)
    if example.framework == "fastapi":
        pytest.importorskip("uvicorn")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    alice, bob = requests.Session(), requests.Session()
    for browser in (alice, bob):
        browser.headers["User-Agent"] = BROWSER
    log = tmp_path / "server.log"
    with (
        alice,
        bob,
        running(example.command(port), port=port, endpoint=collector.url, log=log) as server,
    ):
        landing = alice.get(base + "/", timeout=5)
        assert (landing.status_code, PROFILE in landing.cookies) == (200, False)
        collector.wait_for(1)
        pages = 1 + browse_until_the_profile_cookie_is_set(alice, base + example.page)
        assert alice.post(base + example.action, data={"sku": "B2"}, timeout=5).ok
        assert bob.get(base + "/", timeout=5).ok
        health = requests.get(base + "/healthz", timeout=5)
        assert (health.status_code, "Set-Cookie" in health.headers) == (200, False)
        if not example.graceful_sigterm:
            collector.wait_for(pages + 2)
    # uvicorn is stopped right after the last request: the lifespan's aclose() sent the rest.
    assert server.returncode is not None

    alice_ids = (alice.cookies[PROFILE], alice.cookies[SESSION])
    events = collector.events()
    by_visitor = Counter((e.profile_id, e.session_id, e.type) for e in events)
    bob_ids = next((e.profile_id, e.session_id) for e in events if e.session_id != alice_ids[1])
    assert {
        (*alice_ids, "page-view"): pages,
        (*alice_ids, example.action_type): 1,
        (*bob_ids, "page-view"): 1,
    } == dict(by_visitor), log.read_text()
    assert bob.cookies[SESSION] == bob_ids[1]
    assert bob_ids[0] != alice_ids[0]


@pytest.mark.e2e
def test_the_worker_example_files_each_job_under_its_customer(
    collector: Collector, tmp_path: Path
) -> None:
    command = [*python(str(EXAMPLES / "worker.py")), "--jobs", "30", "--threads", "4"]
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TRACARDI_ENDPOINT": collector.url,
        "TRACARDI_SOURCE_ID": SOURCE_ID,
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    log.write_text(done.stdout + done.stderr)

    assert done.returncode == 0, log.read_text()
    printed = dict(
        line.split(": profile ") for line in done.stdout.splitlines() if ": profile " in line
    )
    events = collector.events(type="order-shipped")
    by_profile = Counter(e.profile_id for e in events)
    assert 30 == len(events) == len({e.properties["order_id"] for e in events})
    assert {printed[c]: 10 for c in ("crm:1001", "crm:1002", "crm:1003")} == dict(by_profile)
    for event in events:  # order n belongs to customer n % 3, as the example deals them
        customer = ("crm:1001", "crm:1002", "crm:1003")[event.properties["order_id"] % 3]
        assert printed[customer] == event.profile_id
