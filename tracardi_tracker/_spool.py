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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._serialization import options_to_wire, time_to_wire
from ._visitors import Visitor
from .emitters import Envelope, PayloadHead
from .models import Options, Time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    event_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_event_id ON events (event_id);
CREATE INDEX IF NOT EXISTS events_owner ON events (owner);
"""


_RELEASED = ""


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

    def add(self, envelope: Envelope) -> Envelope:
        """Write ``envelope`` so it outlives this process; returns it unchanged."""
        data = json.dumps(_to_row(envelope), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT INTO events (owner, event_id, data) VALUES (?, ?, ?)",
                (self._owner, envelope.event_id, data),
            )
        return envelope

    def remove(self, envelopes: Sequence[Envelope]) -> None:
        """Forget delivered (or finally rejected) events."""
        ids = [(envelope.event_id,) for envelope in envelopes]
        with self._lock:
            if self._closed:
                return
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM events WHERE owner = ? AND event_id = ?",
                [(self._owner, event_id) for (event_id,) in ids],
            )
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
                "SELECT data FROM events WHERE owner = ? ORDER BY seq", (self._owner,)
            ).fetchall()
            self._db.execute("COMMIT")
        visitors: dict[str, Visitor] = {}
        return [_from_row(json.loads(data), visitors) for (data,) in rows]

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


def _to_row(envelope: Envelope) -> dict[str, Any]:
    head = envelope.head
    visitor = envelope.visitor
    return {
        "event_id": envelope.event_id,
        "event": envelope.event,
        "session_id": visitor.adopted_session(envelope.session_id),
        "visitor": None if visitor.key is None else repr(visitor.key),
        "profile_hint": head.profile_id or visitor.profile_id,
        "head": {
            "url": head.url,
            "source_id": head.source_id,
            "profile_ids": list(head.profile_ids),
            "profile_metadata": _time(head.profile_metadata),
            "session_metadata": _time(head.session_metadata),
            "context": head.context,
            "properties": head.properties,
            "options": options_to_wire(head.options),
            "ip_address": head.ip_address,
        },
    }


def _time(value: Time | None) -> dict[str, str] | None:
    return None if value is None else time_to_wire(value)


def _from_row(row: dict[str, Any], visitors: dict[str, Visitor]) -> Envelope:
    head = row["head"]
    key = row["visitor"] or f"own:{head['source_id']}"
    visitor = visitors.get(key)
    if visitor is None:
        visitor = visitors[key] = Visitor(key)
    return Envelope(
        event_id=row["event_id"],
        source=None,
        wire=row["event"],
        session_id=row["session_id"],
        head=PayloadHead(
            url=head["url"],
            source_id=head["source_id"],
            profile_id=row["profile_hint"],
            profile_ids=tuple(head["profile_ids"]),
            profile_metadata=_time_from(head["profile_metadata"]),
            session_metadata=_time_from(head["session_metadata"]),
            context=head["context"],
            properties=head["properties"],
            options=Options.from_mapping(head["options"]),
            ip_address=head["ip_address"],
        ),
        visitor=visitor,
    )


def _time_from(value: dict[str, str] | None) -> Time | None:
    return None if value is None else Time(**value)


__all__ = ["Spool"]
