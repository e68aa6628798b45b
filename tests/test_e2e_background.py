"""End to end against the local collector: background delivery (issue 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tracardi_tracker import BackgroundEmitter, Event, PageView, RetryPolicy, Subject, Tracker
from tracardi_tracker.testing import Collector

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
FAST_RETRY = RetryPolicy(attempts=10_000, initial_wait=0.01, max_wait=0.1, max_elapsed=120)


def background(collector: Collector, **kwargs: object) -> tuple[Tracker, BackgroundEmitter]:
    kwargs.setdefault("flush_interval", 0.02)
    kwargs.setdefault("retry", FAST_RETRY)
    emitter = BackgroundEmitter(**kwargs)  # type: ignore[arg-type]
    return Tracker(collector.url, "e2e-source", emitter=emitter), emitter


def run_python(script: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def test_an_outage_mid_stream_loses_nothing_and_track_does_not_wait(
    tracardi_collector: Collector,
) -> None:
    tracker, emitter = background(tracardi_collector, batch_size=50)
    ids = [tracker.track(Event("x", {"n": n})) for n in range(200)]
    tracardi_collector.outage(0.6)  # 503 to everything
    started = time.monotonic()
    ids += [tracker.track(Event("x", {"n": n})) for n in range(200, 400)]
    took = time.monotonic() - started
    time.sleep(0.3)
    tracardi_collector.refuse_connections(0.6)  # then the port is closed
    started = time.monotonic()
    ids += [tracker.track(Event("x", {"n": n})) for n in range(400, 600)]
    took += time.monotonic() - started
    assert took < 0.3  # 400 track() calls inside the outage windows: none waited for them
    assert tracker.flush(30) == 0
    stored = [event.id for event in tracardi_collector.events()]
    assert Counter(stored) == Counter(ids)  # every event once
    assert emitter.stats().retried > 0
    tracker.close()


def test_retry_after_of_a_429_is_honoured(tracardi_collector: Collector) -> None:
    tracker, emitter = background(tracardi_collector, batch_size=1)
    tracardi_collector.throttle(count=1, retry_after=1)
    started = time.monotonic()
    tracker.track(Event("x"))
    assert tracker.flush(10) == 0
    assert time.monotonic() - started >= 0.95
    assert len(tracardi_collector.events()) == 1
    assert emitter.stats().retried == 1
    tracker.close()


def test_close_against_a_dead_collector_returns_by_its_deadline_reporting_the_unsent(
    tracardi_collector: Collector,
) -> None:
    failed: list[str] = []
    tracker, _ = background(
        tracardi_collector,
        on_failure=lambda events, error: failed.extend(e.event_id for e in events),
    )
    tracardi_collector.refuse_connections(5)
    ids = [tracker.track(Event("x", {"n": n})) for n in range(50)]
    started = time.monotonic()
    unsent = tracker.close(0.5)
    assert time.monotonic() - started < 2.0
    assert unsent == 50
    deadline = time.monotonic() + 5
    while len(failed) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(failed) == sorted(ids)


def test_kill_9_with_a_spool_then_a_restart_delivers_everything_once(
    tracardi_collector: Collector, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    tracardi_collector.refuse_connections(3)  # nothing can be delivered before the kill
    child = run_python(
        f"""
        import sys
        from tracardi_tracker import BackgroundEmitter, Event, Tracker
        emitter = BackgroundEmitter(spool={str(spool)!r}, flush_interval=0.01)
        tracker = Tracker({tracardi_collector.url!r}, "e2e-source", emitter=emitter)
        ids = [tracker.track(Event("x", {{"n": n}})) for n in range(500)]
        print(",".join(ids), flush=True)
        sys.stdin.read()
        """
    )
    with child:
        assert child.stdout is not None
        ids = child.stdout.readline().strip().split(",")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert len(ids) == 500
    time.sleep(3.1)  # the refusal window ends
    tracardi_collector.clear_faults()
    emitter = BackgroundEmitter(spool=spool, flush_interval=0.01, retry=FAST_RETRY)
    assert emitter.flush(30) == 0
    emitter.close()
    assert Counter(event.id for event in tracardi_collector.events()) == Counter(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_delivers_its_own_events_once(tracardi_collector: Collector) -> None:
    tracker, _ = background(tracardi_collector, batch_size=1000, flush_interval=5)
    parent_ids = [tracker.track(Event("parent", {"n": n})) for n in range(20)]  # still queued
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            tracker.track(Event("child"))
            code = 0 if tracker.close(10) == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tracker.close(10) == 0
    stored = tracardi_collector.events()
    assert Counter(event.type for event in stored) == {"parent": 20, "child": 1}
    assert sorted(e.id for e in stored if e.type == "parent") == sorted(parent_ids)


def test_sixteen_threads_for_a_hundred_visitors_arrive_complete_and_apart(
    tracardi_collector: Collector,
) -> None:
    tracker, _ = background(tracardi_collector)
    visitors = [Subject(user_id=f"visitor-{n}") for n in range(100)]

    def work(thread: int) -> None:
        for n in range(1000):
            visitor = visitors[(thread * 7 + n) % 100]
            tracker.track(PageView(f"https://a.example/{n}", event_subject=visitor))
            # the visitor's name travels in the event too, to check where it landed

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.flush(60) == 0
    tracker.close()
    stored = tracardi_collector.events()
    assert len(stored) == 16_000
    by_profile: dict[str | None, set[str | None]] = {}
    for event in stored:
        by_profile.setdefault(event.profile_id, set()).add(event.session_id)
    assert len(by_profile) == 100  # one profile per visitor
    assert all(len(sessions) == 1 for sessions in by_profile.values())
    assert len({s for sessions in by_profile.values() for s in sessions}) == 100


def test_events_left_at_exit_are_flushed_by_the_atexit_hook(tracardi_collector: Collector) -> None:
    child = run_python(
        f"""
        from tracardi_tracker import Event, Tracker
        tracker = Tracker({tracardi_collector.url!r}, "e2e-source")
        for n in range(25):
            tracker.track(Event("at-exit", {{"n": n}}))
        """
    )
    with child:
        child.wait(30)
    assert child.returncode == 0
    assert len(tracardi_collector.events(type="at-exit")) == 25
