"""Sending batches: what happens to one payload, and worker threads that send them.

A batch (one payload: one session of one profile, up to ``batch_size`` events) goes to
lane ``hash(profile) % concurrency``; a lane sends its batches one after the other, so
each profile's payloads reach Tracardi in order while different profiles go side by side.
Two senders share the per-payload rules below (:class:`Delivery`):

- :class:`~._pipeline.Pipeline` (the default): the reading thread itself keeps one request
  in flight on each of ``concurrency`` keep-alive connections, and reads the answers
  between rows; no thread switches, no lock, a fraction of the CPU per request;
- :class:`Sender`: one worker thread per lane, each with its own transport, for a
  ``transport_factory`` given by the caller (its ``post`` blocks until the answer).

Per payload:

- Tracardi's answer is adopted: a replaced profile id is recorded (checkpoint and the
  optional profile-map file) and used, with the old id as an alias in ``profile.ids``,
  for that profile's later payloads; a replaced session id is used for that session's later
  payloads;
- 5xx, 408, 429 and network errors are retried (:class:`~tracardi_tracker.RetryPolicy`);
  safe because every event carries its id, so Tracardi overwrites rather than duplicates.
  Still failing after the retries: the import stops (:class:`Abort`);
- 400/422: the payload is split in halves and retried until the events Tracardi refuses are
  alone; those rows go to the reject file, the others are sent;
- 401/406 (source unknown or disabled, bot traffic): the import stops, nothing more can go.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from .._retry import RetryPolicy, is_retryable
from .._serialization import options_to_wire, read_event_id, splice_events
from .._transport import TrackResponse, Transport
from ..exceptions import DeliveryError, PayloadRejectedError, SourceRejectedError
from ..models import Options
from . import _json
from ._checkpoint import Checkpoint
from ._errors import RowError
from ._mapping import utc_text

__all__ = [
    "Abort",
    "Batch",
    "Delivery",
    "RateLimiter",
    "RejectSink",
    "Sender",
    "SenderStats",
    "lane_of",
]

logger = logging.getLogger("tracardi_tracker.importer")

_SESSION_CACHE = 10_000


WireTimes = dict[str, str]
"""Metadata times as they go out: ``{"create": "...Z", "insert": "...Z"}``."""


def lane_of(key: str, lanes: int) -> int:
    """The lane (worker, connection) of profile ``key``: the same for all its payloads."""
    return zlib.crc32(key.encode()) % lanes


class Batch:
    """Events of one session of one profile, in time order, and where their rows are.

    The events are kept encoded, the moment each is added (:meth:`add`): ``body`` holds
    them as UTF-8 JSON, each followed by a comma, and ``ends[i]`` is where event ``i``
    ends; a payload splices them (:meth:`encoded`) instead of encoding objects that have
    long gone cold. ``first_create`` and ``first_insert`` are the first event's wire times
    (its ``time.create`` and ``time.insert``). ``session_meta`` and ``profile_meta`` are
    wire times (``None``: the batch's first event's times, :meth:`first_times`).
    """

    __slots__ = (
        "body",
        "ends",
        "first_create",
        "first_insert",
        "key",
        "positions",
        "profile_id",
        "profile_ids",
        "profile_meta",
        "raws",
        "session_id",
        "session_meta",
    )

    def __init__(
        self,
        key: str,
        profile_id: str | None,
        session_id: str,
        session_meta: WireTimes | None,
        first_create: str,
        first_insert: str | None,
    ) -> None:
        self.key = key
        self.profile_id = profile_id
        self.profile_ids: list[str] = []
        self.profile_meta: WireTimes | None = None
        self.session_id = session_id
        self.session_meta = session_meta
        self.first_create = first_create
        self.first_insert = first_insert
        self.body = bytearray()
        self.ends: list[int] = []
        self.positions: list[int] = []
        self.raws: list[bytes] = []

    def __len__(self) -> int:
        return len(self.ends)

    def add(self, event: bytes, where: int, raw: bytes) -> None:
        """Append one encoded event, the position of its row and the row as read (the
        import loop does the same inline)."""
        body = self.body
        body += event
        self.ends.append(len(body))
        body += b","
        self.positions.append(where)
        self.raws.append(raw)

    def encoded(self, start: int, end: int) -> memoryview:
        """Events ``start:end`` as they go in a payload's list: joined by commas."""
        begin = self.ends[start - 1] + 1 if start else 0
        return memoryview(self.body)[begin : self.ends[end - 1]]

    def event_ids(self, start: int = 0, end: int | None = None) -> list[str]:
        """The ids of events ``start:end`` (read back from their JSON: for errors only)."""
        ends = self.ends[start:end]
        begin = self.ends[start - 1] + 1 if start else 0
        ids = []
        for stop in ends:
            ids.append(read_event_id(bytes(self.body[begin:stop])))
            begin = stop + 1
        return ids

    def first_times(self) -> WireTimes:
        """The first event's times: ``create``, and ``insert`` (its own, else ``create``),
        as :func:`~tracardi_tracker._times.format_utc` writes them."""
        create = utc_text(self.first_create)
        insert = self.first_insert
        return {"create": create, "insert": utc_text(insert) if insert is not None else create}


class RateLimiter:
    """At most ``rate`` events per second over all workers (smooth, no bursts)."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def reserve(self, count: int) -> float:
        """Book ``count`` events; returns the seconds to wait before they may go."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + count / self.rate
        return start - now

    def acquire(self, count: int, stop: threading.Event) -> None:
        """Wait until ``count`` events may go (returns early when ``stop`` is set)."""
        delay = self.reserve(count)
        if delay > 0:
            stop.wait(delay)


class RejectSink:
    """Where rejected rows go: a JSONL file (optional), a count and the first few in memory.

    ``describe(position, raw)`` names the input and line and renders the raw row.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        describe: Callable[[int, bytes], tuple[str, int, str]],
        checkpoint: Checkpoint | None,
        *,
        keep: int = 20,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._describe = describe
        self._checkpoint = checkpoint
        self._keep = keep
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self.count = 0
        self.first: list[RowError] = []

    def reject(
        self, where: int, raw: bytes, field: str | None, reason: str, *, resolve: bool = True
    ) -> RowError:
        """Record one rejected row: the file first, then (if ``resolve``) the checkpoint."""
        name, line, text = self._describe(where, raw)
        error = RowError(file=name, line=line, field=field, reason=reason, row=text)
        with self._lock:
            self.count += 1
            if len(self.first) < self._keep:
                self.first.append(error)
            if self.path is not None:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(json.dumps(error.to_json(), ensure_ascii=False) + "\n")
                self._file.flush()
        if resolve and self._checkpoint is not None:
            self._checkpoint.resolve([where])
        return error

    def close(self) -> None:
        """Close the file; idempotent."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class ProfileMapSink:
    """Appends ``{"old": ..., "new": ...}`` lines for the profile ids Tracardi replaced."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def write(self, old: str, new: str) -> None:
        """Append one replacement."""
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps({"old": old, "new": new}, ensure_ascii=False) + "\n")
                self._file.flush()

    def close(self) -> None:
        """Close the file; idempotent."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class SenderStats:
    """One worker's counts (summed over workers by :meth:`Sender.stats`)."""

    __slots__ = (
        "profiles_replaced",
        "rejected",
        "requests",
        "retries",
        "sent",
        "sessions_replaced",
    )

    def __init__(self) -> None:
        self.sent = 0
        self.requests = 0
        self.retries = 0
        self.rejected = 0
        self.profiles_replaced = 0
        self.sessions_replaced = 0

    def add(self, other: SenderStats) -> None:
        """Add ``other``'s counts to these."""
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Abort(Exception):
    """Tracardi stopped the import: the reason, for the user."""


class _Stopped(Exception):
    """The import is stopping (interrupt or abort); leave the rest unsent."""


class Delivery:
    """The rules for one payload, whichever sender sends it (see the module doc).

    Builds a batch's payload bytes, records an acknowledgement (checkpoint, counts, the ids
    Tracardi replaced), and sends synchronously with retries and splitting when the fast
    path meets anything but success.
    """

    def __init__(
        self,
        *,
        url: str,
        source_id: str,
        options: Options,
        retry: RetryPolicy,
        checkpoint: Checkpoint,
        rejects: RejectSink,
        profile_map: ProfileMapSink | None = None,
        rate: RateLimiter | None = None,
        stop: threading.Event,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.source_id = source_id
        self.options = options
        self._source = {"id": source_id}
        self._options_wire = options_to_wire(options)
        self.retry = retry
        self._later = (
            attrs.evolve(retry, attempts=retry.attempts - 1) if retry.attempts > 1 else None
        )
        self.checkpoint = checkpoint
        self.rejects = rejects
        self.profile_map = profile_map
        self.rate = rate
        self.stop = stop
        self.headers = dict(headers or {})
        self.abort_reason: str | None = None
        self._abort_lock = threading.Lock()

    # -- one payload ----------------------------------------------------------------------------

    def payload(
        self,
        batch: Batch,
        start: int,
        end: int,
        sessions: Mapping[str, str],
    ) -> tuple[bytes, str | None]:
        """The payload of events ``start:end`` of ``batch``, encoded, and the profile id it
        names.

        The same JSON as :func:`~tracardi_tracker._serialization.payload_to_wire` (a test
        guards it), with the profile and session ids Tracardi replaced earlier: everything
        but the events is encoded here, and the events, encoded when they were added, are
        spliced into its list.
        """
        profile_id = batch.profile_id
        profile_ids = batch.profile_ids
        if profile_id is not None and self.checkpoint.replaced_profiles:
            replaced = self.checkpoint.profile(profile_id)
            if replaced is not None:
                if profile_id not in profile_ids:
                    profile_ids = [*profile_ids, profile_id]
                profile_id = replaced
        first = None
        session_meta = batch.session_meta
        if session_meta is None:
            session_meta = first = batch.first_times()
        session_id = batch.session_id
        payload: dict[str, Any] = {
            "source": self._source,
            "session": {"id": sessions.get(session_id, session_id), "metadata": session_meta},
        }
        if profile_id is not None:
            profile: dict[str, Any] = {"id": profile_id}
            if profile_ids:
                profile["ids"] = list(profile_ids)
            profile["metadata"] = batch.profile_meta or first or batch.first_times()
            payload["profile"] = profile
        payload["options"] = self._options_wire
        payload["events"] = []
        return splice_events(_json.encode(payload), batch.encoded(start, end)), profile_id

    def acknowledged(
        self,
        stats: SenderStats,
        sessions: dict[str, str],
        batch: Batch,
        sent_profile: str | None,
        profile_id: str | None,
        session_id: str | None,
    ) -> None:
        """Adopt what Tracardi answered to ``batch``: its profile and session ids."""
        original = batch.profile_id
        if (
            original is not None
            and profile_id is not None
            and profile_id != sent_profile
            and self.checkpoint.replace_profile(original, profile_id)
        ):
            stats.profiles_replaced += 1
            if self.profile_map is not None:
                self.profile_map.write(original, profile_id)
        if session_id is not None:
            sent_session = sessions.get(batch.session_id, batch.session_id)
            if session_id != sent_session:
                if len(sessions) >= _SESSION_CACHE:
                    sessions.pop(next(iter(sessions)))
                sessions[batch.session_id] = session_id
                stats.sessions_replaced += 1

    def abort(self, reason: str) -> None:
        """Stop the import for ``reason`` (the first reason given is kept)."""
        with self._abort_lock:
            if self.abort_reason is None:
                self.abort_reason = reason
        self.stop.set()

    # -- the careful way: retries, splits -------------------------------------------------------

    def send(
        self,
        transport: Transport,
        stats: SenderStats,
        sessions: dict[str, str],
        batch: Batch,
        start: int,
        end: int,
        *,
        failed: tuple[bytes, str | None, DeliveryError] | None = None,
    ) -> None:
        """Deliver events ``start:end`` of ``batch`` through ``transport``, synchronously.

        Retries what may be retried, splits a payload Tracardi refuses (400/422) until the
        refused events are alone and rejects those. ``failed`` is a first try made
        elsewhere: its body, profile id and error. Raises :class:`Abort` or ``_Stopped``.
        """
        if self.stop.is_set() and failed is None:
            raise _Stopped
        try:
            response, sent_profile = self._post(
                transport, stats, sessions, batch, start, end, failed
            )
        except PayloadRejectedError as error:
            if end - start > 1:
                middle = (start + end) // 2
                self.send(transport, stats, sessions, batch, start, middle)
                self.send(transport, stats, sessions, batch, middle, end)
                return
            reason = f"Tracardi rejected it ({error.status}): {_detail(error.detail)}"
            self.rejects.reject(batch.positions[start], batch.raws[start], None, reason)
            stats.rejected += 1
            return
        self.checkpoint.resolve(batch.positions[start:end])
        stats.sent += end - start
        self.acknowledged(
            stats, sessions, batch, sent_profile, response.profile_id, response.session_id
        )

    def _post(
        self,
        transport: Transport,
        stats: SenderStats,
        sessions: dict[str, str],
        batch: Batch,
        start: int,
        end: int,
        failed: tuple[bytes, str | None, DeliveryError] | None,
    ) -> tuple[TrackResponse, str | None]:
        ids = batch.event_ids(start, end)
        first_error: DeliveryError | None = None
        if failed is not None:
            body, profile_id, first_error = failed
        else:
            body, profile_id = self.payload(batch, start, end, sessions)
            if self.rate is not None:
                self.rate.acquire(end - start, self.stop)
                if self.stop.is_set():
                    raise _Stopped

        def attempt() -> TrackResponse:
            stats.requests += 1
            return transport.post(self.url, body, event_ids=ids, headers=self.headers)

        def on_retry(error: BaseException) -> None:
            stats.retries += 1
            logger.info("retrying a payload after: %s", error)

        try:
            response = self._deliver(attempt, on_retry, first_error)
        except PayloadRejectedError:
            raise
        except SourceRejectedError as error:
            if "validation failed" in str(error).lower():
                raise PayloadRejectedError(
                    str(error), detail=str(error), event_ids=ids, status=error.status
                ) from error
            raise Abort(f"{error} (nothing more can be sent with this source)") from error
        except DeliveryError as error:
            if self.stop.is_set():
                raise _Stopped from error
            raise Abort(f"{error} (after {self.retry.attempts} attempts)") from error
        return response, profile_id

    def _deliver(
        self,
        attempt: Callable[[], TrackResponse],
        on_retry: Callable[[BaseException], None],
        first_error: DeliveryError | None = None,
    ) -> TrackResponse:
        """One try at once (or ``first_error``, a try made elsewhere); the retry policy
        only once it failed (tenacity costs ~60 µs)."""
        try:
            if first_error is not None:
                raise first_error
            return attempt()
        except DeliveryError as error:
            if not is_retryable(error) or self._later is None:
                raise
            on_retry(error)
            if self.stop.wait(self.retry.wait_for(1, error)):
                raise
        return self._later.call(attempt, stop_event=self.stop, on_retry=on_retry)


class Sender(Delivery):
    """Worker threads that deliver batches through the caller's transports."""

    def __init__(
        self,
        *,
        url: str,
        source_id: str,
        options: Options,
        concurrency: int,
        transport_factory: Callable[[], Transport],
        retry: RetryPolicy,
        checkpoint: Checkpoint,
        rejects: RejectSink,
        profile_map: ProfileMapSink | None = None,
        rate: RateLimiter | None = None,
        stop: threading.Event,
        queue_depth: int = 4,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
        super().__init__(
            url=url,
            source_id=source_id,
            options=options,
            retry=retry,
            checkpoint=checkpoint,
            rejects=rejects,
            profile_map=profile_map,
            rate=rate,
            stop=stop,
            headers=headers,
        )
        self._queues: list[queue.Queue[Batch | None]] = [
            queue.Queue(maxsize=queue_depth) for _ in range(concurrency)
        ]
        self._stats = [SenderStats() for _ in range(concurrency)]
        self._transports: list[Transport] = []
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(index, transport_factory),
                name=f"tracardi-import-{index}",
                daemon=True,
            )
            for index in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    # -- the reading side -----------------------------------------------------------------

    def submit(self, batch: Batch) -> bool:
        """Queue a batch for its profile's worker (waits while that queue is full).

        Returns ``False`` when the import is stopping and the batch was not queued.
        """
        target = self._queues[lane_of(batch.key, len(self._queues))]
        while not self.stop.is_set():
            try:
                target.put(batch, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def poll(self) -> None:
        """Nothing to do: the workers read their answers themselves."""

    def stats(self) -> SenderStats:
        """The counts so far, over all workers."""
        total = SenderStats()
        for stats in self._stats:
            total.add(stats)
        return total

    def finish(self) -> None:
        """No more batches: each worker ends after its queue (dropped when stopping)."""
        for target in self._queues:
            while True:
                try:
                    target.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if self.stop.is_set():
                        _drain(target)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the workers to end; returns whether they all did within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False
        return True

    def close(self) -> None:
        """Close the workers' transports (after :meth:`join`); idempotent."""
        transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()

    # -- the workers ----------------------------------------------------------------------

    def _run(self, index: int, transport_factory: Callable[[], Transport]) -> None:
        work = self._queues[index]
        try:
            transport = transport_factory()
        except Exception as error:
            self.abort(f"cannot make a transport: {type(error).__name__}: {error}")
            transport = None
        if transport is not None:
            self._transports.append(transport)
        stats = self._stats[index]
        sessions: dict[str, str] = {}
        while True:
            batch = work.get()
            if batch is None:
                return
            if self.stop.is_set() or transport is None:
                continue
            try:
                self.send(transport, stats, sessions, batch, 0, len(batch))
                self.checkpoint.release(batch.positions)
            except _Stopped:
                continue
            except Abort as abort:
                self.abort(str(abort))
            except Exception as error:  # a bug must not hang the import: stop it, loudly
                logger.exception("importer worker failed")
                self.abort(f"internal error in the sender: {type(error).__name__}: {error}")


def _drain(target: queue.Queue[Batch | None]) -> None:
    while True:
        try:
            target.get_nowait()
        except queue.Empty:
            return


def _detail(detail: Any) -> str:
    if isinstance(detail, list):
        messages = []
        for item in detail[:3]:
            if isinstance(item, dict):
                where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
                messages.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
            else:
                messages.append(str(item))
        return "; ".join(messages)
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text if len(text) <= 300 else text[:300] + "..."
