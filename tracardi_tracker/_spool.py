"""The durable spool: append-only logs that keep every event until Tracardi has it.

``spool=PATH`` names a directory (made when missing). Each emitter writes logs of its
own in it, ``<pid>-<token>.log``, and only ever appends to them.

Format
------
A log is a file of fixed size (``_SEGMENT_BYTES``, allocated up front) that holds a
sequence of records, then zeros. A record is ``length`` and ``crc32`` (two
little-endian ``uint32``) followed by a body of ``length`` bytes whose first byte is
its kind:

- ``V`` (always first): the format's name and version;
- ``H``: a payload head (``uint32`` number, then the head as JSON), written once per
  head and log, before the first event that uses it;
- ``E``: an event (``uint64`` seq, ``uint32`` head number, ``float64`` unix time,
  ``uint32`` length of the JSON ``{"i": event id, "s": session id, "v": visitor key,
  "p": profile hint}`` that follows, then the event's wire form as JSON: the
  envelope's ``event_json``, which the emitter then sends as is);
- ``A``: an acknowledgement: ``(first, last)`` ``uint64`` pairs of runs of seqs
  delivered (or finally rejected).

An event is *live* while no ``A`` record covers its seq. A reader stops at a zero
length, at a record cut short, or at one failing its checksum: a torn record (a
process killed while writing it) ends the log, everything before it is read. Records
of an unknown kind are skipped.

Writing
-------
A log is mapped into memory (``mmap``, ``MAP_SHARED``) and a record is written by
copying it into the mapping under the handle's lock: no system call and no release of
the GIL on the caller's path. The bytes are then in the operating system's page
cache, which belongs to the file, not to the process, exactly as after a ``write()``:
they survive a ``kill -9`` (or any crash) of the process. There is no ``fsync``: a
power cut or a kernel crash may lose the last events (out of scope, as it was for the
SQLite spool). The file's blocks are allocated when the log is made
(``posix_fallocate``, else zeros written), so a full disk is an ``OSError`` when a log
is made, never a ``SIGBUS`` while writing into it.

The first log is made by the first ``add()`` (a forked child that tracks nothing
makes none). When a log is half full a sender makes the next one
(:meth:`Spool.acknowledge` runs in its thread), so ``track()`` only switches to it; it
makes one itself only when no sender had the chance to (during an outage, say). An
emitter so keeps one or two logs of ``_SEGMENT_BYTES`` (4 MiB) on disk, plus the
full ones whose events are not yet delivered.

Ownership and replay
--------------------
- A live emitter holds an ``flock`` on each log it writes or took over, so nobody
  else reads or takes them. The kernel drops the lock when the process dies, so a
  dead process's logs are recognised without guessing from process ids.
- An emitter opening the spool takes every unlocked log, returns its live events (in
  the order they were tracked) to be sent first, and writes their acknowledgements
  into *that* log: if it dies while replaying, the next one resends only what was
  not yet acknowledged. A torn tail found there is zeroed first. So each event is
  sent once, except those of a payload in flight when a process died (delivered,
  not yet acknowledged): they are sent again, which Tracardi absorbs because the
  event id is kept.
- A log is deleted (while still locked) once none of its events is live. When a log
  is full a new one is started and the full one is deleted once its events are
  acknowledged, so the spool holds at most one log's worth of delivered events per
  emitter: it does not grow while events are being delivered.
- ``release()`` (at ``close()``) deletes the logs without live events and unlocks the
  others for the next emitter. An acknowledgement that arrives after that (a request
  in flight at the close deadline) is written only if nobody took the log meanwhile
  (the lock is taken again for it); otherwise it may be sent twice.
- A forked child closes its copies of the parent's mappings and descriptors without
  unlocking them (the lock belongs to the open file the parent still has) and writes
  logs of its own: it never takes or resends the parent's live events.
- Without ``fcntl`` (Windows; not tested there) the owner is told by the process id in the file name
  (``0`` once released) and a log is taken by renaming it to the taker's name; a
  reused process id can keep a dead process's log waiting until that process ends,
  and late acknowledgements are not written.

PATH used to name a SQLite file (a format never released): an existing regular file
at PATH is refused with a :class:`~tracardi_tracker.exceptions.ConfigurationError`.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import logging
import mmap
import os
import re
import struct
import sys
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._serialization import dumps, options_to_wire, time_to_wire
from ._visitors import Visitor
from .emitters import Envelope, PayloadHead
from .exceptions import ConfigurationError, TrackerClosedError
from .models import Options, Time

logger = logging.getLogger(__name__)

_flock: Callable[[int, int], None] | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    _flock = None
    _LOCK_EX_NB = _LOCK_UN = 0
else:
    _flock = fcntl.flock
    _LOCK_EX_NB = fcntl.LOCK_EX | fcntl.LOCK_NB
    _LOCK_UN = fcntl.LOCK_UN

_SEGMENT_BYTES = 4 << 20
"""The size of a log. Events fill it up to ``_RESERVE`` bytes before its end; the
rest is for acknowledgements (a log grows only when they need more)."""

_RESERVE = 64 << 10

_HEADER = struct.Struct("<II")  # body length, crc32 of the body
_EVENT = struct.Struct("<cQIdI")  # b"E", seq, head number, unix time, length of the meta
_HEAD = struct.Struct("<cI")  # b"H", head number
_RANGE = struct.Struct("<QQ")  # first and last seq of an acknowledged run
_SEQ_BITS = 40  # Envelope.spool_seq = (this handle's number of the log << 40) | seq
_SEQ_MASK = (1 << _SEQ_BITS) - 1
_OPEN_FLAGS = os.O_RDWR | getattr(os, "O_BINARY", 0)
_NAME = re.compile(r"^(\d+)-([0-9a-f]{32})\.log$")
_HEAD_CACHE = 10_000
_KEY_CACHE = 10_000
_PAGE = mmap.ALLOCATIONGRANULARITY


def _record(body: bytes) -> bytes:
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


_MAGIC = _record(b"Vtracardi-tracker spool 1")


class Spool:
    """One emitter's handle on a spool directory. Thread-safe.

    :meth:`add` logs an event, :meth:`remove` acknowledges delivered ones,
    :meth:`claim_orphans` takes over the logs nobody holds, :meth:`release` hands
    this handle's live events to whoever opens the spool next.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigurationError(
                f"spool {str(path)!r} is a file: a spool is a directory of logs (the"
                " SQLite spool file of unreleased versions is not read); give a directory"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigurationError(f"spool {str(path)!r} is not a directory") from None
        except OSError as error:  # a parent is a file, no permission, read-only disk...
            raise ConfigurationError(
                f"spool {str(path)!r} cannot be made: {error.strerror or error}"
            ) from error
        self.path = path
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._logs: dict[int, _Log] = {}
        self._next_index = 1
        self._current: _Log | None = None  # the log add() writes to, made on first use
        self._spare: _Log | None = None  # the next one, made by a sender in advance
        self._making_spare = False
        self._doomed: list[_Log] = []  # forgotten logs, deleted outside the lock
        self._keys: dict[Hashable, str] = {}
        self._closed = False
        _spools.add(self)
        if not os.access(path, os.W_OK | os.X_OK):  # fail here rather than in track()
            raise ConfigurationError(f"spool {str(path)!r} is not a writable directory")

    # -- the caller's path -----------------------------------------------------------

    def add(self, envelope: Envelope) -> None:
        """Log ``envelope`` (and its payload head, once per log) and set its
        ``spool_seq``. Raises ``OSError`` when a new log cannot be made (disk full)."""
        visitor = envelope.visitor
        head = envelope.head
        key = visitor.key
        session_id = envelope.session_id
        meta = dumps(
            {
                "i": envelope.event_id,
                # the id Tracardi answered for this session, if any (a dict read is atomic)
                "s": visitor.session_alias.get(session_id, session_id),
                "v": None if key is None else self._keys.get(key) or self._key_text(key),
                "p": head.profile_id or visitor.profile_id,
            }
        )
        event = envelope.event_json  # kept on the envelope: the emitter sends these bytes
        size = len(meta) + len(event)
        now = time.time()
        with self._lock:
            log = self._current
            if log is None or log.pos + size > log.limit:
                log = self._next_log(size)
            cached = log.heads.get(id(head))
            if cached is None or cached[0] is not head:
                head_no = self._log_head(log, head)
            else:
                head_no = cached[1]
            seq = log.next_seq
            body = _EVENT.pack(b"E", seq, head_no, now, len(meta)) + meta + event
            record = _HEADER.pack(len(body), zlib.crc32(body)) + body
            pos = log.pos
            end = pos + len(record)
            mm = log.mm
            if end > log.cap or mm is None:
                mm = _grow(log, end)
            mm[pos:end] = record
            log.pos = end
            log.next_seq = seq + 1
            log.live += 1
        envelope.spool_seq = log.base | seq

    def _key_text(self, key: Hashable) -> str:
        if len(self._keys) >= _KEY_CACHE:
            self._keys.clear()
        text = self._keys[key] = repr(key)
        return text

    def _log_head(self, log: _Log, head: PayloadHead) -> int:
        """Write ``head``'s record in ``log``; its number. Under the lock."""
        number = log.next_head
        _write(log, _record(_HEAD.pack(b"H", number) + dumps(_head_to_row(head))))
        log.next_head = number + 1
        if len(log.heads) >= _HEAD_CACHE:
            log.heads.clear()
        log.heads[id(head)] = (head, number)  # held, so its id is not reused meanwhile
        return number

    def _next_log(self, need: int) -> _Log:
        """Set the full log aside (to be deleted if nothing in it is live) and go on
        in the spare one a sender made, or in a new one. Under the lock."""
        if self._closed:
            raise TrackerClosedError("the spool is closed")
        full = self._current
        self._current = None
        if full is not None and full.live <= 0:
            self._forget(full)
        log = self._spare
        if log is not None and log.limit - log.pos >= need + 4096:
            self._spare = None
        else:  # no spare yet: make one here (its system calls on the caller's path)
            size = max(_SEGMENT_BYTES, _round_up(need + 4096 + _RESERVE))
            log = self._adopt(*_make_log(self.path, size))
        self._current = log
        return log

    def _adopt(self, fd: int, path: Path, mm: mmap.mmap | None) -> _Log:
        """Register a log this handle holds. Under the lock."""
        log = _Log(fd, path, self._next_index << _SEQ_BITS)
        self._logs[self._next_index] = log
        self._next_index += 1
        if mm is not None:
            log.mm = mm
            log.cap = len(mm)
            log.limit = log.cap - _RESERVE
            log.pos = len(_MAGIC)
        return log

    def _forget(self, log: _Log) -> None:
        """Unregister a held log with no live event; deleted by :meth:`_dispose` after
        the lock is let go (it stays locked until then). Under the lock."""
        self._logs.pop(log.base >> _SEQ_BITS, None)
        if log is self._current:
            self._current = None
        if log is self._spare:
            self._spare = None
        self._doomed.append(log)

    def _dispose(self) -> None:
        """Delete the forgotten logs (system calls: outside the lock)."""
        while self._doomed:
            try:
                log = self._doomed.pop()
            except IndexError:
                return
            _delete(log)

    # -- the senders' side -----------------------------------------------------------

    def remove(self, envelopes: Sequence[Envelope]) -> None:
        """Acknowledge delivered (or finally rejected) events, delete logs with no live
        event left and make the spare log :meth:`add` goes on in when its log is full.
        A failed write is logged (the events may be resent), not raised."""
        seqs = [envelope.spool_seq for envelope in envelopes]
        for envelope in envelopes:
            envelope.spool_seq = None  # acknowledged once, even if removed twice
        self.acknowledge(seqs)

    def acknowledge(self, seqs: list[int | None]) -> None:
        """:meth:`remove` by the events' spool rows (``None`` for one not in the spool).
        The list is emptied, so acknowledging it again does nothing."""
        taken = list(seqs)
        seqs.clear()
        by_log: dict[int, list[int]] = {}
        for seq in taken:
            if seq is not None:
                by_log.setdefault(seq >> _SEQ_BITS, []).append(seq & _SEQ_MASK)
        if not by_log:
            return
        acks = [(index, len(run), _record(b"A" + _ranges(run))) for index, run in by_log.items()]
        with self._lock:
            if self._closed:
                return
            for index, count, ack in acks:
                log = self._logs.get(index)
                if log is None:
                    continue
                log.live -= count
                if not log.held:
                    self._late_ack(log, ack)
                elif log.live <= 0 and log is not self._current and log is not self._spare:
                    self._forget(log)  # to be deleted: no acknowledgement needed
                else:
                    try:
                        _write(log, ack)
                    except OSError as error:
                        logger.warning("spool: acknowledgement not written (%s)", error)
            current = self._current
            make_spare = (
                self._spare is None
                and not self._making_spare
                and current is not None
                and current.pos > current.limit // 2
            )
            if make_spare:
                self._making_spare = True
        self._dispose()
        if make_spare:
            self._make_spare()

    def _make_spare(self) -> None:
        """Make the log :meth:`add` goes on in, off the caller's path."""
        made = None
        try:
            made = _make_log(self.path, _SEGMENT_BYTES)
        except OSError as error:
            logger.warning("spool: cannot make a log: %s", error)
        with self._lock:
            self._making_spare = False
            if made is not None:
                spare = self._adopt(*made)
                if self._closed or self._spare is not None:
                    self._forget(spare)
                else:
                    self._spare = spare
        self._dispose()

    def _late_ack(self, log: _Log, ack: bytes) -> None:
        """Acknowledge in a released log, if nobody took it meanwhile. Under the lock."""
        if _flock is None or log.mm is None or not _lock_linked(log.fd):
            return  # taken over (or deleted): the taker may send these events again
        try:
            log.pos = _scan(log.mm, log.pos, log.cap)  # after what a taker may have added
            _write(log, ack)
        except OSError as error:
            logger.warning("spool: acknowledgement not written (%s)", error)
        finally:
            with contextlib.suppress(OSError):
                _flock(log.fd, _LOCK_UN)

    # -- opening and closing ---------------------------------------------------------

    def claim_orphans(self) -> list[Envelope]:
        """Take over the logs nobody holds (their process is gone, or they were
        released); return their live events as envelopes, in the order tracked."""
        with self._lock:
            if self._closed:
                return []
            mine = {log.path.name for log in self._logs.values()}
            runs: list[list[tuple[float, Envelope]]] = []
            visitors: dict[str, Visitor] = {}
            heads: dict[tuple[bytes, str | None], PayloadHead] = {}
            for name in sorted(os.listdir(self.path)):
                match = _NAME.match(name)
                if match is None or name in mine:
                    continue
                log = self._take(self.path / name, int(match.group(1)))
                if log is None:
                    continue
                run = self._read_taken(log, visitors, heads)
                if run:
                    runs.append(run)
        self._dispose()
        # each log in its own order; between logs, by the time the events were tracked
        return [envelope for _, envelope in heapq.merge(*runs, key=lambda item: item[0])]

    def _take(self, path: Path, pid: int) -> _Log | None:
        """Open and own the log at ``path`` if nobody holds it. Under the lock."""
        if _flock is None:
            if _alive(pid):
                return None
            mine = path.with_name(f"{os.getpid()}-{uuid.uuid4().hex}.log")
            try:
                os.rename(path, mine)  # atomic: of several takers, one wins
            except OSError:
                return None
            path = mine
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return None
        if _flock is not None and not _lock_linked(fd):
            os.close(fd)  # held by a live emitter, or taken and deleted meanwhile
            return None
        return self._adopt(fd, path, None)

    def _read_taken(
        self,
        log: _Log,
        visitors: dict[str, Visitor],
        heads: dict[tuple[bytes, str | None], PayloadHead],
    ) -> list[tuple[float, Envelope]]:
        """The live events of a log just taken, which is then made ready for
        acknowledgements (or deleted when nothing in it is live). Under the lock."""
        try:
            data = _read_all(log.fd)
            parsed = _parse(data)
        except OSError as error:
            logger.warning("spool: cannot read %s: %s", log.path, error)
            parsed = None
        else:
            if parsed is None:
                logger.warning("spool: %s is not a spool log; left alone", log.path)
        if parsed is None:
            self._release_log(log)
            self._logs.pop(log.base >> _SEQ_BITS, None)
            _close(log)
            return []
        run: list[tuple[float, Envelope]] = []
        for seq, (head_no, tracked, meta, body) in parsed.events.items():
            head_row = parsed.heads.get(head_no)
            if head_row is None:
                logger.warning("spool: event %d of %s has no payload head", seq, log.path)
                continue
            try:
                envelope = _envelope(body, meta, head_row, visitors, heads)
            except (ValueError, KeyError, TypeError) as error:
                logger.warning("spool: event %d of %s unreadable: %s", seq, log.path, error)
                continue
            envelope.spool_seq = log.base | seq
            run.append((tracked, envelope))
        if not run:
            self._forget(log)
            return []
        log.pos = parsed.end
        log.live = len(run)
        try:
            size = max(len(data), _round_up(parsed.end + _RESERVE))
            _allocate(log.fd, size)
            log.mm = _map(log.fd, size)
            log.cap = log.limit = size
            if data.count(0, parsed.end) != len(data) - parsed.end:
                log.mm[parsed.end : len(data)] = bytes(len(data) - parsed.end)  # a torn tail
        except OSError as error:  # the events still go; mapped again at the first ack
            logger.warning("spool: cannot map %s: %s", log.path, error)
        return run

    def release(self) -> None:
        """Hand this handle's live events to whoever opens the spool next: logs with
        live events are unlocked, the others deleted. An event added later goes to
        a new log."""
        with self._lock:
            if self._closed:
                return
            self._current = self._spare = None
            for log in list(self._logs.values()):
                if not log.held:
                    continue
                if log.live <= 0:
                    self._forget(log)
                else:
                    self._release_log(log)
        self._dispose()

    def _release_log(self, log: _Log) -> None:
        log.held = False
        if _flock is not None:
            with contextlib.suppress(OSError):
                _flock(log.fd, _LOCK_UN)
            return
        match = _NAME.match(log.path.name)
        if match is not None:
            released = log.path.with_name(f"0-{match.group(2)}.log")
            with contextlib.suppress(OSError):  # Windows cannot rename an open file
                os.rename(log.path, released)
                log.path = released

    def count(self) -> int:
        """How many live events the spool holds, in every log (read from the files)."""
        total = 0
        for name in os.listdir(self.path):
            if _NAME.match(name) is None:
                continue
            try:
                data = (self.path / name).read_bytes()
            except OSError:
                continue
            parsed = _parse(data)
            if parsed is not None:
                total += len(parsed.events)
        return total

    def close(self) -> None:
        """Release (see :meth:`release`) and close the files; safe to call twice."""
        self.release()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for log in self._logs.values():
                _close(log)
            self._logs.clear()
        self._dispose()

    def _after_fork_in_child(self) -> None:
        """In a forked child: unmap and close the copies of the parent's logs *without*
        unlocking them (the lock belongs to the open file the parent still has)."""
        if self._pid == os.getpid():
            return
        self._lock = threading.Lock()  # a thread of the parent may have held it
        self._closed = True
        self._current = self._spare = None
        for log in [*self._logs.values(), *self._doomed]:
            _close(log)
        self._logs.clear()
        self._doomed.clear()

    def __del__(self) -> None:
        """A handle dropped without :meth:`close`: delete its logs with nothing live
        in them, close the rest (which unlocks them)."""
        if getattr(self, "_closed", True) or self._pid != os.getpid():
            return
        for log in [*self._logs.values(), *self._doomed]:
            if log.held and log.live <= 0:
                _delete(log)
            else:
                _close(log)


@attrs.define(eq=False)
class _Log:
    """One log file a handle holds: its own, or one taken over."""

    fd: int
    path: Path
    base: int  # the handle's number of this log, shifted: spool_seq = base | seq
    mm: mmap.mmap | None = None  # None until mapped, and once closed
    cap: int = 0  # mapped size
    limit: int = 0  # events start a new log past this offset
    pos: int = 0  # where the next record goes
    next_seq: int = 1
    live: int = 0  # events written (or found) and not yet acknowledged
    held: bool = True  # locked by this handle (False once released)
    next_head: int = 1
    heads: dict[int, tuple[PayloadHead, int]] = attrs.field(factory=dict)


@attrs.define
class _Parsed:
    heads: dict[int, bytes]
    events: dict[int, tuple[int, float, int, bytes]]  # seq -> head, time, meta length, JSON
    end: int  # where the last whole record ends


def _make_log(directory: Path, size: int) -> tuple[int, Path, mmap.mmap]:
    """Create, lock, allocate and map a new log of ``size`` bytes with its first
    record written."""
    for _ in range(100):
        path = directory / f"{os.getpid()}-{uuid.uuid4().hex}.log"
        fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if _flock is not None:
                try:
                    _flock(fd, _LOCK_EX_NB)
                except BlockingIOError:
                    os.close(fd)  # an emitter opening the spool took it for an orphan
                    continue
                if os.fstat(fd).st_nlink == 0:
                    os.close(fd)  # ... and has deleted it already: again
                    continue
            _allocate(fd, size)
            mm = _map(fd, size, populate=True)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        mm[: len(_MAGIC)] = _MAGIC
        return fd, path, mm
    raise OSError(errno.EAGAIN, f"could not make a log in spool {str(directory)!r}")


def _delete(log: _Log) -> None:
    """Delete a log's file and close it (deleted while still locked, so nobody can
    take it in between; Windows cannot delete an open file: closed first there)."""
    if _flock is not None:
        with contextlib.suppress(OSError):
            os.unlink(log.path)
        _close(log)
    else:
        _close(log)
        with contextlib.suppress(OSError):
            os.unlink(log.path)


def _write(log: _Log, record: bytes) -> None:
    """Copy ``record`` into the log's mapping at its end."""
    pos = log.pos
    end = pos + len(record)
    mm = log.mm
    if end > log.cap or mm is None:
        mm = _grow(log, end)
    mm[pos:end] = record
    log.pos = end


def _grow(log: _Log, end: int) -> mmap.mmap:
    """Make ``log`` at least ``end`` bytes long (allocated) and map it again."""
    if log.fd < 0:
        raise OSError(errno.EBADF, f"spool log {log.path} is closed")
    size = max(_round_up(end), os.fstat(log.fd).st_size)
    if end > log.cap:
        size = max(size, _round_up(end + _RESERVE))
    _allocate(log.fd, size)
    if log.mm is not None:
        log.mm.close()
    mm = log.mm = _map(log.fd, size)
    log.cap = size
    return mm


def _map(fd: int, size: int, *, populate: bool = False) -> mmap.mmap:
    """Map ``size`` bytes of the file, shared (writes go to the file's page cache);
    ``populate`` reads the pages in now, so the caller's first writes fault less."""
    if sys.platform == "win32":  # pragma: no cover
        return mmap.mmap(fd, size)
    flags = mmap.MAP_SHARED
    if populate:
        flags |= getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, size, flags=flags)


def _allocate(fd: int, size: int) -> None:
    """Extend the file to ``size`` bytes with allocated blocks of zeros (what it holds
    already is left as it is)."""
    start = os.fstat(fd).st_size
    if size <= start:
        return
    with contextlib.suppress(AttributeError, OSError):  # not everywhere: zeros written then
        os.posix_fallocate(fd, start, size - start)
        return
    os.lseek(fd, start, os.SEEK_SET)
    zeros = bytes(min(size - start, 1 << 20))
    left = size - start
    while left > 0:
        left -= os.write(fd, zeros[:left])


def _round_up(size: int) -> int:
    return -(-size // _PAGE) * _PAGE


def _close(log: _Log) -> None:
    if log.mm is not None:
        with contextlib.suppress(BufferError, OSError):
            log.mm.close()
        log.mm = None
    if log.fd >= 0:
        with contextlib.suppress(OSError):
            os.close(log.fd)
        log.fd = -1


def _lock_linked(fd: int) -> bool:
    """Lock ``fd`` without waiting; True when locked and the file is still in the
    directory (not deleted by whoever held it before). Unlocks again when False."""
    assert _flock is not None
    try:
        _flock(fd, _LOCK_EX_NB)
    except OSError:
        return False
    if os.fstat(fd).st_nlink > 0:
        return True
    with contextlib.suppress(OSError):
        _flock(fd, _LOCK_UN)
    return False


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _scan(data: Any, pos: int, end: int) -> int:
    """Where the whole records that start at ``pos`` end."""
    header = _HEADER.size
    while pos + header <= end:
        length, crc = _HEADER.unpack_from(data, pos)
        stop = pos + header + length
        if length == 0 or stop > end or zlib.crc32(data[pos + header : stop]) != crc:
            break
        pos = stop
    return pos


def _parse(data: bytes) -> _Parsed | None:
    """The heads and live events of a log; None when ``data`` is not a spool log."""
    if not data.startswith(_MAGIC):
        # empty, or its first record torn: a log with nothing in it
        return _Parsed({}, {}, 0) if not data.strip(b"\0") or _MAGIC.startswith(data) else None
    heads: dict[int, bytes] = {}
    events: dict[int, tuple[int, float, int, bytes]] = {}
    view = memoryview(data)
    pos = len(_MAGIC)
    end = len(data)
    header = _HEADER.size
    while pos + header <= end:
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + header
        stop = start + length
        if length == 0 or stop > end:
            break
        body = view[start:stop]
        if zlib.crc32(body) != crc:
            break
        kind = data[start]
        if kind == 0x45:  # E
            _, seq, head_no, tracked, meta = _EVENT.unpack_from(body)
            events[seq] = (head_no, tracked, meta, bytes(body[_EVENT.size :]))
        elif kind == 0x41:  # A
            for first, last in _RANGE.iter_unpack(body[1:]):
                for seq in range(first, last + 1):
                    events.pop(seq, None)
        elif kind == 0x48:  # H
            _, number = _HEAD.unpack_from(body)
            heads[number] = bytes(body[_HEAD.size :])
        pos = stop
    return _Parsed(heads, events, pos)


def _ranges(seqs: list[int]) -> bytes:
    """Seqs as ``(first, last)`` pairs of consecutive runs."""
    seqs.sort()
    pack = _RANGE.pack
    parts = []
    first = last = seqs[0]
    for seq in seqs[1:]:
        if seq != last + 1:
            parts.append(pack(first, last))
            first = seq
        last = seq
    parts.append(pack(first, last))
    return b"".join(parts)


if sys.platform == "win32":  # pragma: no cover - no fcntl: the fallback's liveness check
    import ctypes

    def _alive(pid: int) -> bool:
        if pid == 0:
            return False
        if pid == os.getpid():
            return True
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return bool(ctypes.GetLastError() == 5)  # access denied: it exists
        code = ctypes.c_ulong()
        try:
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return bool(code.value == 259)  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)

else:

    def _alive(pid: int) -> bool:
        """Whether process ``pid`` exists (0 names a released log: never alive)."""
        if pid == 0:
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


def _head_from_row(data: bytes) -> PayloadHead:
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


def _envelope(
    body: bytes,
    meta: int,
    head_row: bytes,
    visitors: dict[str, Visitor],
    heads: dict[tuple[bytes, str | None], PayloadHead],
) -> Envelope:
    """The envelope of an event record's JSON: ``meta`` bytes of ids, then the event."""
    fields = json.loads(body[:meta])
    hint = fields["p"]
    head = heads.get((head_row, hint))
    if head is None:
        head = heads.get((head_row, None))
        if head is None:
            head = heads[head_row, None] = _head_from_row(head_row)
        if hint is not None and head.profile_id is None:
            head = attrs.evolve(head, profile_id=hint)
        heads[head_row, hint] = head
    key = fields["v"] or f"own:{head.source_id}"
    visitor = visitors.get(key)
    if visitor is None:
        visitor = visitors[key] = Visitor(key)
    return Envelope(
        event_id=fields["i"],
        source=None,
        encoded=body[meta:],
        session_id=fields["s"],
        head=head,
        visitor=visitor,
    )


def _time_from(value: dict[str, str] | None) -> Time | None:
    return None if value is None else Time(**value)


_spools: weakref.WeakSet[Spool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for spool in list(_spools):
        spool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
