"""The durable spool with the background emitter: kill -9, close deadlines, outages,
processes and forks sharing one spool."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tracardi_tracker import BackgroundEmitter, Event, RetryPolicy, Tracker
from tracardi_tracker._capture import CapturingTransport
from tracardi_tracker._spool import Spool

FAST_RETRY = RetryPolicy(attempts=1000, initial_wait=0.005, max_wait=0.02, max_elapsed=60)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_events_survive_kill_9_and_are_sent_once_by_the_next_run(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    script = textwrap.dedent(
        f"""
        import sys
        from tracardi_tracker import BackgroundEmitter, Event, Tracker
        emitter = BackgroundEmitter(spool={str(spool)!r}, batch_size=50, flush_interval=0.01)
        tracker = Tracker("http://127.0.0.1:{closed_port()}", "src", emitter=emitter)
        ids = [tracker.track(Event("x", {{"n": n}})) for n in range(300)]
        print(",".join(ids), flush=True)
        sys.stdin.read()  # wait to be killed
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    ) as child:
        assert child.stdout is not None
        ids = child.stdout.readline().strip().split(",")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert len(ids) == 300

    transport = CapturingTransport()
    emitter = BackgroundEmitter(spool=spool, transport=transport, flush_interval=0.01)
    assert emitter.flush(10) == 0
    emitter.close(5)
    assert sorted(event["id"] for event in transport.events) == sorted(ids)
    left = Spool(spool)
    assert left.count() == 0
    left.close()

    again = CapturingTransport()
    BackgroundEmitter(spool=spool, transport=again).close(2)
    assert again.requests == []


def test_events_unsent_at_the_close_deadline_stay_in_the_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    dead = CapturingTransport(lambda payload: (503, {"detail": "down"}))
    failures: list[object] = []
    emitter = BackgroundEmitter(
        spool=spool,
        transport=dead,
        retry=FAST_RETRY,
        flush_interval=0.01,
        on_failure=lambda events, error: failures.append(error),
    )
    tracker = Tracker("http://t.example", "src", emitter=emitter)
    ids = [tracker.track(Event("x", {"n": n})) for n in range(20)]
    assert tracker.close(0.2) == 20
    deadline = time.monotonic() + 5  # the payload in flight at the deadline settles after
    while emitter.stats().spooled < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failures == []  # kept, not lost: nothing to report
    assert emitter.stats().spooled == 20

    transport = CapturingTransport()
    BackgroundEmitter(spool=spool, transport=transport, flush_interval=0.01).close(5)
    assert [event["id"] for event in transport.events] == ids


def test_an_overflowing_queue_keeps_events_in_the_spool_instead_of_dropping(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    dead = CapturingTransport(lambda payload: (503, {"detail": "down"}))
    emitter = BackgroundEmitter(
        spool=spool,
        transport=dead,
        retry=FAST_RETRY,
        max_queue=5,
        on_full="drop_newest",
        flush_interval=0.01,
    )
    tracker = Tracker("http://t.example", "src", emitter=emitter)
    ids = [tracker.track(Event("x", {"n": n})) for n in range(30)]
    stats = emitter.stats()
    assert stats.dropped == 0
    tracker.close(0.2)

    transport = CapturingTransport()
    BackgroundEmitter(spool=spool, transport=transport, flush_interval=0.01).close(5)
    assert sorted(event["id"] for event in transport.events) == sorted(ids)


def test_a_live_process_keeps_its_own_spooled_events(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    gate = CapturingTransport(lambda payload: (503, {"detail": "down"}))
    mine = BackgroundEmitter(spool=spool, transport=gate, retry=FAST_RETRY, flush_interval=0.01)
    Tracker("http://t.example", "src", emitter=mine).track(Event("x"))
    other = CapturingTransport()
    BackgroundEmitter(spool=spool, transport=other).close(1)
    assert other.requests == []  # the owner is alive: its events are not taken
    mine.close(0.1)


def live_tracker(spool: Path, count: int) -> subprocess.Popen[str]:
    """A process that tracks ``count`` events it cannot deliver, prints their ids and
    waits (alive) until it is killed."""
    script = textwrap.dedent(
        f"""
        import sys
        from tracardi_tracker import BackgroundEmitter, Event, RetryPolicy, Tracker
        retry = RetryPolicy(attempts=10**6, initial_wait=0.01, max_wait=0.05, max_elapsed=600)
        emitter = BackgroundEmitter(spool={str(spool)!r}, flush_interval=0.01, retry=retry)
        tracker = Tracker("http://127.0.0.1:{closed_port()}", "src", emitter=emitter)
        ids = [tracker.track(Event("x", {{"n": n}})) for n in range({count})]
        print(",".join(ids), flush=True)
        sys.stdin.read()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )


def sent_by_a_new_emitter(spool: Path) -> list[str]:
    transport = CapturingTransport()
    emitter = BackgroundEmitter(spool=spool, transport=transport, flush_interval=0.01)
    assert emitter.close(10) == 0
    return [event["id"] for event in transport.events]


def test_processes_sharing_a_spool_never_send_each_others_live_events(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first, second = live_tracker(spool, 40), live_tracker(spool, 60)
    with first, second:
        assert first.stdout is not None
        assert second.stdout is not None
        first_ids = first.stdout.readline().strip().split(",")
        second_ids = second.stdout.readline().strip().split(",")
        assert sent_by_a_new_emitter(spool) == []  # both alive: nothing taken

        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert sent_by_a_new_emitter(spool) == first_ids  # only the dead one's, in order

        second.send_signal(signal.SIGKILL)
        second.wait(10)
        assert sent_by_a_new_emitter(spool) == second_ids
    assert sent_by_a_new_emitter(spool) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_takes_or_resends_the_parents_live_events(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    dead = CapturingTransport(lambda payload: (503, {"detail": "down"}))
    emitter = BackgroundEmitter(spool=spool, transport=dead, retry=FAST_RETRY, flush_interval=0.01)
    tracker = Tracker("http://t.example", "src", emitter=emitter)
    parent_ids = [tracker.track(Event("parent", {"n": n})) for n in range(5)]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            transport = CapturingTransport()
            opened = BackgroundEmitter(spool=spool, transport=transport)
            opened.close(2)
            tracker.track(Event("child"))  # in the child's own log; kept at close
            tracker.close(0.2)
            code = 0 if transport.requests == [] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # the child took nothing of the parent's
    taker = Spool(spool)
    taken = taker.claim_orphans()  # the child closed its copies of the parent's log unlocked
    assert [envelope.event["type"] for envelope in taken] == ["child"]
    taker.close()
    tracker.close(0.2)
    assert sorted(sent_by_a_new_emitter(spool)) == sorted([*parent_ids, taken[0].event_id])
