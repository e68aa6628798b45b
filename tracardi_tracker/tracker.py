"""The :class:`Tracker`: holds source, session and profile state and turns events
into envelopes for its emitter."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._serialization import check_event, payload_context, profile_ids, to_json_value
from ._visitors import (
    _EVENT_IDS,
    Visitor,
    VisitorKey,
    VisitorRegistry,
    new_event_id,
    new_session_id,
)
from .emitters import Emitter, Envelope, PayloadHead
from .events import BaseEvent
from .exceptions import ConfigurationError, InvalidEventError, TrackerClosedError
from .models import Options, Subject

__all__ = ["Identity", "Tracker"]


_Memo = tuple[object, int, Subject, int, VisitorKey | None, Visitor | None, PayloadHead, str | None]
"""What a tracker keeps on an event subject: (its token, the subject's version, its own
subject and that one's version; the visitor's key, the visitor, the payload head and
the session id the subject gives)."""


@attrs.frozen
class Identity:
    """The ids a visitor has now: what Tracardi last answered, or what was sent."""

    profile_id: str | None
    session_id: str | None


def _visitor_key(subject: Subject | None) -> VisitorKey | None:
    """The key of the visitor an event subject names, or None for the tracker's own."""
    if subject is None:
        return None
    if subject.session_id is not None:
        return ("session", subject.session_id)
    if subject.profile_id is not None:
        return ("profile", subject.profile_id)
    if subject.user_id is not None:
        return ("user", subject.user_id)
    return None


def _merge(base: Subject, over: Subject) -> Subject:
    """``over`` on top of ``base``; when ``over`` names a visitor, ``base``'s identity
    stays out so one visitor's ids never reach another's payload."""
    if _visitor_key(over) is None:
        return base.merged(over)
    anonymous = base.without_identity()
    return anonymous.merged(over)


def _default_emitter() -> Emitter:
    from ._worker import BackgroundEmitter  # the worker module imports this package's parts

    return BackgroundEmitter()


def _parts_emitter(emitter: Emitter) -> Any:
    """The background emitter's ``emit()`` from an event's parts (no envelope made), when
    ``emitter`` is one whose ``emit`` no subclass replaced; else None."""
    from ._worker import BackgroundEmitter  # the worker module imports this package's parts

    kind = type(emitter)
    if issubclass(kind, BackgroundEmitter) and kind.emit is BackgroundEmitter.emit:
        return emitter._emit_parts  # type: ignore[attr-defined]
    return None


def _endpoint_url(endpoint: str) -> str:
    if not isinstance(endpoint, str):
        raise ConfigurationError(f"endpoint must be a URL string, got {endpoint!r}")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"endpoint must be an http(s) URL, got {endpoint!r}")
    return endpoint.rstrip("/") + "/track"


class Tracker:
    """Tracks events for Tracardi: ``Tracker(endpoint, source_id).track(PageView(url))``.

    Events go to ``POST {endpoint}/track``, by default through a
    :class:`~tracardi_tracker.BackgroundEmitter` (``track()`` returns at once; pass
    ``emitter=SyncEmitter()`` to send in the caller's thread). The tracker keeps its own visitor's
    session (a uuid4, replaced after ``session_timeout`` without events or by
    :meth:`new_session`) and adopts the profile and session ids Tracardi answers.
    An event whose ``event_subject`` names a visitor (``session_id``,
    ``profile_id`` or ``user_id``) is tracked for that visitor instead, with its
    own session and adopted ids; see :meth:`identity`.

    ``context``, ``properties`` and ``options`` are payload-level: Tracardi merges
    the first two into the session. ``tags`` are added to every event. ``namespace``
    and ``app_id`` travel in every payload's context under ``tracker``.

    Thread-safe. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        endpoint: str,
        source_id: str,
        *,
        emitter: Emitter | None = None,
        subject: Subject | None = None,
        namespace: str | None = None,
        app_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        session_timeout: timedelta = timedelta(minutes=30),
    ) -> None:
        if not isinstance(source_id, str) or not source_id.strip():
            raise ConfigurationError(f"source_id must be a non-empty string, got {source_id!r}")
        if source_id.strip().startswith("@"):
            raise ConfigurationError("source ids starting with '@' are internal to Tracardi")
        if session_timeout <= timedelta(0):
            raise ConfigurationError(f"session_timeout must be positive, got {session_timeout}")
        if subject is not None and not isinstance(subject, Subject):
            raise ConfigurationError(f"subject must be a Subject, got {type(subject).__name__}")
        self.url = _endpoint_url(endpoint)
        self.source_id = source_id.strip()
        self.emitter: Emitter = emitter if emitter is not None else _default_emitter()
        self._emit_parts = _parts_emitter(self.emitter)
        self.subject = subject if subject is not None else Subject()
        self.namespace = namespace
        self.app_id = app_id
        try:
            self.context: dict[str, Any] = to_json_value(dict(context or {}), "context")
            self.properties: dict[str, Any] = to_json_value(dict(properties or {}), "properties")
        except InvalidEventError as error:
            raise ConfigurationError(str(error)) from error
        self.options = (
            options if isinstance(options, Options) else Options.from_mapping(options or {})
        )
        self.tags = tuple(tags or ())
        if any(not isinstance(tag, str) for tag in self.tags):
            raise ConfigurationError(f"tags must be strings, got {self.tags!r}")
        self.session_timeout = session_timeout
        self._timeout_seconds = session_timeout.total_seconds()
        self._own = Visitor(None)
        self._visitors = VisitorRegistry()
        self._own_cache: tuple[tuple[int, int], PayloadHead, str | None] | None = None
        self._token = object()  # marks what this tracker keeps on event subjects
        self._scope: contextvars.ContextVar[Subject | None] = contextvars.ContextVar(
            f"tracardi_tracker_scope_{id(self)}", default=None
        )
        self._closed = False

    # -- state ------------------------------------------------------------------

    @property
    def profile_id(self) -> str | None:
        """The tracker's own visitor's profile id: absent until Tracardi gives one."""
        return self.identity().profile_id

    @property
    def session_id(self) -> str | None:
        """The tracker's own visitor's session id (None before the first event)."""
        return self.identity().session_id

    def identity(self, subject: Subject | None = None) -> Identity:
        """The ids Tracardi gave the visitor ``subject`` names (the tracker's own when None).

        With a :class:`SyncEmitter` they are known as soon as ``track()`` returns: store
        them in the visitor's cookie or your database.
        """
        key = _visitor_key(subject)
        visitor = self._own if key is None else self._visitors.peek(key)
        if visitor is None:
            assert subject is not None
            return Identity(subject.profile_id, subject.session_id)
        profile, session = visitor.ids()
        if profile is None and subject is not None:
            profile = subject.profile_id
        return Identity(profile, session)

    @contextlib.contextmanager
    def scope(self, subject: Subject) -> Iterator[Subject]:
        """Make ``subject`` the visitor of every ``track()`` inside the block.

        The scope lives in a :mod:`contextvars` variable: each thread and each asyncio
        task sees only its own, so one request's visitor never reaches another's
        events. An event's own ``event_subject`` is merged over the scoped one.
        """
        if not isinstance(subject, Subject):
            raise ConfigurationError(f"scope() takes a Subject, got {type(subject).__name__}")
        token = self._scope.set(subject)
        try:
            yield subject
        finally:
            self._scope.reset(token)

    @contextlib.asynccontextmanager
    async def ascope(self, subject: Subject) -> AsyncIterator[Subject]:
        """The async twin of :meth:`scope`, for ``async with``."""
        with self.scope(subject) as scoped:
            yield scoped

    async def aflush(self, timeout: float | None = None) -> int:
        """:meth:`flush` without blocking the event loop (it runs in a worker thread)."""
        import asyncio  # here, not at the top: asyncio loads ssl, ~12 MB of memory

        return await asyncio.to_thread(self.flush, timeout)

    async def aclose(self, timeout: float | None = 5.0) -> int:
        """:meth:`close` without blocking the event loop, for lifespan handlers."""
        import asyncio

        return await asyncio.to_thread(self.close, timeout)

    def new_session(self) -> str:
        """Start a new session for the tracker's own visitor and return its id."""
        return self._own.new_session(new_session_id)

    # -- tracking ----------------------------------------------------------------

    def track(self, event: BaseEvent) -> str:
        """Validate ``event``, hand it to the emitter and return its id.

        Raises :class:`~tracardi_tracker.exceptions.InvalidEventError` naming the bad
        field before anything is sent, and, with a synchronous emitter, the
        :class:`~tracardi_tracker.exceptions.DeliveryError` of a failed send.
        """
        if self._closed:
            raise TrackerClosedError("track() called after close()")
        if not isinstance(event, BaseEvent):
            raise InvalidEventError(
                "event", f"expected an event object, got {type(event).__name__}"
            )
        check_event(event)
        event_subject = event.event_subject
        scoped = self._scope.get()
        if scoped is not None:
            event_subject = scoped if event_subject is None else scoped.merged(event_subject)
        if event_subject is None:
            visitor = self._own
            head, given_session = self._own_head()
        else:
            visitor, head, given_session = self._named_head(event_subject)
        event_id = event.event_id
        if event_id is None:
            try:  # new_event_id(), inline: this runs per event
                event_id = _EVENT_IDS.pop()
            except IndexError:
                event_id = new_event_id()
        session_id = visitor.session_for_event(
            given_session, time.monotonic(), self._timeout_seconds, new_session_id
        )
        if self._emit_parts is not None:
            self._emit_parts(event_id, event, session_id, head, visitor, self.tags)
        else:
            self.emitter.emit(Envelope(event_id, event, session_id, head, visitor, self.tags))
        return event_id

    def _own_head(self) -> tuple[PayloadHead, str | None]:
        """The payload head of the tracker's own visitor, rebuilt when the subject changes."""
        subject = self.subject
        key = (id(subject), subject._version)
        cached = self._own_cache
        if cached is None or cached[0] != key:
            cached = self._own_cache = (key, self._head(subject), subject.session_id)
        return cached[1], cached[2]

    def _named_head(self, event_subject: Subject) -> tuple[Visitor, PayloadHead, str | None]:
        """Visitor and payload head for an event subject; both are kept on the subject
        (``_memo``) until it or the tracker's subject changes, so a backend reusing one
        Subject per visitor pays once (the visitor is asked of the registry again once
        the registry retires it). The memo holds a token, not the tracker: it never
        keeps a tracker alive, and a subject shared by two trackers is only slower."""
        tracker_subject = self.subject
        memo: _Memo | None = event_subject._memo
        if (
            memo is None
            or memo[0] is not self._token
            or memo[1] != event_subject._version
            or memo[2] is not tracker_subject
            or memo[3] != tracker_subject._version
        ):
            subject = _merge(tracker_subject, event_subject)
            key = _visitor_key(event_subject)
            memo = event_subject._memo = (
                self._token,
                event_subject._version,
                tracker_subject,
                tracker_subject._version,
                key,
                None if key is None else self._visitors.get(key),
                self._head(subject),
                subject.session_id,
            )
        visitor = memo[5]
        if visitor is None:
            return self._own, memo[6], memo[7]
        if visitor.retired:
            visitor = self._visitors.get(memo[4])
            event_subject._memo = (*memo[:5], visitor, *memo[6:])
        return visitor, memo[6], memo[7]

    def _head(self, subject: Subject) -> PayloadHead:
        return PayloadHead(
            url=self.url,
            source_id=self.source_id,
            profile_id=subject.profile_id,
            profile_ids=tuple(profile_ids(subject)),
            profile_metadata=subject.profile_metadata,
            session_metadata=subject.session_metadata,
            context=payload_context(
                subject, self.context, namespace=self.namespace, app_id=self.app_id
            ),
            properties=self.properties,
            options=self.options,
            ip_address=subject.ip_address,
        )

    def flush(self, timeout: float | None = None) -> int:
        """Send what the emitter holds; return how many events are still undelivered."""
        return self.emitter.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> int:
        """Flush for at most ``timeout`` seconds and close the emitter; safe to call twice.

        Returns how many events were left undelivered (reported to ``on_failure``, or
        kept in the spool when there is one).
        """
        if self._closed:
            return 0
        self._closed = True
        return self.emitter.close(timeout)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
