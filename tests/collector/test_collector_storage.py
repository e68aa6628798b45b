"""The SQLite store: batched inserts, resends, counts, indexes made on demand, page size."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from tracardi_tracker.collector._config import CollectorConfig
from tracardi_tracker.collector._engine import Engine
from tracardi_tracker.collector._faults import FaultController
from tracardi_tracker.collector._state import ProfileRecord, SessionRecord
from tracardi_tracker.collector._store import EventBatch, Store


def batch(ids: list[str], *, type_: str = "page-view", task: str = "t-1") -> EventBatch:
    payloads = [
        json.dumps({"id": event_id, "type": type_, "n": n}) for n, event_id in enumerate(ids)
    ]
    return EventBatch(
        ids=ids,
        types=[type_] * len(ids),
        payloads=payloads,
        profile_id="p-1",
        session_id="s-1",
        source_id="src",
        task=task,
        received_at="2024-06-24T10:00:00Z",
    )


@pytest.fixture
def store() -> Iterator[Store]:
    store = Store(None)
    yield store
    store.close()


def test_a_large_request_is_stored_whole_and_in_order(store: Store) -> None:
    ids = [f"e-{n}" for n in range(600)]  # more rows than any one INSERT takes

    store.write_track(batch(ids))

    events = store.events()
    assert [(e.seq, e.id, e.payload["n"]) for e in events] == [
        (n + 1, f"e-{n}", n) for n in range(600)
    ]
    assert {(e.profile_id, e.session_id, e.source_id, e.task) for e in events} == {
        ("p-1", "s-1", "src", "t-1")
    }


def test_resent_and_repeated_ids_overwrite_and_keep_their_first_place(store: Store) -> None:
    store.write_track(batch(["a", "b", "c"], task="t-1"))

    store.write_track(batch(["d", "b", "d", "e"], type_="again", task="t-2"))

    events = store.events()
    assert [(e.seq, e.id, e.type, e.task) for e in events] == [
        (1, "a", "page-view", "t-1"),
        (2, "b", "again", "t-2"),
        (3, "c", "page-view", "t-1"),
        (4, "d", "again", "t-2"),
        (5, "e", "again", "t-2"),
    ]
    assert [e.payload["n"] for e in events if e.id == "d"] == [2]  # the later copy wins


def test_events_of_a_failed_write_can_be_stored_again(store: Store) -> None:
    broken = batch(["a", "b"])._replace(payloads=["{}", object()])  # type: ignore[list-item]
    with pytest.raises(sqlite3.Error):
        store.write_track(broken)

    store.write_track(batch(["a", "b"]))

    assert [(e.seq, e.id) for e in store.events()] == [(1, "a"), (2, "b")]


def test_all_events_are_counted_after_writes_resends_and_a_reset(store: Store) -> None:
    counts = [store.count_events()]
    store.write_track(batch(["a", "b"]))
    store.write_track(batch(["b", "c"]))
    counts.append(store.count_events())
    store.reset()
    counts.append(store.count_events())
    store.write_track(batch(["a"]))
    counts.append(store.count_events())

    assert counts == [0, 3, 0, 1]


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
        ).fetchall()
    conn.close()
    return {name for (name,) in rows}


def test_indexes_are_made_when_a_query_first_filters_on_them(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = Store(path)
    store.write_track(batch(["a", "b"]))
    seen = [_indexes(path)]

    by_type = store.count_events(type="page-view")
    seen.append(_indexes(path))
    by_profile = store.events(profile="p-1")
    seen.append(_indexes(path))
    store.close()

    assert (by_type, len(by_profile)) == (2, 2)
    assert seen == [set(), {"events_by_type"}, {"events_by_type", "events_by_profile"}]


def test_a_read_only_store_filters_without_making_indexes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = Store(path)
    writer.write_track(batch(["a", "b"]))
    writer.close()

    reader = Store(path, readonly=True)
    found = reader.events(type="page-view", profile="p-1")
    reader.close()

    assert (len(found), _indexes(path)) == (2, set())


def test_new_databases_use_16_kib_pages_and_older_ones_keep_theirs(tmp_path: Path) -> None:
    older = tmp_path / "older.db"
    with sqlite3.connect(older) as conn:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("CREATE TABLE kept (x)")
    conn.close()

    sizes = []
    for path in (tmp_path / "new.db", older):
        store = Store(path)
        store.write_track(batch(["a"]))
        store.close()
        with sqlite3.connect(path) as conn:
            sizes.append(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.close()

    assert sizes == [16384, 4096]


def test_the_wal_stays_small_while_commits_keep_coming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Store, "CHECKPOINT_PAGES", 8)
    path = tmp_path / "busy.db"
    store = Store(path)
    pad = "x" * 4000  # a page of 16 KiB holds three such events
    for commit in range(200):  # about 130 pages, and 400 WAL frames without checkpoints
        ids = [f"e-{commit}-{n}" for n in range(2)]
        payloads = [json.dumps({"id": event_id, "pad": pad}) for event_id in ids]
        store.write_track(batch(ids)._replace(payloads=payloads))

    wal_frames = (path.with_name("busy.db-wal").stat().st_size - 32) // (16384 + 24)
    assert wal_frames <= 8 + 4  # the WAL is written from its start again after each checkpoint
    assert store.count_events() == 400
    store.close()
    assert len(Store(path, readonly=True).events()) == 400


def test_the_engine_stores_a_request_as_one_batch(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    events = [{"id": f"e-{n}", "type": "Add To Cart", "properties": {"n": n}} for n in range(300)]
    body = {"source": {"id": "src"}, "session": {"id": "s-1"}, "events": events}

    reply = engine.handle(
        "POST", "/track", "", {"content-type": "application/json"}, json.dumps(body).encode()
    )

    stored = engine.store.events()
    assert (reply.status, len({e.task for e in stored})) == (200, 1)
    assert [(e.seq, e.id, e.type, e.properties) for e in stored] == [
        (n + 1, f"e-{n}", "add-to-cart", {"n": n}) for n in range(300)
    ]


def _visible(path: Path) -> list[str]:
    """Event ids another connection sees: what is committed."""
    with contextlib.closing(sqlite3.connect(path)) as other:
        return [row[0] for row in other.execute("SELECT event_id FROM events ORDER BY seq")]


@pytest.fixture
def grouping(tmp_path: Path) -> Iterator[tuple[Store, Path]]:
    """A store on a file whose shared transaction is committed only by the last request
    under way (or a full one): its wait for more requests is a minute."""
    path = tmp_path / "group.db"
    store = Store(path)
    store.GROUP_WAIT = 60.0
    try:
        yield store, path
    finally:
        store.close()


def test_concurrent_requests_share_one_commit_and_each_is_answered_after_it(
    grouping: tuple[Store, Path],
) -> None:
    store, path = grouping
    store.enter_group()
    store.enter_group()
    first = store.stage(batch(["a", "b"], task="t-1"))
    first_done = threading.Event()

    def leave_first() -> None:
        store.leave_group(first)
        first_done.set()

    waiter = threading.Thread(target=leave_first)
    waiter.start()
    waiter.join(0.2)
    assert (waiter.is_alive(), _visible(path)) == (True, [])  # waits for the other

    second = store.stage(batch(["c"], task="t-2"))
    store.leave_group(second)  # the last one under way: commits both
    waiter.join(10)

    assert (first_done.is_set(), first == second) == (True, True)
    assert (_visible(path), store.commits) == (["a", "b", "c"], 1)


def test_a_request_that_wrote_nothing_commits_for_those_waiting_when_it_leaves_last(
    grouping: tuple[Store, Path],
) -> None:
    store, path = grouping
    store.enter_group()
    store.enter_group()
    group = store.stage(batch(["a"]))
    waiter = threading.Thread(target=store.leave_group, args=(group,))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()

    store.leave_group(None)  # a rejected request, say
    waiter.join(10)

    assert (waiter.is_alive(), _visible(path), store.commits) == (False, ["a"], 1)


def test_a_transaction_holding_enough_requests_is_committed_without_waiting_for_others(
    grouping: tuple[Store, Path],
) -> None:
    store, path = grouping
    store.GROUP_REQUESTS = 2
    store.enter_group()  # a request under way that never writes
    for name in ("a", "b"):
        store.enter_group()
        group = store.stage(batch([name]))
    store.leave_group(group)  # returns: the transaction is full

    assert (_visible(path), store.commits) == (["a", "b"], 1)
    store.leave_group(None)


def test_a_failed_write_fails_every_request_of_its_transaction_and_stores_none_of_them(
    grouping: tuple[Store, Path],
) -> None:
    store, path = grouping
    store.enter_group()
    store.enter_group()
    group = store.stage(batch(["a"]))
    broken = batch(["b", "c"])._replace(payloads=["{}", object()])  # type: ignore[list-item]
    with pytest.raises(sqlite3.Error):
        store.stage(broken)
    store.leave_group(None)
    with pytest.raises(sqlite3.Error, match="the transaction holding these rows failed"):
        store.leave_group(group)

    store.write_track(batch(["a", "c"]))  # both can be sent again

    assert (_visible(path), [(e.seq, e.id) for e in store.events()]) == (
        ["a", "c"],
        [(1, "a"), (2, "c")],
    )


def test_micro_info_counts_commits_and_a_request_alone_is_committed_alone(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    body = {"source": {"id": "src"}, "session": {"id": "s-1"}, "events": [{"type": "a"}]}
    headers = {"content-type": "application/json"}

    counts = [engine.info()["commits"]]
    for _ in range(2):
        engine.handle("POST", "/track", "", headers, json.dumps(body).encode())
        counts.append(engine.info()["commits"])

    assert (counts, engine.store.count_events()) == ([0, 1, 2], 2)


def test_requests_staged_together_share_one_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "staged.db")
    engine = Engine(CollectorConfig(), store, FaultController())
    headers = {"content-type": "application/json"}
    bodies = [
        json.dumps(
            {"source": {"id": "src"}, "session": {"id": f"s-{n}"}, "events": [{"type": "a"}]}
        )
        for n in range(3)
    ]
    try:
        pending = [engine.stage_track("POST", "", headers, body.encode()) for body in bodies]
        seen_before = len(_visible(tmp_path / "staged.db"))
        engine.commit()
        statuses = [engine.finish_track(item).status for item in pending]

        expected = (0, [200, 200, 200], 1, 3)
        assert expected == (seen_before, statuses, store.commits, len(store.events()))
    finally:
        store.close()


def test_a_staged_request_is_not_answered_before_its_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "open.db")
    engine = Engine(CollectorConfig(), store, FaultController())
    body = {"source": {"id": "src"}, "session": {"id": "s-1"}, "events": [{"type": "a"}]}
    try:
        pending = engine.stage_track(
            "POST", "", {"content-type": "application/json"}, json.dumps(body).encode()
        )

        with pytest.raises(sqlite3.OperationalError, match="still open"):
            engine.finish_track(pending)
    finally:
        store.close()


def test_a_changed_record_is_read_back_as_last_written_in_its_first_place(store: Store) -> None:
    first = ProfileRecord(id="p-1", created_at="2024-06-24T10:00:00Z")
    second = ProfileRecord(id="p-2", created_at="2024-06-24T10:00:01Z")
    store.write_track(
        None, (first, second), (SessionRecord(id="s-1", profile_id=None, created_at="t"),)
    )

    store.write_track(
        None,
        (attrs.evolve(first, ids=("a-1",)),),
        (SessionRecord(id="s-1", profile_id="p-1", created_at="t"),),
    )

    assert store.load_profiles() == [attrs.evolve(first, ids=("a-1",)), second]
    assert store.load_sessions() == [SessionRecord(id="s-1", profile_id="p-1", created_at="t")]


_KEYED_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, type TEXT NOT NULL,
    profile_id TEXT, session_id TEXT, source_id TEXT NOT NULL, task TEXT NOT NULL,
    received_at TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE bad (seq INTEGER PRIMARY KEY, received_at TEXT NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    body TEXT NOT NULL, user_agent TEXT);
CREATE TABLE profiles (id TEXT PRIMARY KEY, ids TEXT NOT NULL, metadata TEXT,
    created_at TEXT NOT NULL);
CREATE TABLE sessions (id TEXT PRIMARY KEY, profile_id TEXT, metadata TEXT,
    created_at TEXT NOT NULL);
INSERT INTO profiles VALUES ('p-2', '[]', NULL, '2024-01-01T00:00:02Z');
INSERT INTO profiles VALUES ('p-1', '["a-1"]', '{"insert":"2023-01-01T00:00:00Z"}',
    '2024-01-01T00:00:01Z');
INSERT INTO sessions VALUES ('s-1', 'p-1', NULL, '2024-01-01T00:00:03Z');
"""
"""A database of the collector before profiles and sessions became logs (user_version 0)."""


def test_a_database_with_profiles_and_sessions_keyed_by_id_is_migrated_and_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keyed.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(_KEYED_SCHEMA)

    store = Store(path)
    before = (store.load_profiles(), store.load_sessions())
    store.write_track(None, (attrs.evolve(before[0][0], ids=("b-1",)),))
    after = store.load_profiles()
    store.close()

    assert before == (
        [
            ProfileRecord(id="p-2", created_at="2024-01-01T00:00:02Z"),
            ProfileRecord(
                id="p-1",
                ids=("a-1",),
                metadata={"insert": "2023-01-01T00:00:00Z"},
                created_at="2024-01-01T00:00:01Z",
            ),
        ],
        [SessionRecord(id="s-1", profile_id="p-1", created_at="2024-01-01T00:00:03Z")],
    )
    assert [(p.id, p.ids) for p in after] == [("p-2", ("b-1",)), ("p-1", ("a-1",))]
    with contextlib.closing(sqlite3.connect(path)) as check:
        version = check.execute("PRAGMA user_version").fetchone()[0]
        keyed = check.execute(
            "SELECT name FROM sqlite_master WHERE sql LIKE '%PRIMARY KEY%' ORDER BY name"
        ).fetchall()
    assert (version, keyed) == (1, [("bad",), ("events",)])


def test_a_read_only_store_reads_an_unmigrated_database_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "keyed.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(_KEYED_SCHEMA)

    reader = Store(path, readonly=True)
    profiles = [p.id for p in reader.load_profiles()]
    reader.close()

    with contextlib.closing(sqlite3.connect(path)) as check:
        version = check.execute("PRAGMA user_version").fetchone()[0]
    assert (profiles, version) == (["p-2", "p-1"], 0)
