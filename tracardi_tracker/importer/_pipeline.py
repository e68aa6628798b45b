"""The default sender: requests in flight on several connections, from the reading thread.

Reading, mapping and encoding are the import's CPU; the server's work on a payload is
time the importer can use for the next ones. With one worker thread per connection the
two overlap, but every answer then needs the interpreter lock back from the busy reading
thread (thousands of thread switches a second, and a wait of up to the switch interval
each). Here the reading thread does it all: a *lane* per connection (``concurrency``),
each profile on one lane (so its payloads arrive in order), at most one request in flight
per lane. :meth:`Pipeline.submit` queues a batch on its lane and sends it at once when
the lane is free; answers are picked up with ``select`` whenever a batch is submitted,
every few hundred rows (:meth:`Pipeline.poll`), and while waiting for a full lane. So
Tracardi always has up to ``concurrency`` payloads to work on while the next are built.

Only success is handled here: anything else (an error status, a network failure) is
handed, with the bytes already sent, to the synchronous rules of
:meth:`~._sender.Delivery.send` (retries with backoff, splitting on 400/422, stopping on
401/406), on the same connection, while the other lanes wait. The checkpoint journal is
written every few milliseconds and before any wait, rather than once per answer.
"""

from __future__ import annotations

import collections
import logging
import select
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._http import HttpConnection
from .._retry import RetryPolicy
from ..exceptions import DeliveryError, TransportError
from ..models import Options
from . import _json
from ._checkpoint import Checkpoint
from ._sender import (
    Abort,
    Batch,
    Delivery,
    ProfileMapSink,
    RateLimiter,
    RejectSink,
    SenderStats,
    _Stopped,
    lane_of,
)

__all__ = ["Pipeline"]

logger = logging.getLogger("tracardi_tracker.importer")

_SUCCESS = frozenset({200, 201, 202, 226})
_JOURNAL_EVERY = 0.01  # seconds between checkpoint journal writes while busy
_WAIT = 0.25  # longest single wait in select, so a stop is noticed


class _Lane:
    """One connection, the batches waiting for it, and the one in flight."""

    __slots__ = ("connection", "flight", "waiting")

    def __init__(self, connection: HttpConnection) -> None:
        self.connection = connection
        self.waiting: collections.deque[Batch] = collections.deque()
        self.flight: tuple[Batch, bytes, str | None] | None = None

    def fileno(self) -> int:
        return self.connection.fileno()


class Pipeline(Delivery):
    """Sends batches from the calling thread over ``concurrency`` connections.

    The same interface as :class:`~._sender.Sender` (``submit``, ``poll``, ``finish``,
    ``join``, ``close``, ``stats``, ``abort_reason``); every call must come from one thread.
    """

    def __init__(
        self,
        *,
        url: str,
        source_id: str,
        options: Options,
        concurrency: int,
        retry: RetryPolicy,
        checkpoint: Checkpoint,
        rejects: RejectSink,
        profile_map: ProfileMapSink | None = None,
        rate: RateLimiter | None = None,
        stop: threading.Event,
        timeout: float = 30.0,
        queue_depth: int = 4,
        headers: Mapping[str, str] | None = None,
        connection_factory: Callable[[], HttpConnection] | None = None,
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
        make = connection_factory or (
            lambda: HttpConnection(url, timeout=timeout, headers=self.headers)
        )
        self._lanes = [_Lane(make()) for _ in range(concurrency)]
        self._tls = connection_factory is not None or not url.lower().startswith("http:")
        self._depth = queue_depth
        self._stats = SenderStats()
        self._sessions: dict[str, str] = {}
        self._acked: list[int] = []
        self._journaled = time.monotonic()
        self._flying = 0

    # -- the reading side -----------------------------------------------------------------------

    def submit(self, batch: Batch) -> bool:
        """Queue ``batch`` on its lane and send it if the lane is free; waits while the
        lane holds more than ``queue_depth`` batches. ``False`` when the import is stopping
        (the batch is not sent)."""
        if self.stop.is_set():
            return False
        lane = self._lanes[lane_of(batch.key, len(self._lanes))]
        lane.waiting.append(batch)
        if lane.flight is None:  # sent at once; other lanes' answers wait for the next look
            self._start(lane)
        else:  # its lane is busy: pick up the answers that are in (this one's, perhaps)
            self._collect(0.0)
        while len(lane.waiting) > self._depth:
            if self.stop.is_set():
                return False
            self._collect(_WAIT)
        return True

    def poll(self) -> None:
        """Pick up the answers that arrived (never waits)."""
        if self._flying:
            self._collect(0.0)

    def stats(self) -> SenderStats:
        """The counts so far."""
        total = SenderStats()
        total.add(self._stats)
        return total

    def finish(self) -> None:
        """No more batches (:meth:`join` sends what is queued)."""

    def join(self, timeout: float | None = None) -> bool:
        """Send what is queued and wait for the answers; ``True`` once all are in.

        When the import is stopping, queued batches are dropped and only the requests in
        flight are waited for. Returns ``False`` if ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.stop.is_set():
                for lane in self._lanes:
                    lane.waiting.clear()
            else:
                self._start_free()
            if not self._flying and not any(lane.waiting for lane in self._lanes):
                self._journal()
                return True
            wait = _WAIT
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    self._journal()
                    return False
            self._collect(wait)

    def close(self) -> None:
        """Write the journal and close the connections; idempotent."""
        self._journal()
        for lane in self._lanes:
            lane.waiting.clear()
            lane.flight = None
            lane.connection.close()
        self._flying = 0

    # -- lanes ------------------------------------------------------------------------------------

    def _start(self, lane: _Lane) -> None:
        """Send the lane's next batch (the lane is free)."""
        stats = self._stats
        while lane.waiting and not self.stop.is_set():
            batch = lane.waiting.popleft()
            count = len(batch)
            body, sent_profile = self.payload(batch, 0, count, self._sessions)
            if self.rate is not None:
                delay = self.rate.reserve(count)
                if delay > 0:
                    self._pause(delay)
                    if self.stop.is_set():
                        return
            stats.requests += 1
            lane.flight = (batch, body, sent_profile)  # before sending: it may be on the wire
            self._flying += 1
            try:
                lane.connection.send(body)
            except TransportError as error:
                lane.flight = None
                self._flying -= 1
                error.event_ids = tuple(batch.event_ids())
                self._careful(lane, batch, body, sent_profile, error)
                continue
            return

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (the rate limit), picking up answers meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._collect(min(left, _WAIT), start=False)

    def _collect(self, timeout: float, *, start: bool = True) -> None:
        """Read the answers that are in (waiting up to ``timeout`` for one), then send the
        next batch of every free lane (unless ``start`` is false: inside a rate pause)."""
        if start:
            self._start_free()
        if timeout > 0 and self._acked:
            self._journal()  # about to wait: a good moment
        flying = [lane for lane in self._lanes if lane.flight is not None]
        if not flying:
            if timeout > 0:
                self.stop.wait(timeout)
            return
        # bytes TLS holds that the socket does not show (a flying lane is connected)
        ready = [lane for lane in flying if lane.connection.ready()] if self._tls else []
        if not ready:  # wait for the sockets (only those still connected are flying here)
            ready = select.select(flying, [], [], timeout)[0]
        for lane in ready:
            self._answer(lane)
        if start and ready:
            self._start_free()
        if self._acked and time.monotonic() - self._journaled >= _JOURNAL_EVERY:
            self._journal()

    def _start_free(self) -> None:
        for lane in self._lanes:
            if lane.flight is None and lane.waiting:
                self._start(lane)

    def _answer(self, lane: _Lane) -> None:
        flight = lane.flight
        assert flight is not None
        batch, body, sent_profile = flight
        lane.flight = None
        self._flying -= 1
        try:
            answer = lane.connection.receive()
        except TransportError as error:
            error.event_ids = tuple(batch.event_ids())
            self._careful(lane, batch, body, sent_profile, error)
            return
        if answer.status in _SUCCESS:
            if answer.status == 226:
                logger.warning("Tracardi accepted the payload with errors (226)")
            profile_id, session_id = _answer_ids(answer.content)
            self._acked.extend(batch.positions)
            self.checkpoint.release(batch.positions)
            self._stats.sent += len(batch)
            self.acknowledged(
                self._stats, self._sessions, batch, sent_profile, profile_id, session_id
            )
            return
        try:
            answer.interpret(batch.event_ids())
        except DeliveryError as error:
            self._careful(lane, batch, body, sent_profile, error)
        else:  # pragma: no cover - interpret raises for every status not in _SUCCESS
            raise AssertionError(f"status {answer.status} neither success nor failure")

    def _careful(
        self,
        lane: _Lane,
        batch: Batch,
        body: bytes,
        sent_profile: str | None,
        error: DeliveryError,
    ) -> None:
        """The first try of ``batch`` failed: the synchronous rules take it from there."""
        self._journal()
        try:
            self.send(
                lane.connection,
                self._stats,
                self._sessions,
                batch,
                0,
                len(batch),
                failed=(body, sent_profile, error),
            )
            self.checkpoint.release(batch.positions)
        except _Stopped:
            pass
        except Abort as abort:
            self.abort(str(abort))
        except Exception as failure:  # a bug must not hang the import: stop it, loudly
            logger.exception("importer sender failed")
            self.abort(f"internal error in the sender: {type(failure).__name__}: {failure}")

    def _journal(self) -> None:
        acked = self._acked
        if acked:
            self._acked = []
            self.checkpoint.journal(acked)
        self._journaled = time.monotonic()


def _answer_ids(content: bytes) -> tuple[str | None, str | None]:
    """The profile and session ids in a success answer (as the SDK's ``interpret`` reads
    them), without building a ``TrackResponse``."""
    if not content.strip():
        return None, None
    try:
        body: Any = _json.decode(content)
    except ValueError:
        logger.warning("Tracardi's answer was not JSON; profile and session ids not adopted")
        return None, None
    if type(body) is not dict:
        return None, None
    return _id_of(body.get("profile")), _id_of(body.get("session"))


def _id_of(entity: Any) -> str | None:
    if type(entity) is dict:
        value = entity.get("id")
        if type(value) is str and value:
            return value
    return None
