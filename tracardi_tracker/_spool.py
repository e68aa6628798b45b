"""The durable spool: a SQLite file that keeps every event until Tracardi has it.

Each ``emit()`` writes its event before returning (WAL journal, no fsync: the row
is with the operating system, so it survives ``kill -9`` of the process, though not
a power cut). Delivered events are deleted. Rows carry their owner (``pid:token``
of one emitter); a closing emitter releases what it could not send, and an emitter
opening the spool claims released rows and those of owners whose process is gone,
and sends them first. Processes and emitters sharing one spool file never send each
other's live events.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ._serialization import options_to_wire, time_to_wire
from ._visitors import Visitor
from .emitters import Envelope, PayloadHead
from .models import Options, Time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (
    id INTEGER PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    head INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    visitor TEXT,
    profile_hint TEXT,
    event TEXT NOT NULL
);
"""
# No index on purpose: rows are deleted by seq (the rowid), and owners are only looked
# up when an emitter opens or closes the spool.

_RELEASED = ""
"""The owner of rows an emitter handed back at close: any emitter may claim them."""


def _alive(owner: str) -> bool:
    if owner == _RELEASED:
        return False
    try:
        pid = int(owner.split(":", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """One process's connection to a spool file. Thread-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._owner = f"{os.getpid()}:{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._closed = False
        self._heads: dict[int, tuple[weakref.ref[PayloadHead], int]] = {}

    def add(self, envelope: Envelope) -> None:
        """Write ``envelope`` so it outlives this process (its payload head once)."""
        visitor = envelope.visitor
        event = json.dumps(envelope.event, separators=(",", ":"), ensure_ascii=False)
        head = self._head_id(envelope.head)
        row = (
            self._owner,
            head,
            envelope.event_id,
            visitor.adopted_session(envelope.session_id),
            None if visitor.key is None else repr(visitor.key),
            envelope.head.profile_id or visitor.profile_id,
            event,
        )
        with self._lock:
            envelope.spool_seq = self._db.execute(
                "INSERT INTO events (owner, head, event_id, session_id, visitor, profile_hint,"
                " event) VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            ).lastrowid

    def _head_id(self, head: PayloadHead) -> int:
        cached = self._heads.get(id(head))
        if cached is not None and cached[0]() is head:
            return cached[1]
        data = json.dumps(_head_to_row(head), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            row_id = self._db.execute("INSERT INTO heads (data) VALUES (?)", (data,)).lastrowid
        assert row_id is not None
        if len(self._heads) > 10_000:
            self._heads.clear()
        self._heads[id(head)] = (weakref.ref(head), row_id)
        return row_id

    def remove(self, envelopes: Sequence[Envelope]) -> None:
        """Forget delivered (or finally rejected) events."""
        seqs = [(envelope.spool_seq,) for envelope in envelopes if envelope.spool_seq is not None]
        with self._lock:
            if self._closed or not seqs:
                return
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM events WHERE seq = ?", seqs)
            self._db.execute("COMMIT")

    def claim_orphans(self) -> list[Envelope]:
        """Take over the rows of owners that are gone; return them as envelopes, in order."""
        with self._lock:
            owners = [row[0] for row in self._db.execute("SELECT DISTINCT owner FROM events")]
            dead = [owner for owner in owners if not _alive(owner)]
            if not dead:
                return []
            self._db.execute("BEGIN IMMEDIATE")
            for owner in dead:
                self._db.execute(
                    "UPDATE events SET owner = ? WHERE owner = ?", (self._owner, owner)
                )
            rows = self._db.execute(
                "SELECT e.seq, e.event_id, e.session_id, e.visitor, e.profile_hint, e.event,"
                " h.data FROM events e JOIN heads h ON h.id = e.head"
                " WHERE e.owner = ? ORDER BY e.seq",
                (self._owner,),
            ).fetchall()
            self._db.execute("DELETE FROM heads WHERE id NOT IN (SELECT DISTINCT head FROM events)")
            self._db.execute("COMMIT")
        visitors: dict[str, Visitor] = {}
        heads: dict[str, PayloadHead] = {}
        return [_from_row(row, visitors, heads) for row in rows]

    def release(self) -> None:
        """Hand this emitter's unsent rows to whoever opens the spool next."""
        with self._lock:
            if not self._closed:
                self._db.execute(
                    "UPDATE events SET owner = ? WHERE owner = ?", (_RELEASED, self._owner)
                )

    def count(self) -> int:
        """How many events the file holds, for every owner."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


def _head_to_row(head: PayloadHead) -> dict[str, Any]:
    return {
        "url": head.url,
        "source_id": head.source_id,
        "profile_id": head.profile_id,
        "profile_ids": list(head.profile_ids),
        "profile_metadata": _time(head.profile_metadata),
        "session_metadata": _time(head.session_metadata),
        "context": head.context,
        "properties": head.properties,
        "options": options_to_wire(head.options),
        "ip_address": head.ip_address,
    }


def _time(value: Time | None) -> dict[str, str] | None:
    return None if value is None else time_to_wire(value)


def _head_from_row(data: str) -> PayloadHead:
    head = json.loads(data)
    return PayloadHead(
        url=head["url"],
        source_id=head["source_id"],
        profile_id=head["profile_id"],
        profile_ids=tuple(head["profile_ids"]),
        profile_metadata=_time_from(head["profile_metadata"]),
        session_metadata=_time_from(head["session_metadata"]),
        context=head["context"],
        properties=head["properties"],
        options=Options.from_mapping(head["options"]),
        ip_address=head["ip_address"],
    )


def _from_row(
    row: tuple[Any, ...], visitors: dict[str, Visitor], heads: dict[str, PayloadHead]
) -> Envelope:
    seq, event_id, session_id, visitor_key, profile_hint, event, head_data = row
    head = heads.get(head_data)
    if head is None:
        head = heads[head_data] = _head_from_row(head_data)
    if profile_hint is not None and head.profile_id is None:
        head = attrs.evolve(head, profile_id=profile_hint)
    key = visitor_key or f"own:{head.source_id}"
    visitor = visitors.get(key)
    if visitor is None:
        visitor = visitors[key] = Visitor(key)
    return Envelope(
        event_id=event_id,
        source=None,
        wire=json.loads(event),
        session_id=session_id,
        head=head,
        visitor=visitor,
        spool_seq=seq,
    )


def _time_from(value: dict[str, str] | None) -> Time | None:
    return None if value is None else Time(**value)
