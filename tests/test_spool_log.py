"""The spool's logs: torn records, crashes while replaying, takers, growth, fallbacks."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from tracardi_tracker import ConfigurationError, Event, Tracker
from tracardi_tracker import _spool as spool_module
from tracardi_tracker._spool import Spool
from tracardi_tracker.emitters import Envelope

ROOT = Path(__file__).resolve().parents[1]


class Logging:
    """An emitter that only writes each event in a spool (and keeps the envelope)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.envelopes: list[Envelope] = []

    def emit(self, envelope: Envelope) -> None:
        self.spool.add(envelope)
        self.envelopes.append(envelope)

    def flush(self, timeout: float | None = None) -> int:
        return 0

    def close(self, timeout: float | None = None) -> int:
        return 0


def track(spool: Spool, count: int, start: int = 0) -> list[Envelope]:
    emitter = Logging(spool)
    tracker = Tracker("http://t.example", "src", emitter=emitter)
    for n in range(start, start + count):
        tracker.track(Event("x", {"n": n}))
    return emitter.envelopes


def ids(envelopes: list[Envelope]) -> list[str]:
    return [envelope.event_id for envelope in envelopes]


def crash(spool: Spool) -> None:
    """What the kernel does for a process killed with -9: its mappings and files are
    closed (so its locks dropped), nothing else happens."""
    for log in [*spool._logs.values(), *spool._doomed]:
        spool_module._close(log)
    spool._logs.clear()
    spool._closed = True


def logs(path: Path) -> list[Path]:
    return sorted(path.glob("*.log"))


def tracked_by_a_killed_process(path: Path, count: int) -> list[str]:
    """Ids of ``count`` events a process wrote in the spool before it was killed -9."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from tracardi_tracker import Event, Tracker
        from tracardi_tracker._spool import Spool
        class Logging:
            def __init__(self, spool): self.spool = spool
            def emit(self, envelope): self.spool.add(envelope)
            def flush(self, timeout=None): return 0
            def close(self, timeout=None): return 0
        tracker = Tracker("http://t.example", "src", emitter=Logging(Spool({str(path)!r})))
        ids = [tracker.track(Event("x", {{"n": n}})) for n in range({count})]
        print(",".join(ids), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.strip().split(",")


@pytest.fixture
def small_logs(monkeypatch: pytest.MonkeyPatch) -> int:
    """Logs of 64 KiB (a few hundred events) so tests fill several."""
    monkeypatch.setattr(spool_module, "_SEGMENT_BYTES", 64 << 10)
    monkeypatch.setattr(spool_module, "_RESERVE", 8 << 10)
    return 64 << 10


needs_flock = pytest.mark.skipif(spool_module._flock is None, reason="needs fcntl.flock")


# -- what survives --------------------------------------------------------------------


def test_events_of_a_killed_process_are_replayed_once_in_the_order_tracked(
    tmp_path: Path,
) -> None:
    tracked = tracked_by_a_killed_process(tmp_path / "spool", 120)
    taker = Spool(tmp_path / "spool")
    replayed = taker.claim_orphans()
    assert ids(replayed) == tracked
    assert [envelope.event["properties"]["n"] for envelope in replayed] == list(range(120))
    assert Spool(tmp_path / "spool").claim_orphans() == []  # the taker holds them
    taker.remove(replayed)
    taker.close()
    assert logs(tmp_path / "spool") == []
    assert Spool(tmp_path / "spool").claim_orphans() == []


def last_event_record(data: bytes) -> bytes:
    """The last event record of a (whole) log's bytes."""
    header = spool_module._HEADER
    pos, last = 0, b""
    while length := header.unpack_from(data, pos)[0]:
        stop = pos + header.size + length
        if data[pos + header.size] == ord("E"):
            last = data[pos:stop]
        pos = stop
    return last


@pytest.mark.parametrize("cut", [3, 8, 40, -1], ids=["in-header", "header", "in-body", "last-byte"])
def test_a_torn_tail_record_is_ignored_and_what_came_before_is_replayed(
    tmp_path: Path, cut: int
) -> None:
    tracked = tracked_by_a_killed_process(tmp_path / "spool", 10)
    (log,) = logs(tmp_path / "spool")
    data = log.read_bytes()
    end = spool_module._scan(data, 0, len(data))
    body = bytearray(last_event_record(data)[spool_module._HEADER.size :])
    struct.pack_into("<Q", body, 1, 11)  # an eleventh event...
    torn = spool_module._record(bytes(body))[:cut]  # ...cut short by the kill
    with log.open("r+b") as file:
        file.seek(end)
        file.write(torn)
    assert Spool(tmp_path / "spool").count() == 10

    taker = Spool(tmp_path / "spool")
    replayed = taker.claim_orphans()
    assert ids(replayed) == tracked
    taker.remove(replayed[:4])  # written where the torn record was
    crash(taker)

    again = Spool(tmp_path / "spool")
    assert ids(again.claim_orphans()) == tracked[4:]
    again.close()


def test_a_crash_while_replaying_resends_only_what_was_not_acknowledged(tmp_path: Path) -> None:
    tracked = tracked_by_a_killed_process(tmp_path / "spool", 50)
    first = Spool(tmp_path / "spool")
    replayed = first.claim_orphans()
    first.remove(replayed[:20])
    first.remove(replayed[30:35])
    crash(first)

    second = Spool(tmp_path / "spool")
    rest = second.claim_orphans()
    assert ids(rest) == tracked[20:30] + tracked[35:]
    second.remove(rest)
    second.close()
    assert logs(tmp_path / "spool") == []


def test_events_left_in_full_logs_are_kept_until_acknowledged(
    tmp_path: Path, small_logs: int
) -> None:
    spool = Spool(tmp_path / "spool")
    tracked = track(spool, 1500)
    assert len(logs(tmp_path / "spool")) > 3  # several logs filled
    spool.remove(tracked[::2])
    spool.close()
    assert spool.count() == 750

    taker = Spool(tmp_path / "spool")
    assert ids(taker.claim_orphans()) == ids(tracked[1::2])
    taker.close()


# -- who owns what ----------------------------------------------------------------------


def test_a_log_in_use_is_never_taken(tmp_path: Path) -> None:
    owner = Spool(tmp_path / "spool")
    track(owner, 5)
    other = Spool(tmp_path / "spool")
    assert other.claim_orphans() == []
    owner.release()
    assert len(other.claim_orphans()) == 5
    other.close()
    owner.close()


@needs_flock
def test_two_openers_at_once_split_the_orphans_without_overlap(tmp_path: Path) -> None:
    tracked: list[str] = []
    for _ in range(4):
        tracked += tracked_by_a_killed_process(tmp_path / "spool", 100)
    takers = [Spool(tmp_path / "spool") for _ in range(4)]
    barrier = threading.Barrier(len(takers))
    taken: list[list[str]] = [[] for _ in takers]

    def take(n: int) -> None:
        barrier.wait()
        taken[n] = ids(takers[n].claim_orphans())

    threads = [threading.Thread(target=take, args=(n,)) for n in range(len(takers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [event_id for part in taken for event_id in part]
    assert sorted(every) == sorted(tracked)  # each event taken, by exactly one opener
    for taker in takers:
        taker.close()


def test_an_acknowledgement_after_release_is_kept_when_nobody_took_the_log(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    tracked = track(spool, 6)
    spool.release()  # a close deadline: six events still in flight
    spool.remove(tracked[:2])  # the request in flight comes back
    spool.close()
    taker = Spool(tmp_path / "spool")
    assert ids(taker.claim_orphans()) == ids(tracked[2:])
    taker.close()


@needs_flock
def test_a_late_acknowledgement_is_not_written_in_a_log_another_opener_holds(
    tmp_path: Path,
) -> None:
    closing = Spool(tmp_path / "spool")
    tracked = track(closing, 6)
    closing.release()
    taker = Spool(tmp_path / "spool")
    replayed = taker.claim_orphans()
    taker.remove(replayed[2:])
    closing.remove(tracked[:2])  # its request in flight at the deadline comes back late
    taker.close()
    closing.close()
    last = Spool(tmp_path / "spool")
    assert ids(last.claim_orphans()) == ids(tracked[:2])  # sent twice; nothing lost
    last.close()


@needs_flock
def test_a_late_acknowledgement_goes_after_what_a_taker_wrote(tmp_path: Path) -> None:
    closing = Spool(tmp_path / "spool")
    tracked = track(closing, 6)
    closing.release()
    taker = Spool(tmp_path / "spool")
    taker.remove(taker.claim_orphans()[2:])
    taker.close()  # gives the log back with two events live
    closing.remove(tracked[:2])
    closing.close()
    assert Spool(tmp_path / "spool").claim_orphans() == []


def test_without_flock_owners_are_told_apart_by_their_process_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "_flock", None)
    owner = Spool(tmp_path / "spool")
    tracked = track(owner, 3)
    assert Spool(tmp_path / "spool").claim_orphans() == []  # its process is alive
    owner.close()  # released: renamed to process id 0
    (log,) = logs(tmp_path / "spool")
    assert log.name.startswith("0-")

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = log.with_name(f"{int(finished.stdout)}-{log.name.split('-', 1)[1]}")
    log.rename(dead)  # as a process that died without releasing leaves it
    taker = Spool(tmp_path / "spool")
    replayed = taker.claim_orphans()
    assert ids(replayed) == ids(tracked)
    assert Spool(tmp_path / "spool").claim_orphans() == []  # renamed to the taker's
    taker.remove(replayed)
    taker.close()
    assert logs(tmp_path / "spool") == []


# -- growth, paths and strangers ------------------------------------------------------


def test_the_spool_does_not_grow_while_events_are_delivered(
    tmp_path: Path, small_logs: int
) -> None:
    spool = Spool(tmp_path / "spool")
    largest = most = 0
    for round_ in range(100):
        batch = track(spool, 100, start=round_ * 100)  # about 30 KiB a round
        spool.remove(batch[:50])
        spool.remove(batch[50:])
        files = logs(tmp_path / "spool")
        most = max(most, len(files))
        largest = max(largest, sum(file.stat().st_size for file in files))
    assert most <= 3  # the log written, the spare, one full log not yet deleted
    assert largest <= 3 * small_logs
    assert spool.count() == 0
    spool.close()
    assert logs(tmp_path / "spool") == []


def test_a_missing_spool_directory_is_made(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "a" / "b" / "spool")
    track(spool, 1)
    assert len(logs(tmp_path / "a" / "b" / "spool")) == 1
    spool.close()


def test_a_file_at_the_spool_path_is_a_configuration_error(tmp_path: Path) -> None:
    old = tmp_path / "spool.sqlite3"
    old.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(ConfigurationError, match="directory"):
        Spool(old)


def test_a_directory_that_cannot_be_written_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o500)
    real_access = os.access

    def access(path: Any, mode: int) -> bool:  # root may write anywhere: say no for the spool
        return False if Path(path) == directory else real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(ConfigurationError, match="writable"):
        Spool(directory)


def test_a_spool_path_under_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file, not a directory")
    with pytest.raises(ConfigurationError, match="cannot be made"):
        Spool(tmp_path / "plain" / "spool")


def test_a_handle_that_logs_nothing_leaves_no_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")  # a forked child's, say, that tracks nothing
    assert spool.claim_orphans() == []
    assert logs(tmp_path / "spool") == []
    spool.close()
    assert logs(tmp_path / "spool") == []


def test_files_that_are_not_spool_logs_are_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    stranger = directory / f"{os.getpid() + 1_000_000}-{'0' * 32}.log"
    stranger.write_bytes(b"not a spool log")
    notes = directory / "notes.txt"
    notes.write_text("mine")
    spool = Spool(directory)
    assert spool.claim_orphans() == []
    spool.close()
    assert stranger.read_bytes() == b"not a spool log"
    assert notes.read_text() == "mine"


def test_an_empty_log_of_a_process_killed_while_making_it_is_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    empty = directory / f"{os.getpid() + 1_000_000}-{'1' * 32}.log"
    empty.write_bytes(bytes(4096))
    spool = Spool(directory)
    assert spool.claim_orphans() == []
    spool.close()
    assert not empty.exists()


@needs_flock
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_keep_a_dead_parents_logs_locked(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    child_ids, hold = os.pipe()
    wait, release_grandchild = os.pipe()
    pid = os.fork()
    if pid == 0:  # the parent-to-be-killed: logs events, forks, dies without releasing
        code = 1
        try:
            spool = Spool(path)
            written = ",".join(ids(track(spool, 3)))
            if os.fork() == 0:  # the grandchild lives on, still referencing the spool
                os.read(wait, 1)
                os._exit(0 if spool._closed else 3)
            os.write(hold, written.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(hold)
    tracked = os.read(child_ids, 10_000).decode().split(",")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    try:
        taker = Spool(path)
        assert ids(taker.claim_orphans()) == tracked
        taker.close()
    finally:
        os.write(release_grandchild, b"x")
        for fd in (child_ids, wait, release_grandchild):
            os.close(fd)


def test_an_event_larger_than_a_log_gets_a_log_of_its_own(tmp_path: Path, small_logs: int) -> None:
    spool = Spool(tmp_path / "spool")
    emitter = Logging(spool)
    tracker = Tracker("http://t.example", "src", emitter=emitter)
    tracker.track(Event("small"))
    tracker.track(Event("large", {"blob": "x" * (2 * small_logs)}))
    tracker.track(Event("small"))
    spool.close()
    taker = Spool(tmp_path / "spool")
    replayed = taker.claim_orphans()
    assert ids(replayed) == ids(emitter.envelopes)
    assert len(replayed[1].event["properties"]["blob"]) == 2 * small_logs
    taker.close()


def test_logs_are_filled_with_zeros_where_posix_fallocate_is_missing(
    tmp_path: Path, small_logs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    spool = Spool(tmp_path / "spool")
    tracked = track(spool, 600)  # several logs
    spool.remove(tracked[:100])
    spool.close()
    taker = Spool(tmp_path / "spool")
    replayed = taker.claim_orphans()
    assert ids(replayed) == ids(tracked[100:])
    taker.remove(replayed)
    taker.close()
    assert logs(tmp_path / "spool") == []
