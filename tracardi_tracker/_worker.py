"""The background emitter: a bounded queue, a worker thread and senders, batching,
fork and exit.

Shape: the caller's ``emit()`` encodes the event and appends its JSON to its visitor's
buffer (one lock, held for a list append and a few counts); a full buffer goes straight
to the outbox. So an event waits as bytes from the moment ``track()`` returns: cheap
to hold, and nothing the garbage collector scans outlives the call (a queue of event
objects that waited for a thread to encode them made the collector's full passes
cost more than the encoding). The threads are started lazily under a lock and made
anew in a forked child (which drops the parent's buffers: the parent sends those):

- the *worker* hands over buffers whose oldest event has waited ``flush_interval``,
  and every buffer on ``flush()``;
- the *senders* (two by default) post payloads side by side for different visitors,
  one at a time per visitor in the order they were handed over, so each visitor's
  order and the first-payload gate hold, and retry with waits that end at once on
  ``close()``.

Losses are counted and reported, never raised into the caller.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

from ._default_transport import default_transport
from ._retry import RetryPolicy, is_retryable
from ._serialization import EventIds, encode_event, read_event_id
from ._transport import DEFAULT_TIMEOUT, Transport
from ._visitors import Visitor, stock_event_ids
from .emitters import (
    Envelope,
    FailureCallback,
    PayloadHead,
    SuccessCallback,
    _Callbacks,
    deliver_events,
)
from .events import BaseEvent
from .exceptions import DeliveryError, QueueFullError, TrackerClosedError, UndeliveredError

if TYPE_CHECKING:
    import requests  # loaded only when a requests transport is made (~19 MB of memory)

    from ._spool import Spool  # loaded only when a spool is used

logger = logging.getLogger(__name__)

FullPolicy = Literal["block", "drop_newest", "drop_oldest"]

_BatchKey = tuple[Visitor, str]
"""A visitor and session: a buffer's events go out in one payload, in order."""


class _Batch:
    """One payload's worth of a visitor's session with one payload head, as ``emit()``
    fills it and a sender posts it: the events' JSON in a flat list, with no other
    object per event (their ids are read back from it when wanted), so what waits is
    compact and lengthens no pass of the garbage collector. Envelopes are made again
    only for callbacks and reports."""

    __slots__ = ("bodies", "born", "head", "seqs", "session_id", "size", "visitor")

    def __init__(self, head: PayloadHead, visitor: Visitor, session_id: str, born: float) -> None:
        self.head = head
        self.visitor = visitor
        self.session_id = session_id
        self.born = born  # when its first event came (time.monotonic())
        self.size = 0  # the events' JSON, in bytes
        self.bodies: list[bytes] = []
        self.seqs: list[int | None] = []  # the events' spool rows, with a spool

    def __len__(self) -> int:
        return len(self.bodies)

    def event_ids(self) -> EventIds:
        """The events' ids (read when asked for)."""
        return EventIds(self.bodies)

    def envelopes(self) -> list[Envelope]:
        """The events as envelopes (already encoded), for callbacks and reports."""
        seqs = self.seqs or [None] * len(self.bodies)
        return [
            Envelope(
                event_id,
                None,
                self.session_id,
                self.head,
                self.visitor,
                encoded=body,
                spool_seq=seq,
            )
            for event_id, body, seq in zip(self.event_ids(), self.bodies, seqs, strict=True)
        ]


_BACKGROUND_RETRY = RetryPolicy(
    attempts=1_000_000, initial_wait=0.2, max_wait=30.0, max_elapsed=3600.0
)


@attrs.frozen
class Stats:
    """Counts since the emitter was made (or since the fork that made this process).

    ``queued``: waiting in memory now; ``sent``: delivered; ``retried``: retries made;
    ``failed``: given up on and reported to ``on_failure``; ``dropped``: refused at a
    full queue; ``spooled``: kept in the spool for a later run instead of being sent.
    """

    queued: int
    sent: int
    retried: int
    failed: int
    dropped: int
    spooled: int


class BackgroundEmitter:
    """Sends from a worker thread so ``track()`` costs microseconds and never blocks on
    the network.

    ``track()`` encodes each event into its visitor's buffer at once, so events wait as
    JSON bytes: at most ``max_queue`` of them (buffered or being sent). A buffer goes out
    as one payload per visitor and session when it holds ``batch_size`` events or
    ``max_batch_bytes`` of JSON, or when its oldest event has waited ``flush_interval``
    seconds; when all buffers together hold more than ``max_buffer_bytes``, the fullest
    goes at once (smaller payloads sooner for many visitors with big events; what the
    senders have not taken yet still waits, counted by ``max_queue``). When the queue is
    full, ``on_full`` decides:
    ``"block"`` (wait up to ``block_timeout`` seconds, then drop), ``"drop_newest"`` or
    ``"drop_oldest"``; every drop is counted in :meth:`stats` and reported to
    ``on_failure`` with a :class:`~tracardi_tracker.exceptions.QueueFullError`.
    ``"block"`` never blocks a thread that runs an asyncio event loop: there it
    drops the new event (reported) instead of stalling the loop.

    ``senders`` payloads are in flight at once, each for a different visitor (one
    visitor's payloads go one after the other, in order): against a server 20 ms away,
    two senders deliver 1.5 times what one does and four 2.5 times. The callbacks run
    on the sender threads, so they may run side by side.

    Retryable failures are retried (by default for up to an hour, waits capped at 30 s)
    and the waits end at once on :meth:`close`. :meth:`flush` and :meth:`close` return
    by their deadline with the number of events still unsent. At interpreter exit
    the queue is flushed for at most ``atexit_timeout`` seconds.

    ``spool=PATH`` keeps every event in a directory of append-only logs until Tracardi
    has it (see :mod:`tracardi_tracker._spool`): events survive a ``kill -9`` and
    outages longer than the queue holds, and are sent by the next emitter opened on the
    same spool. Events unsent at a ``close()`` deadline stay in the spool.

    A forked child (gunicorn ``--preload``, multiprocessing) gets a fresh queue,
    worker and HTTP session and never resends its parent's events.
    """

    def __init__(
        self,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        max_batch_bytes: int = 5_000_000,
        max_buffer_bytes: int = 32_000_000,
        flush_interval: float = 0.5,
        on_full: FullPolicy = "block",
        block_timeout: float = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_success: SuccessCallback | None = None,
        on_failure: FailureCallback | None = None,
        spool: str | Path | None = None,
        atexit_timeout: float = 2.0,
        verify: bool | str = True,
        session: requests.Session | None = None,
        transport: Transport | None = None,
        senders: int = 2,
    ) -> None:
        if min(max_queue, batch_size, max_batch_bytes, max_buffer_bytes, senders) < 1:
            raise ValueError(
                "max_queue, batch_size, max_batch_bytes, max_buffer_bytes and senders must "
                "be at least 1"
            )
        if on_full not in ("block", "drop_newest", "drop_oldest"):
            raise ValueError(f"on_full must be block, drop_newest or drop_oldest, got {on_full!r}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be positive, got {flush_interval!r}")
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.flush_interval = flush_interval
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.retry = retry or _BACKGROUND_RETRY
        self.atexit_timeout = atexit_timeout
        self.senders = senders
        self._callbacks = _Callbacks(on_success, on_failure)
        self._transport = transport or default_transport(
            timeout=timeout, verify=verify, session=session
        )
        self._spool_path = Path(spool) if spool is not None else None
        self._spool: Spool | None = None
        self._closed = False
        self._setup()
        if self._spool_path is not None:
            from ._spool import Spool  # here: most emitters have none

            self._spool = Spool(self._spool_path)
            for envelope in self._spool.claim_orphans():
                self._buffer_encoded(envelope)
            if self._held:
                self._start()  # a previous run's events go out first
        _register(self)

    def _setup(self) -> None:
        """(Re)make every piece of state a forked child must not share."""
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the buffers, the outbox and the counts
        self._buffers: dict[_BatchKey, _Batch] = {}  # oldest first (insertion order)
        self._outbox: deque[_Batch] = deque()
        self._outbox_changed = threading.Condition(self._lock)
        self._in_flight: set[Visitor] = set()  # visitors with a payload being sent
        self._wake = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._idle = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders: list[threading.Thread] = []
        self._closing = False  # close() took the buffers: no more payloads will come
        self._held = 0  # buffered, in the outbox or being sent, and not yet settled
        self._buffered = 0  # bytes of JSON in the buffers
        self._flushers = 0  # flush() calls under way: the worker sends every buffer
        self._sent = self._retried = self._failed = self._dropped = self._spooled = 0

    def _after_fork(self) -> None:
        spool_path = self._spool_path
        self._setup()
        self._transport.reset()
        if spool_path is not None:
            from ._spool import Spool

            self._spool = Spool(spool_path)  # a handle of this process's own

    # -- the caller's side ---------------------------------------------------------

    def emit(self, envelope: Envelope) -> None:
        """Encode ``envelope``'s event into its visitor's buffer; never blocks on the
        network.

        A forked child's state was already made anew by the ``register_at_fork`` hook,
        so the hot path needs no process-id check.
        """
        if self._spool is None and envelope.encoded is None:
            self._emit_parts(
                envelope.event_id,
                envelope.source,  # type: ignore[arg-type]  # set until encoded
                envelope.session_id,
                envelope.head,
                envelope.visitor,
                envelope.tags,
            )
            return
        if self._closed:
            raise TrackerClosedError("the emitter is closed")
        if self._spool is not None:
            self._spool.add(envelope)  # encodes it, too
        if self._held >= self.max_queue and not self._make_room(envelope):
            return
        self._buffer_encoded(envelope)
        if self._thread is None:
            self._start()

    def _buffer_encoded(self, envelope: Envelope) -> None:
        """:meth:`_buffer` an envelope whose event is encoded (or encodes it now): a
        spooled one, or one a previous run left in the spool."""
        self._buffer(
            envelope.event_id,
            envelope.event_json,
            envelope.session_id,
            envelope.head,
            envelope.visitor,
            envelope.spool_seq,
        )

    def _emit_parts(
        self,
        event_id: str,
        event: BaseEvent,
        session_id: str,
        head: PayloadHead,
        visitor: Visitor,
        tags: tuple[str, ...],
    ) -> None:
        """:meth:`emit` for an event that is not encoded yet, from its parts: what
        :meth:`Tracker.track` calls, so no envelope is made when none is needed (with a
        spool, :meth:`emit` takes the event)."""
        if self._spool is not None:
            self.emit(Envelope(event_id, event, session_id, head, visitor, tags))
            return
        if self._closed:
            raise TrackerClosedError("the emitter is closed")
        if self._held >= self.max_queue and not self._make_room(
            Envelope(event_id, event, session_id, head, visitor, tags)
        ):
            return
        try:  # inline, and no contextlib.suppress: this runs per event
            body = encode_event(event, event_id, tags)
        except Exception as error:  # a bug in a conversion: report this one event
            self._reject(Envelope(event_id, event, session_id, head, visitor, tags), error)
            return
        self._buffer(event_id, body, session_id, head, visitor, None)
        if self._thread is None:
            self._start()

    def _buffer(
        self,
        event_id: str,
        body: bytes,
        session_id: str,
        head: PayloadHead,
        visitor: Visitor,
        spool_seq: int | None,
    ) -> None:
        """Append an encoded event to its visitor's buffer, and hand the buffer over when
        it is full. An event whose payload head differs from its buffer's (the visitor's
        subject changed) closes that buffer: it goes first."""
        key = (visitor, session_id)
        with self._lock:
            if not self._closing:
                buffers = self._buffers
                batch = buffers.get(key)
                if batch is None or (batch.head is not head and batch.head != head):
                    if batch is not None:
                        self._hand_over(buffers.pop(key))
                    batch = buffers[key] = _Batch(head, visitor, session_id, time.monotonic())
                bodies = batch.bodies
                bodies.append(body)
                if spool_seq is not None:  # every event has one when there is a spool
                    batch.seqs.append(spool_seq)
                self._held += 1
                size = len(body)
                batch.size += size
                self._buffered += size
                if len(bodies) >= self.batch_size or batch.size >= self.max_batch_bytes:
                    self._hand_over(buffers.pop(key))
                elif self._buffered > self.max_buffer_bytes:
                    self._hand_over(buffers.pop(_largest(buffers)))
                return
        envelope = Envelope(
            event_id, None, session_id, head, visitor, encoded=body, spool_seq=spool_seq
        )
        self._give_up([envelope])  # close() already took the buffers

    def _make_room(self, envelope: Envelope) -> bool:
        """Apply the full-queue policy; True when ``envelope`` may be queued."""
        if self.on_full == "drop_oldest":
            oldest = self._take_oldest()
            if oldest is not None:
                self._drop(oldest)
            return True  # nothing waits in a buffer: what is held is being sent
        if self.on_full == "block" and not _on_event_loop():
            deadline = time.monotonic() + self.block_timeout
            while self.pending() >= self.max_queue:
                self._feed_senders()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with self._room:
                    if self.pending() >= self.max_queue:
                        self._room.wait(min(remaining, 0.05))
            if self.pending() < self.max_queue:
                return True
        self._drop(envelope)
        return False

    def _feed_senders(self) -> None:
        """With the queue full and too little in the outbox for the senders to make room
        soon, hand them the fullest buffers (not every buffer: a caller blocked at a full
        queue would then hand over a buffer per event, and the payloads would shrink to
        one event each)."""
        with self._lock:
            waiting = sum(len(batch) for batch in self._outbox)
            wanted = max(1, self.max_queue // 4)
            while waiting < wanted and self._buffers:
                batch = self._buffers.pop(_largest(self._buffers))
                waiting += len(batch)
                self._hand_over(batch)

    def _take_oldest(self) -> Envelope | None:
        """Take the oldest event not being sent: from the outbox's first payload (a
        sender took those in flight out of it), else from the oldest buffer."""
        with self._lock:
            for batch in (*self._outbox, *self._buffers.values()):
                body = batch.bodies.pop(0)
                seq = batch.seqs.pop(0) if batch.seqs else None
                batch.size -= len(body)
                sent_off = batch in self._outbox
                if not sent_off:
                    self._buffered -= len(body)
                if not batch.bodies:
                    if sent_off:
                        self._outbox.remove(batch)
                    else:
                        del self._buffers[(batch.visitor, batch.session_id)]
                self._held -= 1
                return Envelope(
                    read_event_id(body),
                    None,
                    batch.session_id,
                    batch.head,
                    batch.visitor,
                    encoded=body,
                    spool_seq=seq,
                )
        return None

    def _drop(self, envelope: Envelope) -> None:
        if self._spool is not None:
            with self._lock:
                self._spooled += 1
            return  # it waits in the spool for a later run
        with self._lock:
            self._dropped += 1
        error = QueueFullError(
            f"queue full ({self.max_queue} events): event dropped", event_ids=[envelope.event_id]
        )
        self._callbacks.failure([envelope], error)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._senders = [
                    threading.Thread(
                        target=self._send_loop, name=f"tracardi-tracker-sender-{n}", daemon=True
                    )
                    for n in range(self.senders)
                ]
                self._thread = threading.Thread(
                    target=self._run, name="tracardi-tracker-worker", daemon=True
                )
                for sender in self._senders:
                    sender.start()
                self._thread.start()

    # -- flushing and closing ---------------------------------------------------

    def pending(self) -> int:
        """Events waiting in a visitor's buffer or in the outbox, or being sent now."""
        return self._held

    def flush(self, timeout: float | None = None) -> int:
        """Send everything queued, waiting at most ``timeout`` seconds (forever if None).

        Returns the number of events still unsent at the deadline.
        """
        if self._pid != os.getpid():
            self._after_fork()
        if not self.pending():
            return 0
        if self._thread is None:
            self._start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flushers += 1
        try:
            self._wake.set()
            with self._idle:
                while self.pending():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._idle.wait(0.05 if remaining is None else min(remaining, 0.05))
                    self._wake.set()
        finally:
            with self._lock:
                self._flushers -= 1
        return self.pending()

    def close(self, timeout: float | None = 5.0) -> int:
        """Flush for at most ``timeout`` seconds, stop the worker, close the session.

        Returns how many events were left unsent; they stay in the spool when there is
        one, and are reported to ``on_failure`` with an ``UndeliveredError`` otherwise.
        Safe to call twice.
        """
        if self._closed:
            return 0
        if self._pid != os.getpid():
            self._after_fork()
        self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        unsent = self.flush(timeout)
        self._stop.set()  # ends retry waits at once; no new request is started
        self._wake.set()
        with self._outbox_changed:
            self._closing = True  # the senders end once the outbox is empty
            leftovers = list(self._buffers.values())
            self._buffers.clear()
            self._buffered = 0
            self._outbox_changed.notify_all()
        for batch in leftovers:
            self._give_up_batch(batch)
        threads = [thread for thread in (self._thread, *self._senders) if thread is not None]
        for thread in threads:  # a request in flight cannot be cut short: wait what is left
            left = 2.0 if deadline is None else deadline - time.monotonic()
            thread.join(max(0.0, min(2.0, left)))
        with self._outbox_changed:  # senders stuck in a request will not reach these
            stranded = list(self._outbox)
            self._outbox.clear()
        for batch in stranded:
            self._give_up_batch(batch)
        if self._spool is not None:
            self._spool.release()
        if not any(thread.is_alive() for thread in threads):
            self._transport.close()
            if self._spool is not None:
                self._spool.close()
        _unregister(self)
        return unsent

    def _give_up(self, envelopes: Sequence[Envelope]) -> None:
        if self._spool is not None:
            with self._lock:
                self._spooled += len(envelopes)
            logger.warning("%d event(s) kept in the spool for the next run", len(envelopes))
            return
        with self._lock:
            self._failed += len(envelopes)
        error = UndeliveredError(
            "emitter closed before these events could be sent",
            event_ids=[envelope.event_id for envelope in envelopes],
        )
        self._callbacks.failure(envelopes, error)

    def _give_up_batch(self, batch: _Batch) -> None:
        """:meth:`_give_up` a buffered or handed-over batch, and settle its count."""
        self._give_up(batch.envelopes())
        with self._lock:
            self._held -= len(batch)

    def stats(self) -> Stats:
        """Queued, sent, retried, failed, dropped and spooled counts."""
        with self._lock:
            return Stats(
                queued=self.pending(),
                sent=self._sent,
                retried=self._retried,
                failed=self._failed,
                dropped=self._dropped,
                spooled=self._spooled,
            )

    # -- the worker's side ---------------------------------------------------------

    def _run(self) -> None:
        """Hand over each buffer whose oldest event has waited ``flush_interval``, and
        every buffer while a ``flush()`` is under way (full ones go from ``emit()``)."""
        buffers = self._buffers
        interval = self.flush_interval
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                if self._flushers:
                    due = list(buffers)
                else:
                    due = []
                    for key, batch in buffers.items():  # oldest first: stop at a young one
                        if now - batch.born < interval:
                            break
                        due.append(key)
                for key in due:
                    self._hand_over(buffers.pop(key))
                oldest = next(iter(buffers.values()), None)
            stock_event_ids()  # the callers' next ids, made here rather than in track()
            if oldest is None:
                if not self.pending():  # not while the senders are busy: flush() would
                    with self._idle:  # wake, find events pending and wake this again
                        self._idle.notify_all()
                wait = interval
            else:
                wait = max(0.0, oldest.born + interval - now)
            if self._wake.wait(wait):
                self._wake.clear()
        with self._idle:
            self._idle.notify_all()

    def _reject(self, envelope: Envelope, error: Exception) -> None:
        """Report an event that could not be encoded (and let the spool forget it)."""
        logger.exception("an event could not be encoded")
        with self._lock:
            self._failed += 1
        if self._spool is not None:
            self._spool.remove([envelope])
        failure = DeliveryError(
            f"the event could not be encoded: {error!r}", event_ids=[envelope.event_id]
        )
        self._callbacks.failure([envelope], failure)

    def _count_retry(self, error: BaseException) -> None:
        with self._lock:
            self._retried += 1

    def _hand_over(self, batch: _Batch) -> None:
        """Put a buffer in the outbox, in order, without waiting for the senders (called
        under ``_lock``). The payload is built when it goes, with the ids adopted by
        then; after ``close()``'s deadline a sender gives it up instead."""
        self._buffered -= batch.size
        self._outbox.append(batch)
        self._outbox_changed.notify_all()

    def _send_loop(self) -> None:
        """A sender thread: post the outbox's payloads until the worker ends. Senders
        run side by side for different visitors (a server's time on one payload
        overlaps with the next), never for one visitor, so each visitor's payloads go
        in the order they were handed over and the first-payload gate never waits."""
        while True:
            with self._outbox_changed:
                while (batch := self._take_batch()) is None:
                    if self._closing and not self._outbox:
                        return
                    self._outbox_changed.wait()
            try:
                self._send(batch)
            finally:
                with self._outbox_changed:
                    self._in_flight.discard(batch.visitor)
                    self._outbox_changed.notify_all()
            stock_event_ids()  # the callers' next ids, made here rather than in track()
            with self._idle:
                self._idle.notify_all()
            with self._room:
                self._room.notify_all()

    def _take_batch(self) -> _Batch | None:
        """The first payload in the outbox whose visitor has none in flight (called
        under ``_outbox_changed``)."""
        outbox = self._outbox
        for index, batch in enumerate(outbox):
            if batch.visitor not in self._in_flight:
                del outbox[index]
                self._in_flight.add(batch.visitor)
                return batch
        return None

    def _send(self, batch: _Batch) -> None:
        if self._stop.is_set():  # closing: no new request, keep or report the events
            self._give_up_batch(batch)
            return
        try:
            response = deliver_events(
                self._transport,
                self.retry,
                batch.head,
                batch.visitor,
                batch.session_id,
                batch.event_ids(),
                batch.bodies,
                stop_event=self._stop,
                on_retry=self._count_retry,
                max_bytes=self.max_batch_bytes,
            )
        except DeliveryError as error:
            if is_retryable(error) and (self._stop.is_set() or self._spool is not None):
                self._give_up(batch.envelopes())  # cut short by close(), or kept for later
            else:
                self._fail(batch, error)
        except Exception:  # a bug must not kill the sender and strand the queue
            logger.exception("unexpected error while sending")
            self._fail(batch, DeliveryError("internal error while sending"))
        else:
            with self._lock:
                self._sent += len(batch)
            if self._spool is not None:
                self._spool.acknowledge(batch.seqs)
            if self._callbacks.on_success is not None:
                self._callbacks.success(batch.envelopes(), response)
        finally:
            with self._lock:
                self._held -= len(batch)

    def _fail(self, batch: _Batch, error: DeliveryError) -> None:
        with self._lock:
            self._failed += len(batch)
        if self._spool is not None:
            self._spool.acknowledge(batch.seqs)
        if not error.event_ids:
            error.event_ids = tuple(batch.event_ids())
        self._callbacks.failure(batch.envelopes(), error)


def _largest(buffers: dict[_BatchKey, _Batch]) -> _BatchKey:
    """The key of the buffer holding the most bytes."""
    return max(buffers.items(), key=lambda item: item[1].size)[0]


def _on_event_loop() -> bool:
    """True when called from a thread running an asyncio loop, which must never block.

    asyncio is not imported for this (it loads ssl, ~12 MB): a process that has not
    imported it runs no event loop.
    """
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- process-wide hooks: fork and exit ----------------------------------------------

_emitters: weakref.WeakSet[BackgroundEmitter] = weakref.WeakSet()


def _register(emitter: BackgroundEmitter) -> None:
    _emitters.add(emitter)


def _unregister(emitter: BackgroundEmitter) -> None:
    _emitters.discard(emitter)


def _after_fork_in_child() -> None:
    for emitter in list(_emitters):
        emitter._after_fork()


def _at_exit() -> None:
    for emitter in list(_emitters):
        try:
            unsent = emitter.close(emitter.atexit_timeout)
        except Exception:
            logger.exception("flushing at exit failed")
            continue
        if unsent:
            logger.warning("%d event(s) unsent at exit", unsent)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
