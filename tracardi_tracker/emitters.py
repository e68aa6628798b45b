"""How payloads leave the process: the :class:`Emitter` protocol and :class:`SyncEmitter`.

A tracker turns each event into an :class:`Envelope` (the event's wire form plus
who it is about) and hands it to its emitter. The emitter groups envelopes of one
visitor and session into payloads, sends them through the transport under the
retry policy, lets the visitor adopt the ids Tracardi answers, and reports each
payload to ``on_success`` or ``on_failure``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ._default_transport import default_transport
from ._retry import RetryPolicy
from ._serialization import (
    JsonDict,
    dumps_kept,
    encode_event,
    encode_payload,
    event_to_wire,
    payload_to_wire,
)
from ._transport import DEFAULT_TIMEOUT, TrackResponse, Transport
from ._visitors import Visitor
from .events import BaseEvent
from .exceptions import DeliveryError, TrackerClosedError, UndeliveredError
from .models import Options, Time

if TYPE_CHECKING:
    import requests  # loaded only when a requests transport is made (~19 MB of memory)

__all__ = ["Emitter", "Envelope", "FailureCallback", "SuccessCallback", "SyncEmitter"]

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True, hash=False)
class PayloadHead:
    """The payload-level part of an event: everything but the event and its session."""

    url: str
    source_id: str
    profile_id: str | None
    profile_ids: tuple[str, ...]
    profile_metadata: Time | None
    session_metadata: Time | None
    context: Mapping[str, Any]
    properties: Mapping[str, Any]
    options: Options
    ip_address: str | None


@attrs.define(eq=False)
class Envelope:
    """One tracked event on its way out: its id, the event, its session and visitor.

    ``source`` is the event object as tracked, until the emitter encodes it (the
    background emitter does at once, so it waits as bytes); it is ``None`` after that and for
    an event read back from a spool. :attr:`event` is the wire form as a dict and
    :attr:`event_json` the same, encoded; both are built on first use, so the
    caller's ``track()`` does not pay for them. Emitters put envelopes with equal
    :meth:`batch_key` and equal ``head`` in one payload.
    """

    event_id: str
    source: BaseEvent | None
    session_id: str
    head: PayloadHead
    visitor: Visitor = attrs.field(repr=False)
    tags: tuple[str, ...] = ()
    wire: JsonDict | None = attrs.field(default=None, repr=False)
    spool_seq: int | None = attrs.field(default=None, repr=False)
    """The event's row in the spool, when there is one."""
    encoded: bytes | None = attrs.field(default=None, repr=False)
    """The event's wire form as JSON, once made."""

    @property
    def event(self) -> JsonDict:
        """The event as it goes into the payload's ``events`` list."""
        wire = self.wire
        if wire is None:
            wire = self.wire = self._build() if self.encoded is None else json.loads(self.encoded)
        return wire

    @property
    def event_json(self) -> bytes:
        """The event's wire form encoded as JSON (made once, then kept)."""
        encoded = self.encoded
        if encoded is None:
            if self.wire is not None:
                encoded = dumps_kept(self.wire)
            else:
                assert self.source is not None
                encoded = encode_event(self.source, self.event_id, self.tags)
            self.encoded = encoded
        return encoded

    def _build(self) -> JsonDict:
        assert self.source is not None
        return event_to_wire(self.source, self.event_id, self.tags)

    def batch_key(self) -> tuple[int, str]:
        """The visitor and session: envelopes of one key keep their order."""
        return (id(self.visitor), self.session_id)


SuccessCallback = Callable[[Sequence[Envelope], TrackResponse], None]
"""``on_success(events, response)``: a payload of these events was accepted."""

FailureCallback = Callable[[Sequence[Envelope], DeliveryError], None]
"""``on_failure(events, error)``: a payload of these events was given up on."""


@runtime_checkable
class Emitter(Protocol):
    """What a tracker needs from an emitter. :class:`SyncEmitter` and the background
    emitter implement it; so can an application's own."""

    def emit(self, envelope: Envelope) -> None:
        """Take one event for delivery (send it now, or queue it)."""

    def flush(self, timeout: float | None = None) -> int:
        """Send what is pending, waiting at most ``timeout`` seconds; return how many
        events are still undelivered."""

    def close(self, timeout: float | None = None) -> int:
        """Flush, then release resources; safe to call twice. Returns undelivered count."""


def group(envelopes: Sequence[Envelope]) -> list[list[Envelope]]:
    """Split envelopes into payloads: runs of one visitor, session and payload head.

    Each visitor's events keep the order they were tracked in; a change of payload
    head (a new user agent, say) starts a new run for that visitor.
    """
    runs: list[list[Envelope]] = []
    open_runs: dict[tuple[int, str], list[Envelope]] = {}
    for envelope in envelopes:
        key = envelope.batch_key()
        run = open_runs.get(key)
        if run is None or not _same_head(run[0].head, envelope.head):
            run = open_runs[key] = []
            runs.append(run)
        run.append(envelope)
    return runs


def _same_head(one: PayloadHead, other: PayloadHead) -> bool:
    return one is other or one == other


def deliver(
    transport: Transport,
    retry: RetryPolicy,
    envelopes: Sequence[Envelope],
    *,
    stop_event: threading.Event | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    max_bytes: int | None = None,
) -> TrackResponse:
    """Send envelopes of one batch key and head as one payload: :func:`deliver_events`
    with the envelopes' ids and encoded events."""
    first = envelopes[0]
    return deliver_events(
        transport,
        retry,
        first.head,
        first.visitor,
        first.session_id,
        [envelope.event_id for envelope in envelopes],
        [envelope.event_json for envelope in envelopes],
        stop_event=stop_event,
        on_retry=on_retry,
        max_bytes=max_bytes,
    )


def deliver_events(
    transport: Transport,
    retry: RetryPolicy,
    head: PayloadHead,
    visitor: Visitor,
    session_id: str,
    event_ids: Sequence[str],
    events: Sequence[bytes],
    *,
    stop_event: threading.Event | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    max_bytes: int | None = None,
) -> TrackResponse:
    """Send one visitor's session's encoded events as one payload; adopt Tracardi's ids.

    Waits for the first payload of a new session to be answered first (the gate in
    :mod:`tracardi_tracker._visitors`). A payload over ``max_bytes`` is split in
    halves sent one after the other. Raises a :class:`DeliveryError` with the events'
    ids when Tracardi does not take the payload.
    """
    sent_session, profile_id = visitor.begin_send(session_id, head.profile_id)
    headers = {"X-Forwarded-For": head.ip_address} if head.ip_address else None
    answer: tuple[str | None, str | None] | None = None

    def post(ids: Sequence[str], chunk: Sequence[bytes]) -> TrackResponse:
        nonlocal profile_id
        body = encode_payload(
            payload_to_wire(
                source_id=head.source_id,
                session_id=sent_session,
                session_metadata=head.session_metadata,
                profile_id=profile_id,
                profile_ids=head.profile_ids,
                profile_metadata=head.profile_metadata,
                context=head.context,
                properties=head.properties,
                options=head.options,
                events=(),
            ),
            chunk,
        )
        if max_bytes is not None and len(body) > max_bytes and len(chunk) > 1:
            middle = len(chunk) // 2
            post(ids[:middle], chunk[:middle])
            return post(ids[middle:], chunk[middle:])
        response = retry.call(
            lambda: transport.post(head.url, body, event_ids=ids, headers=headers),
            stop_event=stop_event,
            on_retry=on_retry,
        )
        if profile_id is None:
            profile_id = response.profile_id
        return response

    try:
        response = post(event_ids, events)
        answer = (response.profile_id, response.session_id)
        return response
    except DeliveryError as error:
        error.event_ids = tuple(event_ids)
        raise
    finally:
        visitor.end_send(session_id, head.profile_id, answer)


class _Callbacks:
    """Calls the application's callbacks, never letting one break delivery."""

    def __init__(self, on_success: SuccessCallback | None, on_failure: FailureCallback | None):
        self.on_success = on_success
        self.on_failure = on_failure

    def success(self, envelopes: Sequence[Envelope], response: TrackResponse) -> None:
        if self.on_success is not None:
            try:
                self.on_success(envelopes, response)
            except Exception:
                logger.exception("on_success callback raised")

    def failure(self, envelopes: Sequence[Envelope], error: DeliveryError) -> None:
        logger.error(
            "%d event(s) not delivered: %s%s",
            len(envelopes),
            type(error).__name__,
            "" if error.status is None else f" (HTTP {error.status})",
        )
        if self.on_failure is not None:
            try:
                self.on_failure(envelopes, error)
            except Exception:
                logger.exception("on_failure callback raised")


class SyncEmitter:
    """Sends in the caller's thread: ``track()`` returns once Tracardi has answered.

    With ``batch_size`` above 1, events wait in memory until that many are
    pending (or :meth:`flush`), then go out grouped per visitor and session. A
    payload that fails raises its :class:`DeliveryError` from the ``track()`` that
    sent it, after ``on_failure``; at :meth:`flush` failures are counted, logged and
    passed to ``on_failure``.

    ``transport`` replaces the HTTP transport (``tracardi_tracker.testing`` has one
    that records payloads); ``timeout``, ``verify`` and ``session`` set up the
    default one.
    """

    def __init__(
        self,
        *,
        batch_size: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_success: SuccessCallback | None = None,
        on_failure: FailureCallback | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
        transport: Transport | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self._transport = transport or default_transport(
            timeout=timeout, verify=verify, session=session
        )
        self._callbacks = _Callbacks(on_success, on_failure)
        self._lock = threading.Lock()
        self._pending: list[Envelope] = []
        self._closed = False

    def emit(self, envelope: Envelope) -> None:
        """Send ``envelope`` now, or once ``batch_size`` events are pending."""
        with self._lock:
            if self._closed:
                raise TrackerClosedError("the emitter is closed")
            self._pending.append(envelope)
            if len(self._pending) < self.batch_size:
                return
            batch, self._pending = self._pending, []
        self._send(batch, raise_errors=True)

    def flush(self, timeout: float | None = None) -> int:
        """Send every pending event; return how many are still undelivered.

        No payload is started after ``timeout`` seconds: those not started stay pending
        for the next flush. (A payload under way is bounded by the transport timeout and
        the retry policy.)
        """
        with self._lock:
            batch, self._pending = self._pending, []
        deadline = None if timeout is None else time.monotonic() + timeout
        unsent, not_started = self._send(batch, raise_errors=False, deadline=deadline)
        if not_started:
            with self._lock:
                self._pending[:0] = not_started
        return unsent + len(not_started)

    def close(self, timeout: float | None = None) -> int:
        """Flush (starting no payload after ``timeout`` seconds) and close the HTTP
        session; events left unsent are reported to ``on_failure``. Later calls return 0."""
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
        unsent = self.flush(timeout)
        with self._lock:
            left, self._pending = self._pending, []
        if left:
            self._callbacks.failure(
                left,
                UndeliveredError(
                    "emitter closed before these events could be sent",
                    event_ids=[envelope.event_id for envelope in left],
                ),
            )
        self._transport.close()
        return unsent

    def _send(
        self,
        envelopes: Sequence[Envelope],
        *,
        raise_errors: bool,
        deadline: float | None = None,
    ) -> tuple[int, list[Envelope]]:
        """Send ``envelopes``; return the failed count and the envelopes not started
        because ``deadline`` passed."""
        unsent = 0
        first_error: DeliveryError | None = None
        runs = group(envelopes)
        for index, run in enumerate(runs):
            if deadline is not None and time.monotonic() >= deadline:
                return unsent, [envelope for rest in runs[index:] for envelope in rest]
            try:
                response = deliver(self._transport, self.retry, run)
            except DeliveryError as error:
                unsent += len(run)
                self._callbacks.failure(run, error)
                first_error = first_error or error
                continue
            self._callbacks.success(run, response)
        if first_error is not None and raise_errors:
            raise first_error
        return unsent, []
