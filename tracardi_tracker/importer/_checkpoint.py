"""The checkpoint: which input rows are done, so an interrupted import resumes exactly.

Every input row has a *position*: ``input number << 40 | line``, increasing through the
inputs in the order given. A row is *done* when Tracardi acknowledged its event or it was
rejected (and written to the reject file). With several requests in flight, rows are done
out of order, so the checkpoint holds

- the **low-water mark** ``L``: every position below it is done (or is not this import's
  business: a blank line, another shard's row);
- the **done set** above it: positions ``>= L`` that are done already.

Rows travel in batches (one payload each), made in the order of their first rows, so the
first row not yet done is the first row of the oldest batch still on its way: the import
*holds* each batch's first position until the whole batch is done (:meth:`Checkpoint.hold`,
:meth:`Checkpoint.release`), which is per payload, not per row; of the rows done, memory
keeps only those above the first batch on its way.

Storage is one SQLite file (WAL mode): a *journal* row is appended and committed the moment
a payload is acknowledged (before the sender takes its next payload), so killing the process
loses at most the acknowledgements still on the wire (as 64-bit little-endian numbers: a
tenth of the cost of text; text ranges are read too); every second or so the journal is
folded into a *snapshot* (``L`` and the done set as ranges) in one transaction. The same file
keeps the profile ids Tracardi replaced (old → new), so later payloads of that profile, in
this run or a resumed one, use the new id.

A resumed import reads its inputs again from the start (to rebuild the sessions, which
depend on earlier rows) and sends only rows that are not done. The checkpoint also records
what the import *is* (inputs' fingerprints, source, endpoint, mapping, session gap, shard):
resuming with a different import is refused (:class:`CheckpointMismatchError`).
"""

from __future__ import annotations

import array
import bisect
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import CheckpointMismatchError, ImportConfigError

__all__ = ["FORMAT_VERSION", "Checkpoint", "decode_positions", "encode_positions", "position"]

FORMAT_VERSION = 1
_INPUT_SHIFT = 40
_TRIM_AT = 16_384  # done rows in memory before those below the first hold are dropped


def position(input_index: int, line: int) -> int:
    """The position of line ``line`` (1-based) of input number ``input_index`` (0-based)."""
    return (input_index << _INPUT_SHIFT) | line


def input_start(input_index: int) -> int:
    """The first position of input number ``input_index``."""
    return input_index << _INPUT_SHIFT


def encode_positions(positions: Iterable[int]) -> str:
    """Sorted positions as ranges: ``"5-9,12,20-21"``."""
    parts: list[str] = []
    run_start = previous = None
    for value in sorted(positions):
        if previous is not None and value == previous + 1:
            previous = value
            continue
        if run_start is not None:
            parts.append(str(run_start) if run_start == previous else f"{run_start}-{previous}")
        run_start = previous = value
    if run_start is not None:
        parts.append(str(run_start) if run_start == previous else f"{run_start}-{previous}")
    return ",".join(parts)


def decode_positions(text: str) -> set[int]:
    """The positions in an :func:`encode_positions` string."""
    found: set[int] = set()
    for part in text.split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        if last:
            found.update(range(int(first), int(last) + 1))
        else:
            found.add(int(first))
    return found


def _journal(positions: list[int]) -> bytes:
    """Positions as a journal row keeps them: 64-bit little-endian numbers, unsorted."""
    values = array.array("q", positions)
    if _BIG_ENDIAN:
        values.byteswap()
    return values.tobytes()


def _journaled(value: bytes | str) -> set[int]:
    """The positions of a journal row (numbers, or text ranges as earlier versions wrote)."""
    if isinstance(value, str):
        return decode_positions(value)
    values = array.array("q")
    values.frombytes(value)
    if _BIG_ENDIAN:
        values.byteswap()
    return set(values)


_BIG_ENDIAN = sys.byteorder == "big"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, positions TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (old TEXT PRIMARY KEY, new TEXT NOT NULL);
"""


class Checkpoint:
    """Done rows and replaced profile ids of one import (see the module doc).

    ``path=None`` keeps the state in a temporary file removed by :meth:`close` (the profile
    id map still needs a place that does not grow memory). Thread-safe: senders call
    :meth:`resolve` and the profile methods; the reading thread calls the rest.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, identity: Mapping[str, Any], *, restart: bool
    ) -> None:
        self.persistent = path is not None
        self._temporary: str | None = None
        if path is None:
            handle, name = tempfile.mkstemp(prefix="tracardi-import-", suffix=".sqlite")
            os.close(handle)
            self.path = Path(name)
            self._temporary = name
        else:
            self.path = Path(path)
            if restart:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.identity = dict(identity)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self.resumed, self.complete, self.previous = self._load()
        except sqlite3.DatabaseError as error:
            raise ImportConfigError(
                f"checkpoint {self.path} is not readable ({error}); remove it or use --restart"
            ) from None
        self._holds: dict[int, None] = {}  # first rows of the batches on their way, in order
        self._resolved: set[int] = set()  # done (those below the first hold are dropped)
        self._trim_at = _TRIM_AT
        self._replaced = self._count_profiles()
        self._last_snapshot = time.monotonic()

    # -- loading --------------------------------------------------------------------------

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _load(self) -> tuple[bool, bool, dict[str, Any]]:
        meta = self._meta()
        if not meta:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("version", str(FORMAT_VERSION)),
                    ("identity", json.dumps(self.identity, sort_keys=True)),
                    ("low_water", "0"),
                    ("done", ""),
                    ("complete", "0"),
                    ("totals", "{}"),
                ],
            )
            self._db.execute("COMMIT")
            self.low_water = 0
            self._done: set[int] = set()
            return False, False, {}
        if meta.get("version") != str(FORMAT_VERSION):
            raise CheckpointMismatchError(
                f"checkpoint {self.path} has format {meta.get('version')!r}, this importer "
                f"writes {FORMAT_VERSION}; use --restart or another checkpoint"
            )
        stored = json.loads(meta.get("identity", "{}"))
        if stored != self.identity:
            differences = sorted(
                key
                for key in set(stored) | set(self.identity)
                if stored.get(key) != self.identity.get(key)
            )
            detail = "; ".join(
                f"{key}: was {stored.get(key)!r}, now {self.identity.get(key)!r}"
                for key in differences
            )
            raise CheckpointMismatchError(
                f"checkpoint {self.path} belongs to another import ({detail}); "
                "use --restart to start over, or another --checkpoint"
            )
        self.low_water = int(meta["low_water"])
        done = decode_positions(meta.get("done", ""))
        for (value,) in self._db.execute("SELECT positions FROM journal"):
            done |= _journaled(value)
        self._done = {value for value in done if value >= self.low_water}
        previous = json.loads(meta.get("totals", "{}"))
        return True, meta.get("complete") == "1", previous

    def _count_profiles(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM profiles").fetchone()
        return int(count)

    # -- rows -----------------------------------------------------------------------------

    def is_done(self, where: int) -> bool:
        """Whether the row at ``where`` was done by an earlier run."""
        return where < self.low_water or where in self._done

    def hold(self, first: int) -> None:
        """Note that a batch whose first row is at ``first`` is on its way: no row from
        there on counts as done by the mark until :meth:`release`. Called with increasing
        positions (batches are made in the order of their first rows)."""
        self._holds[first] = None

    def release(self, positions: Sequence[int]) -> None:
        """The batch of these rows (increasing; held at the first) is done: every row
        acknowledged or rejected (any thread). In memory only those above the first batch
        still on its way are kept (the others are below the next mark; see :meth:`_trim`),
        so memory follows the rows open, not the pace. Journaling them is the caller's:
        :meth:`journal`."""
        with self._lock:
            holds = self._holds
            holds.pop(positions[0], None)
            if self.persistent:
                first = next(iter(holds)) if holds else positions[0]
                resolved = self._resolved
                resolved.update(positions[bisect.bisect_left(positions, first) :])
                if len(resolved) > self._trim_at:
                    self._trim()

    def journal(self, positions: list[int]) -> None:
        """Make acknowledgements durable at once: the journal only (the rows in memory
        come with :meth:`release`)."""
        if positions and self.persistent:
            with self._lock:
                self._db.execute(
                    "INSERT INTO journal (positions) VALUES (?)", (_journal(positions),)
                )

    def resolve(self, positions: list[int]) -> None:
        """Record rows as done, outside :meth:`release` (rejected rows, parts of a batch):
        journaled at once and kept in memory (any thread), as long as they are above the
        first batch on its way (:meth:`_trim`). A checkpoint without a file keeps none:
        nothing resumes from it.
        """
        if not positions or not self.persistent:
            return
        with self._lock:
            self._db.execute("INSERT INTO journal (positions) VALUES (?)", (_journal(positions),))
            resolved = self._resolved
            resolved.update(positions)
            if len(resolved) > self._trim_at:
                self._trim()

    def _trim(self) -> None:
        """Drop the done rows below the first batch on its way (under the lock); next time
        when twice as many are kept, so the cost per row stays constant."""
        holds = self._holds
        resolved = self._resolved
        if holds:  # (with none, rows above the next head may be here: kept)
            first = next(iter(holds))
            self._resolved = resolved = {value for value in resolved if value >= first}
        self._trim_at = max(_TRIM_AT, 2 * len(resolved))

    def due(self, interval: float = 1.0) -> bool:
        """Whether a snapshot is due (``interval`` seconds since the last)."""
        return time.monotonic() - self._last_snapshot >= interval

    def snapshot(self, head: int, totals: Mapping[str, Any] | None = None) -> int:
        """Fold the journal into a new low-water mark and done set; returns the mark.

        ``head`` is the position of the next row to be read: with nothing on its way, every
        row before it is done.
        """
        with self._lock:
            resolved = self._resolved
            holds = self._holds
            mark = max(self.low_water, next(iter(holds)) if holds else head)
            self._resolved = kept = {value for value in resolved if value >= mark}
            if self._done:  # done by an earlier run, above the mark
                self._done = {value for value in self._done if value >= mark}
            above = kept | self._done
            self.low_water = mark
            if self.persistent:
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM journal")
                rows = [("low_water", str(mark)), ("done", encode_positions(above))]
                if totals is not None:
                    rows.append(("totals", json.dumps(dict(totals), sort_keys=True)))
                self._db.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?", [(v, k) for k, v in rows]
                )
                self._db.execute("COMMIT")
            self._last_snapshot = time.monotonic()
            return mark

    def mark_complete(self, complete: bool = True) -> None:
        """Record that every row of the import is done (a re-run sends nothing)."""
        with self._lock:
            if self.persistent:
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'complete'", ("1" if complete else "0",)
                )
            self.complete = complete

    # -- profile ids ----------------------------------------------------------------------

    @property
    def replaced_profiles(self) -> int:
        """How many profile ids Tracardi replaced, over every run of this import."""
        return self._replaced

    def profile(self, sent: str) -> str | None:
        """The id Tracardi gave instead of ``sent``, if it replaced it."""
        if not self._replaced:
            return None
        with self._lock:
            row = self._db.execute("SELECT new FROM profiles WHERE old = ?", (sent,)).fetchone()
        return None if row is None else str(row[0])

    def replace_profile(self, old: str, new: str) -> bool:
        """Record that Tracardi answered ``new`` for ``old``; ``False`` if already known."""
        with self._lock:
            row = self._db.execute("SELECT new FROM profiles WHERE old = ?", (old,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO profiles VALUES (?, ?)", (old, new))
                self._replaced += 1
                return True
            if row[0] != new:
                self._db.execute("UPDATE profiles SET new = ? WHERE old = ?", (new, old))
                return True
            return False

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; a temporary one is removed. Idempotent."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()
        if self._temporary is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._temporary}{suffix}").unlink(missing_ok=True)
            self._temporary = None
