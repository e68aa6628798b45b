"""SQLite storage: one row per accepted event, one per rejected request, plus profiles/sessions.

The database runs in WAL mode with ``synchronous=NORMAL``. Every ``/track`` request's rows are
committed before the collector answers 200: what a client saw accepted survives the collector
being stopped (or killed). ``:memory:`` (the default in-process) keeps nothing.

Requests handled at the same time share one commit (*group commit*): each writes its rows
into the open transaction (inside a savepoint of its own, so a failed request takes back only
its rows) and then waits; the last request under way commits for all of them, and each is
answered only after that commit. A commit costs about as much as storing a hundred events
(with 16 KiB pages, every commit writes each page it touched to the WAL), so with the few
events a request an importer sends per session, one commit per request was most of the cost.

Storing is most of the collector's work per event, so a request's events go in as a few
multi-row ``INSERT`` statements (the values they share bound once), new databases use 16 KiB
pages, and the ``type`` and ``profile_id`` indexes are only made (and from then on kept up
to date) once a query filters on them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import attrs

from ._state import ProfileRecord, SessionRecord

__all__ = ["BadRequest", "EventBatch", "Store", "StoredEvent"]


class EventBatch(NamedTuple):
    """One request's events, column by column, and the values they all share."""

    ids: Sequence[str]
    types: Sequence[str]
    payloads: Sequence[str]
    """Each event as JSON text."""
    profile_id: str | None
    session_id: str | None
    source_id: str
    task: str
    received_at: str


_RECORD_COLUMNS = {
    "profiles": "id TEXT NOT NULL, ids TEXT NOT NULL, metadata TEXT, created_at TEXT NOT NULL",
    "sessions": "id TEXT NOT NULL, profile_id TEXT, metadata TEXT, created_at TEXT NOT NULL",
}
"""``profiles`` and ``sessions`` are logs: a record is appended each time it is made or
changed, and the last row of an id is the record (its first row gives its place). Keyed by
id, each new session (random ids) went into a page of its own in the key's index, and every
commit writes each page it touched to the WAL: with an importer's requests, which bring a
new session each, that was a sixth of the collector's work per event."""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    profile_id TEXT,
    session_id TEXT,
    source_id TEXT NOT NULL,
    task TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bad (
    seq INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    body TEXT NOT NULL,
    user_agent TEXT
);
CREATE TABLE IF NOT EXISTS profiles ({_RECORD_COLUMNS["profiles"]});
CREATE TABLE IF NOT EXISTS sessions ({_RECORD_COLUMNS["sessions"]});
"""
_SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of :data:`_SCHEMA`. Version 0 kept ``profiles`` and ``sessions``
keyed by id (one row each, updated in place); a writable store migrates such a database."""
_UNKEY = """
ALTER TABLE {table} RENAME TO {table}_keyed;
CREATE TABLE {table} ({columns});
INSERT INTO {table} SELECT * FROM {table}_keyed ORDER BY rowid;
DROP TABLE {table}_keyed;
"""

logger = logging.getLogger("tracardi_tracker.collector")

_EVENT_COLUMNS = (
    "seq, event_id, type, profile_id, session_id, source_id, task, received_at, payload"
)
_BAD_COLUMNS = "seq, received_at, method, path, status, reason, detail, body, user_agent"
_PAGE_SIZE = 16384
_INDEXES = {
    "type": "CREATE INDEX IF NOT EXISTS events_by_type ON events (type)",
    "profile_id": "CREATE INDEX IF NOT EXISTS events_by_profile ON events (profile_id)",
}
"""Made when a query first filters on the column: keeping them up to date is more than a
third of SQLite's work per stored event, which a collector nobody queries that way can skip."""
_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPDATE_EVENT = (
    "UPDATE events SET event_id = ?, type = ?, profile_id = ?, session_id = ?, source_id = ?,"
    " task = ?, received_at = ?, payload = ? WHERE seq = ?"
)


def _insert_events_sql(rows: int) -> str:
    """One ``INSERT`` of ``rows`` events that share profile, session, source, task and time.

    Parameters: ``?1`` the first seq, ``?2``-``?6`` the shared values, then id, type and
    payload of each event. Binding each shared value once, and stepping one statement for
    many rows, costs SQLite (and the ``sqlite3`` module) much less than ``executemany``.
    """
    values = ",".join(
        f"(?1+{k},?{7 + 3 * k},?{8 + 3 * k},?2,?3,?4,?5,?6,?{9 + 3 * k})" for k in range(rows)
    )
    return f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES {values}"


_CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
"""Rows per multi-row ``INSERT`` (at most 774 parameters: under every SQLite's limit)."""
_INSERT_EVENTS = {rows: _insert_events_sql(rows) for rows in _CHUNKS}


@attrs.frozen(kw_only=True)
class StoredEvent:
    """One event the collector accepted and stored."""

    seq: int
    """Arrival order (1, 2, ...), across requests."""
    id: str
    """The event id: the client's ``id``, or a uuid4 the server made."""
    type: str
    """The stored type: stripped, lower-case, spaces turned into ``-``."""
    profile_id: str | None
    """The profile the event was attached to (``None`` when profile-less)."""
    session_id: str | None
    """The session the event was attached to (``None`` with ``saveSession: false``)."""
    source_id: str
    task: str
    """The ``task`` id of the answer that accepted it (one per request)."""
    received_at: str
    """When the collector stored it (ISO 8601, UTC)."""
    payload: dict[str, Any] = attrs.field(hash=False)
    """The event as stored: ``id``, ``type``, ``time``, ``properties``, ``context``, ``tags``,
    ``options``."""

    @property
    def properties(self) -> Any:
        """The event's ``properties``."""
        return self.payload.get("properties")

    @property
    def context(self) -> Any:
        """The event's ``context``."""
        return self.payload.get("context")

    @property
    def tags(self) -> Any:
        """The event's ``tags``."""
        return self.payload.get("tags")

    @property
    def options(self) -> Any:
        """The event's ``options`` (Tracardi's ``event.config``)."""
        return self.payload.get("options")

    @property
    def time(self) -> dict[str, str | None]:
        """``{"insert": ..., "create": ...}`` as ISO 8601 strings."""
        value = self.payload.get("time")
        return dict(value) if isinstance(value, dict) else {"insert": None, "create": None}

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``/micro/good`` lists."""
        return {
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "profile_id": self.profile_id,
            "session_id": self.session_id,
            "source_id": self.source_id,
            "task": self.task,
            "received_at": self.received_at,
            "event": self.payload,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredEvent:
        """Read back one object of ``/micro/good``."""
        return cls(
            seq=int(data["seq"]),
            id=str(data["id"]),
            type=str(data["type"]),
            profile_id=data.get("profile_id"),
            session_id=data.get("session_id"),
            source_id=str(data.get("source_id", "")),
            task=str(data.get("task", "")),
            received_at=str(data.get("received_at", "")),
            payload=dict(data.get("event") or {}),
        )


@attrs.frozen(kw_only=True)
class BadRequest:
    """A request to ``/track`` the collector answered with an error (not a fault it made)."""

    seq: int
    received_at: str
    method: str
    path: str
    status: int
    reason: str
    """A one-line summary: the detail message, or the first validation error."""
    detail: Any = attrs.field(hash=False)
    """What the answer carried under ``"detail"``."""
    body: str
    """The request body as text (cut at 64 KiB)."""
    user_agent: str | None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``/micro/bad`` lists."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BadRequest:
        """Read back one object of ``/micro/bad``."""
        return cls(
            seq=int(data["seq"]),
            received_at=str(data["received_at"]),
            method=str(data["method"]),
            path=str(data["path"]),
            status=int(data["status"]),
            reason=str(data["reason"]),
            detail=data.get("detail"),
            body=str(data.get("body", "")),
            user_agent=data.get("user_agent"),
        )


def _event_from_row(row: Sequence[Any]) -> StoredEvent:
    seq, event_id, type_, profile_id, session_id, source_id, task, received_at, payload = row
    return StoredEvent(
        seq=seq,
        id=event_id,
        type=type_,
        profile_id=profile_id,
        session_id=session_id,
        source_id=source_id,
        task=task,
        received_at=received_at,
        payload=json.loads(payload),
    )


def _bad_from_row(row: Sequence[Any]) -> BadRequest:
    seq, received_at, method, path, status, reason, detail, body, user_agent = row
    return BadRequest(
        seq=seq,
        received_at=received_at,
        method=method,
        path=path,
        status=status,
        reason=reason,
        detail=json.loads(detail),
        body=body,
        user_agent=user_agent,
    )


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
"""What ``json.dumps(value, separators=(",", ":"))`` uses, made once rather than per call."""


def _json_or_none(value: object) -> str | None:
    return None if value is None else _COMPACT_JSON.encode(value)


class Store:
    """The collector's SQLite database; every method is safe to call from any thread."""

    def __init__(self, path: str | Path | None = None, *, readonly: bool = False) -> None:
        self.path = ":memory:" if path is None else str(path)
        in_memory = self.path == ":memory:"
        if readonly and not in_memory:
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._writes = self._db.cursor()
        """The cursor of the request path's statements (``Connection.execute`` makes a new
        cursor each time)."""
        self._lock = threading.RLock()
        self._seq_by_id: dict[str, int] | None = None  # loaded on the first write
        self._next_seq = 1
        self._closed = False
        self._readonly = readonly
        self._indexed: set[str] = set()
        # Group commit (see the module doc): the open transaction's number, the last one
        # committed, requests that may still write into it, and what it holds so far.
        self._committed_cond = threading.Condition(self._lock)
        self._group = 1
        self._committed = 0
        self._active = 0
        self._open = False
        self._group_requests = 0
        self._group_events = 0
        self._failures: dict[int, BaseException] = {}
        self.commits = 0
        """Transactions committed so far (requests share them: see :meth:`leave_group`)."""
        if readonly:
            return
        self._db.execute("PRAGMA busy_timeout = 5000")
        # Before anything is written: 16 KiB pages (a new database only; an existing one keeps
        # its own) cost SQLite about a quarter less CPU per stored event than 4 KiB: fewer
        # pages to write to the WAL and to copy back from it.
        self._db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        if not in_memory:
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        if not in_memory:
            # Copy the WAL into the database after the commit that fills it, on this
            # connection: the next transaction then writes the WAL from its start again.
            self._db.execute(f"PRAGMA wal_autocheckpoint = {self.CHECKPOINT_PAGES}")

    def _migrate(self) -> None:
        """Bring a database made by an earlier schema to :data:`_SCHEMA_VERSION`, in one
        transaction: ``profiles`` and ``sessions`` keyed by id become logs (see
        :data:`_RECORD_COLUMNS`), their rows kept in order."""
        db = self._db
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version >= _SCHEMA_VERSION:
            return
        keyed = [
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name IN ('profiles', 'sessions') AND sql LIKE '%PRIMARY KEY%'"
            )
        ]
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in keyed:
                for statement in _UNKEY.format(table=table, columns=_RECORD_COLUMNS[table]).split(
                    ";"
                ):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if keyed:
            logger.info("migrated %s to the current schema", " and ".join(keyed))

    def _write_events(self, batch: EventBatch) -> None:
        """Insert a batch's new events and overwrite the ones stored before (same id).

        Tracardi indexes an event under its id, so a resend overwrites the stored event; here
        it keeps its first arrival order. The id-to-seq map lives in memory (an index on random
        ids would halve the insert rate); callers hold the lock and a transaction.
        """
        db = self._db
        writes = self._writes
        if self._seq_by_id is None:
            self._seq_by_id = dict(db.execute("SELECT event_id, seq FROM events"))
            (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            self._next_seq = int(last) + 1
        seq_by_id = self._seq_by_id
        ids = batch.ids
        count = len(ids)
        first = self._next_seq
        placed = dict(zip(ids, range(first, first + count), strict=True))
        shared = (
            batch.profile_id,
            batch.session_id,
            batch.source_id,
            batch.task,
            batch.received_at,
        )
        if len(placed) == count and seq_by_id.keys().isdisjoint(placed):
            # The common case: every id is new (and none repeats), so seqs follow in order.
            seq_by_id.update(placed)
            self._next_seq = first + count
            flat = list(chain.from_iterable(zip(ids, batch.types, batch.payloads, strict=True)))
            done = 0
            for rows in _CHUNKS:
                sql = _INSERT_EVENTS[rows]
                while count - done >= rows:
                    writes.execute(
                        sql, [first + done, *shared, *flat[3 * done : 3 * (done + rows)]]
                    )
                    done += rows
            return
        new: list[tuple[Any, ...]] = []
        resent: list[tuple[Any, ...]] = []
        for event_id, type_, payload in zip(ids, batch.types, batch.payloads, strict=True):
            seq = seq_by_id.get(event_id)
            if seq is None:
                seq = seq_by_id[event_id] = self._next_seq
                self._next_seq += 1
                new.append((seq, event_id, type_, *shared, payload))
            else:
                resent.append((event_id, type_, *shared, payload, seq))
        if new:
            writes.executemany(_INSERT_EVENT, new)
        if resent:
            writes.executemany(_UPDATE_EVENT, resent)

    def close(self) -> None:
        """Close the database (checkpointing the WAL); safe to call twice."""
        with self._lock:
            if not self._closed:
                self._flush()
                self._closed = True
                self._db.close()

    # -- writing --------------------------------------------------------------------------

    def write_track(
        self,
        events: EventBatch | None,
        profiles: Iterable[ProfileRecord] = (),
        sessions: Iterable[SessionRecord] = (),
    ) -> None:
        """Store one request's events and records and commit them (with whatever else was
        written into the open transaction) at once, without waiting for other requests."""
        with self._lock:
            self.stage(events, profiles, sessions)
            self._flush(raise_failure=True)

    # -- group commit -----------------------------------------------------------------------

    def enter_group(self) -> None:
        """A request that may write is under way: commits wait for it (see :meth:`leave_group`).

        Every call must be followed by one :meth:`leave_group`.
        """
        with self._lock:
            self._active += 1

    def stage(
        self,
        events: EventBatch | None,
        profiles: Iterable[ProfileRecord] = (),
        sessions: Iterable[SessionRecord] = (),
    ) -> int:
        """Write one request's events and records into the open transaction, uncommitted.

        Returns the number of the transaction, for :meth:`leave_group`. If writing fails,
        the whole transaction is rolled back and the error raised, here and to the other
        requests in it (a savepoint per request, to take back only its rows, would make
        SQLite copy every page it touches to a statement journal: it cost a third more per
        request). Nothing is acknowledged that is not stored either way.
        """
        profile_rows = [
            (p.id, json.dumps(list(p.ids)), _json_or_none(p.metadata), p.created_at)
            for p in profiles
        ]
        session_rows = [
            (s.id, s.profile_id, _json_or_none(s.metadata), s.created_at) for s in sessions
        ]
        with self._lock:
            writes = self._writes
            if not self._open:
                writes.execute("BEGIN")
                self._open = True
            try:
                if events is not None and events.ids:
                    self._write_events(events)
                if profile_rows:
                    writes.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?)", profile_rows)
                if session_rows:
                    writes.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?)", session_rows)
            except BaseException as error:
                self._abandon(error)
                raise
            self._group_requests += 1
            if events is not None:
                self._group_events += len(events.ids)
            return self._group

    def leave_group(self, group: int | None) -> None:
        """The request of :meth:`enter_group` is done writing; return once ``group`` (what
        :meth:`stage` returned; ``None`` if it wrote nothing) is committed.

        The transaction is committed by the last request under way to leave, or once it
        holds ``GROUP_REQUESTS`` requests or ``GROUP_EVENTS`` events, or when a request has
        waited ``GROUP_WAIT`` seconds for the others (a bound, never reached in practice:
        requests under way are doing CPU work). Raises what the commit raised if it failed.
        """
        with self._lock:
            self._active -= 1
            if group is None:
                if self._active <= 0 and self._open:
                    self._flush()
                return
            deadline: float | None = None
            while True:
                self._raise_failure(group)
                if self._committed >= group:
                    return
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.GROUP_WAIT
                if (
                    self._active <= 0
                    or self._group_requests >= self.GROUP_REQUESTS
                    or self._group_events >= self.GROUP_EVENTS
                    or now >= deadline
                ):
                    self._flush()
                    continue
                self._committed_cond.wait(deadline - now)

    def commit(self) -> None:
        """Commit the open transaction now, if there is one (a failure is kept for
        :meth:`check_committed`, and for the requests of :meth:`leave_group`)."""
        with self._lock:
            self._flush()

    def check_committed(self, group: int) -> None:
        """Raise if transaction ``group`` (what :meth:`stage` returned) failed to commit.

        Also when it was not committed yet: call :meth:`commit` first.
        """
        with self._lock:
            self._raise_failure(group)
            if self._committed < group:
                raise sqlite3.OperationalError("the transaction holding these rows is still open")

    def _raise_failure(self, group: int) -> None:
        failure = self._failures.get(group)
        if failure is not None:
            raise sqlite3.OperationalError(
                f"the transaction holding these rows failed: {failure}"
            ) from failure

    GROUP_REQUESTS = 64
    """Requests in one transaction at most before it is committed."""
    GROUP_EVENTS = 20_000
    """Events in one transaction at most before it is committed."""
    GROUP_WAIT = 0.05
    """Seconds a request waits at most for the others under way before committing."""
    CHECKPOINT_PAGES = 1000
    """WAL pages (16 KiB each in a new database) after which a commit copies the WAL into
    the database (SQLite's automatic checkpoint, run by the committing connection).

    Copied there, with no other connection reading, the whole WAL is in the database and
    the next transaction writes the WAL from its start again, so it stays at about this
    size. A checkpoint from another thread never caught up with the commits that kept
    coming during an import: the WAL grew without end (1.1 GB for 1,000,000 events) and
    writing it, into ever new parts of the file, took the collector a third more CPU per
    event (mostly the kernel's)."""

    def _flush(self, *, raise_failure: bool = False) -> None:
        """Commit the open transaction, if any, and wake the requests waiting for it (lock
        held). A failed commit is rolled back and raised to those requests (and here if
        ``raise_failure``)."""
        if not self._open:
            return
        group = self._group
        try:
            self._writes.execute("COMMIT")
        except sqlite3.Error as error:
            self._abandon(error)
            if raise_failure:
                raise
            return
        self._open = False
        self._group += 1
        self._group_requests = self._group_events = 0
        self._committed = group
        self.commits += 1
        self._committed_cond.notify_all()

    def _abandon(self, error: BaseException) -> None:
        """Roll the open transaction back after ``error``; its requests will raise it (lock
        held)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        self._seq_by_id = None  # read the ids again: this transaction's are not stored
        group = self._group
        self._failures[group] = error
        while len(self._failures) > 16:
            del self._failures[next(iter(self._failures))]
        logger.error("a write failed, %d request(s) rolled back: %s", self._group_requests, error)
        self._open = False
        self._group += 1
        self._group_requests = self._group_events = 0
        self._committed_cond.notify_all()

    def add_bad(
        self,
        *,
        received_at: str,
        method: str,
        path: str,
        status: int,
        reason: str,
        detail_json: str,
        body: str,
        user_agent: str | None,
    ) -> None:
        """Record a rejected request (``detail_json``: the answer's ``detail``, as JSON)."""
        with self._lock:
            self._flush()
            self._db.execute(
                "INSERT INTO bad (received_at, method, path, status, reason, detail, body,"
                " user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    received_at,
                    method,
                    path,
                    status,
                    reason,
                    detail_json,
                    body,
                    user_agent,
                ),
            )

    def reset(self) -> None:
        """Delete every event, rejected request, profile and session."""
        with self._lock:
            self._flush()
            self._db.executescript(
                "BEGIN; DELETE FROM events; DELETE FROM bad; DELETE FROM profiles;"
                " DELETE FROM sessions; COMMIT;"
            )
            self._seq_by_id = None

    # -- reading --------------------------------------------------------------------------

    def events(
        self,
        *,
        type: str | None = None,
        profile: str | None = None,
        session: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        """Stored events, in arrival order unless ``newest_first``, optionally filtered."""
        where, args = self._filters(type=type, profile=profile, session=session)
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_EVENT_COLUMNS} FROM events{where} ORDER BY seq {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            self._flush()
            self._index_for(type=type, profile=profile)
            rows = self._db.execute(sql, args).fetchall()
        return [_event_from_row(row) for row in rows]

    def count_events(
        self, *, type: str | None = None, profile: str | None = None, session: str | None = None
    ) -> int:
        """How many stored events match the filters."""
        where, args = self._filters(type=type, profile=profile, session=session)
        with self._lock:
            self._flush()
            if not where and self._seq_by_id is not None:
                return len(self._seq_by_id)  # one entry per stored event
            self._index_for(type=type, profile=profile)
            (count,) = self._db.execute(f"SELECT COUNT(*) FROM events{where}", args).fetchone()
        return int(count)

    def bad(self, *, limit: int | None = None, newest_first: bool = False) -> list[BadRequest]:
        """Rejected requests, in arrival order unless ``newest_first``."""
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_BAD_COLUMNS} FROM bad ORDER BY seq {order}"
        args: list[object] = []
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            self._flush()
            rows = self._db.execute(sql, args).fetchall()
        return [_bad_from_row(row) for row in rows]

    def count_bad(self) -> int:
        """How many requests were rejected."""
        with self._lock:
            self._flush()
            (count,) = self._db.execute("SELECT COUNT(*) FROM bad").fetchone()
        return int(count)

    def load_profiles(self) -> list[ProfileRecord]:
        """Every stored profile as last written, in creation order."""
        return [
            ProfileRecord(
                id=row[0],
                ids=tuple(json.loads(row[1])),
                metadata=json.loads(row[2]) if row[2] else None,
                created_at=row[3],
            )
            for row in self._records("SELECT id, ids, metadata, created_at FROM profiles")
        ]

    def load_sessions(self) -> list[SessionRecord]:
        """Every stored session as last written, in creation order."""
        return [
            SessionRecord(
                id=row[0],
                profile_id=row[1],
                metadata=json.loads(row[2]) if row[2] else None,
                created_at=row[3],
            )
            for row in self._records("SELECT id, profile_id, metadata, created_at FROM sessions")
        ]

    def _records(self, select: str) -> Iterable[Sequence[Any]]:
        """The last row of each id (the first column) of a log of records, in the order
        their ids first appear (see :data:`_RECORD_COLUMNS`)."""
        with self._lock:
            self._flush()
            rows = self._db.execute(f"{select} ORDER BY rowid").fetchall()
        return {row[0]: row for row in rows}.values()

    def _index_for(self, *, type: str | None, profile: str | None) -> None:
        """Make the indexes a query filtering on these needs, if not done yet (lock held)."""
        for column, value in (("type", type), ("profile_id", profile)):
            if value is not None and column not in self._indexed:
                if not self._readonly:
                    self._db.execute(_INDEXES[column])
                self._indexed.add(column)

    @staticmethod
    def _filters(
        *, type: str | None, profile: str | None, session: str | None
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        for column, value in (("type", type), ("profile_id", profile), ("session_id", session)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
