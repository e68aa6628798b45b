"""The import loop: read, map, shard, sessionise, batch, send, account; and :class:`Shard`."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from .._retry import RetryPolicy
from .._transport import Transport
from ..models import Options
from ..tracker import _endpoint_url
from . import _json
from ._checkpoint import Checkpoint, input_start, position
from ._errors import ImportAbortedError, ImportConfigError
from ._mapping import FieldError, FieldMapping, Mapper
from ._pipeline import Pipeline
from ._progress import NoProgress, ProgressState, make_progress
from ._readers import Input, Rows, csv_text, open_inputs
from ._sender import Batch, ProfileMapSink, RateLimiter, RejectSink, Sender
from ._sessions import DEFAULT_MAX_PROFILES, OutOfOrderError, Sessioniser
from ._summary import ImportSummary

__all__ = ["DEFAULT_RETRY", "Shard", "import_events"]

DEFAULT_RETRY = RetryPolicy(attempts=8, initial_wait=0.5, max_wait=15.0, max_elapsed=120.0)
"""Retries of one payload: patient, since giving up stops the import."""

_LINE_MASK = (1 << 40) - 1
_TICK = 256  # rows between looks at the answers and the clock (progress, snapshots)


def _shard_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


@attrs.frozen
class Shard:
    """Shard ``number`` of ``count`` (1-based): the profiles whose stable hash falls to it.

    Every row of a profile lands in the same shard, so ``count`` processes or machines can
    each import one shard of the same files side by side without breaking any profile's
    order. The hash is ``blake2b(profile id, 8 bytes) % count`` (rows without a profile use
    their session id, else their event id).
    """

    number: int = attrs.field(validator=attrs.validators.instance_of(int))
    count: int = attrs.field(validator=attrs.validators.instance_of(int))

    def __attrs_post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.number <= self.count:
            raise ImportConfigError(
                f"shard must be K/N with 1 <= K <= N, got {self.number}/{self.count}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Read ``"K/N"``, e.g. ``"2/4"`` for the second of four shards."""
        number, slash, count = text.partition("/")
        try:
            if not slash:
                raise ValueError(text)
            values = int(number), int(count)
        except ValueError:
            raise ImportConfigError(f"shard must look like K/N (e.g. 2/4), got {text!r}") from None
        return cls(*values)

    def owns(self, key: str) -> bool:
        """Whether the rows of profile ``key`` belong to this shard."""
        return self.count == 1 or _shard_hash(key) % self.count == self.number - 1

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ImportConfigError(f"{name} must be a positive number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ImportConfigError(f"{name} must be a whole number, got {value!r}")


def import_events(
    sources: Sequence[str | os.PathLike[str] | Rows],
    *,
    endpoint: str,
    source_id: str,
    mapping: FieldMapping | None = None,
    input_format: str | None = None,
    session_gap: float = 1800.0,
    batch_size: int = 500,
    concurrency: int = 16,
    rate: float | None = None,
    shard: Shard | str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    restart: bool = False,
    rejects: str | os.PathLike[str] | None = None,
    profile_map: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
    timeout: float = 30.0,
    progress: str = "none",
    progress_stream: TextIO | None = None,
    progress_interval: float = 10.0,
    stop: threading.Event | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    max_open_rows: int = 20_000,
    max_open_profiles: int = DEFAULT_MAX_PROFILES,
) -> ImportSummary:
    """Import historical events from files (or rows) into Tracardi, with their own times.

    ``sources`` are paths to JSON Lines or CSV files (gzip or not), ``"-"`` for standard
    input, or :class:`Rows`; they are read in order, as one stream, in constant memory.
    Each row becomes one event (see ``docs/importer.md`` for the format and ``mapping``).
    Rows without a session get one (a new one after ``session_gap`` seconds without an
    event of their profile). Payloads carry one session of one profile, up to
    ``batch_size`` events; they go over ``concurrency`` keep-alive connections with one
    request in flight on each, each profile's in order, from the calling thread (with a
    ``transport_factory``, from a thread per transport it makes); ``rate`` caps events per
    second.

    ``checkpoint`` (a file path) makes the import resumable: run the same call again after
    a crash or an interrupt and only what was not acknowledged is sent; once complete, a
    re-run sends nothing (``restart=True`` starts over). ``shard`` (``"K/N"`` or
    :class:`Shard`) imports only the profiles of one shard. Rows that cannot be sent are
    written to ``rejects`` (JSON Lines), and the import goes on; ``profile_map`` receives
    the profile ids Tracardi replaced. ``dry_run`` checks every row and sends nothing.

    ``progress`` is ``"none"`` (default), ``"auto"``, ``"bar"`` or ``"lines"``, written to
    ``progress_stream`` (stderr). Setting ``stop`` ends the import early, as Ctrl+C does.

    :returns: the :class:`ImportSummary` (``summary.exit_code`` is non-zero when rows were
        rejected or the run was interrupted).
    :raises ImportConfigError: for bad options, a bad mapping or a missing input.
    :raises CheckpointMismatchError: when ``checkpoint`` belongs to another import.
    :raises ImportAbortedError: when Tracardi refused the source or kept failing; the
        checkpoint holds the progress, ``error.summary`` the counts.
    """
    if not isinstance(source_id, str) or not source_id.strip():
        raise ImportConfigError(f"source_id must be a non-empty string, got {source_id!r}")
    url = _endpoint_url(endpoint)
    _positive("session_gap", session_gap)
    _positive("batch_size", batch_size, integer=True)
    _positive("concurrency", concurrency, integer=True)
    _positive("timeout", timeout)
    _positive("max_open_rows", max_open_rows, integer=True)
    _positive("max_open_profiles", max_open_profiles, integer=True)
    if rate is not None:
        _positive("rate", rate)
    if isinstance(shard, str):
        shard = Shard.parse(shard)
    mapping = mapping or FieldMapping()
    if input_format is not None:
        mapping = mapping.with_overrides(format=input_format)
    inputs = open_inputs(sources, mapping.format)
    mapper = Mapper(mapping, source_id)
    identity = {
        "inputs": [item.fingerprint() for item in inputs],
        "source": source_id,
        "endpoint": url,
        "mapping": attrs.asdict(mapping),
        "session_gap": session_gap,
        "shard": str(shard) if shard is not None else None,
        "max_open_profiles": max_open_profiles,
    }
    state = Checkpoint(None if dry_run else checkpoint, identity, restart=restart)
    try:
        if state.complete:
            return ImportSummary(
                inputs=tuple(item.name for item in inputs),
                skipped=int(state.previous.get("rows", 0)),
                complete=True,
                already_complete=True,
                checkpoint=str(state.path),
            )
        run = _Run(
            inputs=inputs,
            mapper=mapper,
            url=url,
            source_id=source_id,
            session_gap=session_gap,
            batch_size=batch_size,
            concurrency=concurrency,
            rate=rate,
            shard=shard,
            state=state,
            rejects=rejects,
            profile_map=profile_map,
            dry_run=dry_run,
            retry=retry or DEFAULT_RETRY,
            transport_factory=transport_factory,
            timeout=timeout,
            stop=stop or threading.Event(),
            max_open_rows=max_open_rows,
            max_open_profiles=max_open_profiles,
            progress=make_progress(
                progress,
                progress_stream,
                total=_total_size(inputs),
                interval=progress_interval,
            ),
        )
        summary = run.execute()
    finally:
        state.close()
    if summary.aborted is not None:
        raise ImportAbortedError(summary.aborted, summary)
    return summary


def _total_size(inputs: Sequence[Input]) -> int | None:
    sizes = [item.size for item in inputs]
    if any(size is None for size in sizes):
        return None
    return sum(size or 0 for size in sizes)


class _Run:
    """One run of an import: the state of the loop and what it counted."""

    def __init__(
        self,
        *,
        inputs: list[Input],
        mapper: Mapper,
        url: str,
        source_id: str,
        session_gap: float,
        batch_size: int,
        concurrency: int,
        rate: float | None,
        shard: Shard | None,
        state: Checkpoint,
        rejects: str | os.PathLike[str] | None,
        profile_map: str | os.PathLike[str] | None,
        dry_run: bool,
        retry: RetryPolicy,
        transport_factory: Callable[[], Transport] | None,
        timeout: float,
        stop: threading.Event,
        max_open_rows: int,
        max_open_profiles: int,
        progress: Any,
    ) -> None:
        self.inputs = inputs
        self.mapper = mapper
        self.batch_size = batch_size
        self.shard = shard
        self.state = state
        self.dry_run = dry_run
        self.stop = stop
        self.max_open_rows = max_open_rows
        self.progress = progress
        self.shows_progress = not isinstance(progress, NoProgress)
        self.reject_path = Path(rejects) if rejects is not None else None
        self.rejects = RejectSink(rejects, self._describe, None if dry_run else state)
        self.profile_map = (
            ProfileMapSink(profile_map) if profile_map is not None and not dry_run else None
        )
        self.sessions = Sessioniser(
            source_id=source_id,
            gap=session_gap,
            max_profiles=max_open_profiles,
            on_close=self._flush,
        )
        self.sender: Sender | Pipeline | None = None
        limit = RateLimiter(rate) if rate is not None else None
        if dry_run:
            pass
        elif transport_factory is None:  # our own connections: requests in flight, one thread
            self.sender = Pipeline(
                url=url,
                source_id=source_id,
                options=Options(),
                concurrency=concurrency,
                retry=retry,
                checkpoint=state,
                rejects=self.rejects,
                profile_map=self.profile_map,
                rate=limit,
                stop=stop,
                timeout=timeout,
            )
        else:  # the caller's transports (blocking posts): a thread each
            self.sender = Sender(
                url=url,
                source_id=source_id,
                options=Options(),
                concurrency=concurrency,
                transport_factory=transport_factory,
                retry=retry,
                checkpoint=state,
                rejects=self.rejects,
                profile_map=self.profile_map,
                rate=limit,
                stop=stop,
            )
        self.open: dict[str, Batch] = {}
        self.open_rows = 0
        self.rows = 0
        self.events = 0
        self.skipped = 0
        self.other_shards = 0
        self.head = 0
        self.started = time.monotonic()
        self.interrupted = False
        self.warnings: list[str] = []

    # -- helpers --------------------------------------------------------------------------

    def _describe(self, where: int, raw: bytes) -> tuple[str, int, str]:
        item = self.inputs[where >> 40]
        line = where & _LINE_MASK
        if item.detected_format == "csv":
            return item.name, line, csv_text(raw)
        return item.name, line, raw.decode("utf-8", "replace")

    def _flush(self, key: str) -> None:
        batch = self.open.pop(key, None)
        if batch is None:
            return
        self.open_rows -= len(batch)
        self.events += len(batch)
        if self.sender is not None:
            self.sender.submit(batch)
        else:  # a dry run: nothing is sent, nothing held
            self.state.release(batch.positions)

    def _progress_state(self) -> ProgressState:
        stats = self.sender.stats() if self.sender is not None else None
        bytes_read = sum(item.bytes_read for item in self.inputs)
        return ProgressState(
            rows=self.rows,
            sent=stats.sent if stats is not None else self.events,
            rejected=self.rejects.count,
            skipped=self.skipped + self.other_shards,
            bytes_read=bytes_read,
            bytes_total=_total_size(self.inputs),
            elapsed=time.monotonic() - self.started,
        )

    def _totals(self) -> dict[str, int]:
        previous = self.state.previous
        return {"rows": max(int(previous.get("rows", 0)), self.rows)}

    def _tick(self) -> None:
        if self.sender is not None:
            self.sender.poll()
        if self.shows_progress:
            self.progress.update(self._progress_state())
        if self.state.persistent and self.state.due():
            self.state.snapshot(self.head, self._totals())

    # -- the loop -------------------------------------------------------------------------

    def execute(self) -> ImportSummary:
        """Read every input, send, wait for the answers; return the account."""
        try:
            self._read_all()
        except KeyboardInterrupt:
            self.stop.set()
            self.interrupted = True
            self._finish()
            raise
        return self._finish()

    def _read_all(self) -> None:
        casts = self.mapper.mapping.casts()
        separator = self.mapper.mapping.list_separator
        for index, item in enumerate(self.inputs):
            self._read(index, item, casts, separator)
            if self.stop.is_set():
                self.interrupted = self.sender is None or self.sender.abort_reason is None
                return
            self.head = input_start(index + 1)
        self.sessions.close_all()
        for key in list(self.open):
            self._flush(key)

    def _read(self, index: int, item: Input, casts: Any, separator: str) -> None:
        base = input_start(index)
        rows_before = self.rows
        read = [0, base]  # rows read, next position: kept current by _read_rows
        try:
            self._read_rows(index, item, casts, separator, read)
        finally:
            self.rows = rows_before + read[0]
            self.head = max(self.head, read[1])

    def _read_rows(
        self, index: int, item: Input, casts: Any, separator: str, read: list[int]
    ) -> None:
        """The loop over one input's rows (the hot path: everything it needs is local)."""
        state = self.state
        resumed = state.resumed  # on a fresh run no row can be done before it is read
        is_done = state.is_done
        hold = state.hold
        reject = self.rejects.reject
        mapper_map = self.mapper.map
        profile_key = self.mapper.profile_key
        place = self.sessions.place
        shard = self.shard
        stop_is_set = self.stop.is_set
        open_batches = self.open
        batch_size = self.batch_size
        max_open = self.max_open_rows
        encode = _json.encode
        quick_encode = _json.quick_encoder()
        base = input_start(index)
        rows_before = self.rows
        last_line = 0
        count = 0
        countdown = _TICK
        for line, raw, data, error in item.records(casts, list_separator=separator):
            count += 1
            if line < 0:  # the rest of the input cannot be read
                assert error is not None
                read[0] = count
                reject(position(index, last_line + 1), raw, error[0], error[1], resolve=False)
                return
            last_line = line
            where = base | line
            countdown -= 1
            if countdown == 0:
                countdown = _TICK
                read[0] = count
                read[1] = where
                self.rows = rows_before + count
                self.head = where
                self._tick()
                if stop_is_set():  # this row is left for the next run
                    read[0] = count - 1
                    self.rows = rows_before + count - 1
                    return
            if data is None:
                assert error is not None
                if resumed and is_done(where):
                    self.skipped += 1
                else:
                    reject(where, raw, error[0], error[1])
                continue
            if shard is not None:
                quick = profile_key(data)
                if quick is not None and not shard.owns(quick):
                    self.other_shards += 1
                    continue
            try:
                row = mapper_map(raw, data)
            except FieldError as problem:
                if resumed and is_done(where):
                    self.skipped += 1
                else:
                    reject(where, raw, problem.field, problem.reason)
                continue
            key = row.key
            if shard is not None and not shard.owns(key):
                self.other_shards += 1
                continue
            try:
                session_id, session_meta = place(key, row, line)
            except OutOfOrderError as problem:
                if resumed and is_done(where):
                    self.skipped += 1
                else:
                    reject(where, raw, "time.create", problem.reason)
                continue
            if resumed and is_done(where):
                self.skipped += 1
                continue
            batch = open_batches.get(key)
            if batch is not None and (
                batch.session_id != session_id or len(batch.ends) >= batch_size
            ):
                self._flush(key)
                batch = None
            if batch is None:
                times = row.event["time"]
                batch = Batch(
                    key,
                    row.profile_id,
                    session_id,
                    session_meta,
                    times["create"],
                    times.get("insert"),
                )
                open_batches[key] = batch
                hold(where)
            try:  # Batch.add, inline: the event encoded while it is fresh
                encoded = quick_encode(row.event)
            except TypeError:  # what orjson does not encode (integers beyond 64 bits)
                encoded = encode(row.event)
            body = batch.body
            body += encoded
            batch.ends.append(len(body))
            body += b","
            batch.positions.append(where)
            batch.raws.append(raw)
            if row.profile_ids:
                known = batch.profile_ids
                known.extend(alias for alias in row.profile_ids if alias not in known)
            if row.profile_meta is not None and batch.profile_meta is None:
                batch.profile_meta = row.profile_meta
            if row.session_meta is not None and batch.session_meta is None:
                batch.session_meta = row.session_meta
            self.open_rows += 1
            if self.open_rows > max_open:
                self._flush(next(iter(open_batches)))
        read[0] = count
        read[1] = base | (last_line + 1)
        self._check_columns(item)

    def _check_columns(self, item: Input) -> None:
        columns = item.columns
        if not columns:
            return
        used = self.mapper.sources()
        unused = [column for column in columns if column.split(".")[0] not in used]
        if unused:
            self.warnings.append(
                f"{item.name}: column(s) {', '.join(unused)} not imported; map them with "
                "--map (e.g. --map properties.NAME=COLUMN) or name them properties.NAME"
            )

    def _finish(self) -> ImportSummary:
        sender = self.sender
        if sender is not None:
            sender.finish()
            while not sender.join(timeout=0.25):
                self.progress.update(self._progress_state())
            sender.close()
        self.rejects.close()
        if self.profile_map is not None:
            self.profile_map.close()
        self.progress.close(self._progress_state())
        stats = sender.stats() if sender is not None else None
        aborted = sender.abort_reason if sender is not None else None
        end = input_start(len(self.inputs))
        complete = False
        if not self.dry_run:
            head = end if not (self.interrupted or aborted or self.stop.is_set()) else self.head
            mark = self.state.snapshot(head, self._totals())
            complete = mark >= end and aborted is None and not self.interrupted
            if complete and self.state.persistent:
                self.state.mark_complete()
        return ImportSummary(
            inputs=tuple(item.name for item in self.inputs),
            rows=self.rows,
            events=self.events,
            sent=stats.sent if stats is not None else 0,
            rejected=self.rejects.count,
            skipped=self.skipped,
            other_shards=self.other_shards,
            sessions=self.sessions.derived,
            requests=stats.requests if stats is not None else 0,
            retries=stats.retries if stats is not None else 0,
            profiles_replaced=stats.profiles_replaced if stats is not None else 0,
            sessions_replaced=stats.sessions_replaced if stats is not None else 0,
            forced_splits=self.sessions.forced,
            duration=time.monotonic() - self.started,
            dry_run=self.dry_run,
            interrupted=self.interrupted or (self.stop.is_set() and aborted is None),
            aborted=aborted,
            complete=complete,
            checkpoint=str(self.state.path) if self.state.persistent else None,
            reject_file=str(self.reject_path) if self.reject_path is not None else None,
            profile_map_file=str(self.profile_map.path) if self.profile_map is not None else None,
            first_rejects=tuple(self.rejects.first),
            warnings=tuple(self.warnings),
        )
