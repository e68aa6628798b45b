"""Under gunicorn ``--preload`` with 2 workers, every request's event arrives exactly once."""

from __future__ import annotations

import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest
import requests
from web_helpers import BROWSER, SESSION, free_port, python, running

from tracardi_tracker.collector import Collector

pytest.importorskip("gunicorn")

VISITORS = 4
PAGES = 10

APP = textwrap.dedent(
    """
    import os
    import time

    from tracardi_tracker import Event, Tracker
    from tracardi_tracker.web.wsgi import TracardiMiddleware

    # Made in the master (--preload), which also tracks and so starts its worker thread
    # before forking: the children must neither send nor inherit this event.
    tracker = Tracker(os.environ["TRACARDI_ENDPOINT"], os.environ["TRACARDI_SOURCE_ID"])
    tracker.track(Event("App Loaded", {"pid": os.getpid()}))


    def shop(environ, start_response):
        time.sleep(0.005)  # long enough for the other worker to take the next request
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
        return [b"ok"]


    app = TracardiMiddleware(shop, tracker)
    """
)


@pytest.mark.e2e
def test_each_event_arrives_once_from_preloaded_forked_workers(
    collector: Collector, tmp_path: Path
) -> None:
    (tmp_path / "forked_app.py").write_text(APP)
    port = free_port()
    command = python(
        "-m", "gunicorn", "--preload", "--workers", "2", "--bind", f"127.0.0.1:{port}",
        "--graceful-timeout", "10", "--chdir", str(tmp_path), "forked_app:app",
    )  # fmt: skip
    pids: set[str] = set()
    sessions: dict[int, str] = {}
    log = tmp_path / "gunicorn.log"

    def browse(visitor: int) -> None:
        with requests.Session() as browser:
            browser.headers["User-Agent"] = BROWSER
            for page in range(PAGES):
                response = browser.get(f"http://127.0.0.1:{port}/v{visitor}/p{page}", timeout=5)
                response.raise_for_status()
                pids.add(response.headers["X-Pid"])
            sessions[visitor] = browser.cookies[SESSION]

    with running(command, port=port, endpoint=collector.url, log=log):
        threads = [threading.Thread(target=browse, args=(v,)) for v in range(VISITORS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        collector.wait_for(VISITORS * PAGES, type="page-view", timeout=10)
    # gunicorn stopped: anything still queued was flushed at the workers' exit.

    pages = Counter(e.payload["context"]["page"]["path"] for e in collector.events("page-view"))
    expected = {f"/v{v}/p{p}": 1 for v in range(VISITORS) for p in range(PAGES)}
    assert expected == dict(pages), log.read_text()
    assert len(collector.events("app-loaded")) == 1
    assert len(collector.events()) == VISITORS * PAGES + 1
    assert len(pids) == 2  # both forked workers served and sent
    for visitor, session in sessions.items():
        events = collector.events(session=session)
        assert {e.payload["context"]["page"]["path"][:3] for e in events} == {f"/v{visitor}"}
        assert len({e.profile_id for e in events}) == 1  # one profile, whichever worker sent
