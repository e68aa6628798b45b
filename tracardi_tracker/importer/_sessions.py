"""Sessionisation: cutting each profile's events into visits, in one pass, in bounded memory.

The input is read once, in file order, and must give **each profile's events in time
order** (a file sorted by time, or grouped by profile and sorted by time within each
profile, both qualify; anything else is refused row by row, see below). For every profile
key the table keeps only its last event time, line and current derived session; a row
without a session id continues that session when it comes at most ``gap`` seconds after
the profile's previous event, and starts a new one otherwise.

A derived session's id is ``uuid5(SESSION_NAMESPACE, source id, profile key, time of its
first event in µs)``, so a re-run (or a resumed run) derives the same ids; its metadata
times are those of its first event.

Memory is bounded by the profiles *active* at once, not by the file: a profile is dropped
from the table once the newest time read has passed its last event by more than ``gap``
(it can only start a new session then), and the oldest entries are dropped anyway beyond
``max_profiles`` (counted in :attr:`Sessioniser.forced`). Both rules only look at the input,
so a resumed import rebuilds the same table by reading the file again.

A row whose time is earlier than its profile's previous event (while the profile is in the
table) raises :class:`OutOfOrderError`: the row is rejected and the import goes on.
"""

from __future__ import annotations

from collections.abc import Callable

from ._mapping import SESSION_NAMESPACE, MappedRow, utc_text, uuid5_raw

__all__ = ["DEFAULT_MAX_PROFILES", "OutOfOrderError", "Sessioniser"]

DEFAULT_MAX_PROFILES = 200_000
"""Profiles kept in the table at most (about 250 bytes each)."""


class OutOfOrderError(Exception):
    """A row earlier than the previous event of its profile."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Entry:
    __slots__ = ("last", "line", "session", "start", "started")

    def __init__(self, last: float, line: int) -> None:
        self.last = last
        self.line = line
        self.session: str | None = None
        self.start: dict[str, str] | None = None
        self.started = 0.0


class Sessioniser:
    """Gives each row its session: the row's own, or a derived one (see the module doc).

    ``on_close(key)`` is called when a profile leaves the table, so whatever is batched for
    it can go out.
    """

    def __init__(
        self,
        *,
        source_id: str,
        gap: float,
        max_profiles: int = DEFAULT_MAX_PROFILES,
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        if gap <= 0:
            raise ValueError(f"the session gap must be positive, got {gap!r}")
        if max_profiles < 1:
            raise ValueError(f"max_profiles must be at least 1, got {max_profiles!r}")
        self.gap = gap
        self.max_profiles = max_profiles
        self._prefix = SESSION_NAMESPACE.bytes + source_id.encode() + b"\n"
        self._table: dict[str, _Entry] = {}
        self._watermark = float("-inf")
        self._on_close = on_close
        self.derived = 0
        """Sessions derived so far."""
        self.forced = 0
        """Profiles dropped from the table while possibly still active (``max_profiles``)."""

    def __len__(self) -> int:
        return len(self._table)

    def place(self, key: str, row: MappedRow, line: int) -> tuple[str, dict[str, str] | None]:
        """The session of ``row`` (of profile ``key``): its id, and its metadata times as
        they go out (``{"create": ..., "insert": ...}``) when derived here (``None`` when
        the row named its session).

        :raises OutOfOrderError: when ``row`` is earlier than the profile's previous event.
        """
        table = self._table
        t = row.t
        entry = table.pop(key, None)
        if entry is None:
            entry = _Entry(t, line)
        elif t < entry.last:
            table[key] = entry
            raise OutOfOrderError(
                f"{row.event['time']['create']} is earlier than the previous event of its "
                f"profile (line {entry.line}); each profile's events must be in time order: "
                "sort the input by time, or by profile and time"
            )
        table[key] = entry  # most recently used last
        explicit = row.session_id
        if explicit is not None:
            result: tuple[str, dict[str, str] | None] = (explicit, None)
        else:
            if entry.session is None or t - entry.last > self.gap:
                entry.session = uuid5_raw(self._prefix, f"{key}\n{round(t * 1e6)}".encode())
                entry.start = _start(row.event["time"])
                entry.started = t
                self.derived += 1
            result = (entry.session, entry.start)
        entry.last = t
        entry.line = line
        if t > self._watermark:
            self._watermark = t
        oldest = next(iter(table))
        if oldest != key and (
            table[oldest].last < self._watermark - self.gap or len(table) > self.max_profiles
        ):
            self._expire(key)
        return result

    def _expire(self, current: str) -> None:
        table = self._table
        horizon = self._watermark - self.gap
        while table:
            oldest = next(iter(table))
            if oldest == current:
                return
            entry = table[oldest]
            if entry.last >= horizon:
                if len(table) <= self.max_profiles:
                    return
                self.forced += 1
            del table[oldest]
            if self._on_close is not None:
                self._on_close(oldest)

    def close_all(self) -> None:
        """Drop every profile (end of input), calling ``on_close`` for each, oldest first."""
        keys = list(self._table)
        self._table.clear()
        if self._on_close is not None:
            for key in keys:
                self._on_close(key)


def _start(times: dict[str, str]) -> dict[str, str]:
    """A session's metadata times: its first event's (wire) times as ``format_utc`` writes
    them, ``insert`` defaulting to ``create``."""
    create = utc_text(times["create"])
    insert = times.get("insert")
    return {"create": create, "insert": utc_text(insert) if insert is not None else create}
