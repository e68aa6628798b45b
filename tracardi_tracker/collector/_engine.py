"""What the collector answers, without sockets: ``/track`` as Tracardi, plus ``/micro``.

:class:`Engine` takes a request (method, path, query, headers, body) and returns a
:class:`Reply`. The HTTP server in :mod:`._server` only moves bytes and applies faults, so the
whole contract can be exercised here without a network.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import attrs

from .._version import __version__
from ._bots import GTM_SERVER_ORIGIN, is_bot_user_agent
from ._config import CollectorConfig
from ._datetimes import format_datetime
from ._faults import FaultController, Faults
from ._html import render_page
from ._state import ProfileRecord, ProfileSessionState, Resolution, SessionRecord
from ._store import EventBatch, Store
from ._validation import TrackPayload, read_track_payload
from ._versions import get_version
from ._wire import (
    ACCELERATED,
    Inexact,
    Rejection,
    dumps,
    encode_events,
    error_body,
)

__all__ = ["Engine", "PendingReply", "Reply", "normalize_type"]

_BODY_KEEP = 64 * 1024
_TENANT = "default"
_PAGE_EVENTS = 500


class Reply(NamedTuple):
    """An HTTP answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class PendingReply(NamedTuple):
    """A ``/track`` answer waiting for the commit of the rows it staged."""

    reply: Reply
    group: int | None
    """The transaction holding its rows (``None``: it wrote nothing)."""
    started: float
    """``time.perf_counter()`` when the request was taken up."""
    context: str | None
    """The ``X-Context`` header, echoed in the answer."""


def normalize_type(event_type: str) -> str:
    """An event type as Tracardi stores it: stripped, lower-case, spaces as ``-``."""
    return event_type.strip().lower().replace(" ", "-")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _json_reply(value: object, status: int = 200) -> Reply:
    return Reply(status, dumps(value))


_ANSWER = (
    '{{"task":"{task}","ux":[],"response":{{}},"events":[],"profile":{{"id":{profile}}},'
    '"session":{{"id":{session}}},"errors":[],"warnings":[]}}'
)
"""The answer to an accepted ``/track`` request (``events`` listed only when debugging)."""


def _json_string(text: str | None) -> str:
    """``text`` as :func:`dumps` writes it (``null`` for ``None``)."""
    if text is None:
        return "null"
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return dumps(text).decode("utf-8")


def _uuid4() -> str:
    """``str(uuid.uuid4())``, made with less work: 122 random bits, version 4, variant 1."""
    digits = os.urandom(16).hex()
    return (
        f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-"
        f"{_VARIANT[int(digits[16], 16) & 3]}{digits[17:20]}-{digits[20:]}"
    )


_VARIANT = "89ab"


def _is_on(options: Mapping[str, Any], key: str, default: bool) -> bool:
    """Tracardi's ``is_on``: only real booleans count."""
    value = options.get(key)
    return value if isinstance(value, bool) else default


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Engine:
    """Handles every request the collector serves; thread-safe."""

    def __init__(self, config: CollectorConfig, store: Store, faults: FaultController) -> None:
        self.config = config
        self.version = get_version(config.tracardi_version)
        self.store = store
        self.faults = faults
        self.state = ProfileSessionState(self.version, static_profile_ids=config.static_profile_ids)
        self.state.load(store.load_profiles(), store.load_sessions())
        self._lock = threading.Lock()
        self.stored = threading.Condition()
        """Notified after every commit that stored events."""

    # -- routing --------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """Answer one request."""
        if path == "/track":
            return self.track(method, query, headers, body)
        route = _ROUTES.get((method, path))
        if route is not None:
            try:
                return route(self, dict(parse_qsl(query)), body)
            except ValueError as error:
                return Reply(400, error_body(str(error)))
        if any(path == known for _, known in _ROUTES):
            return Reply(405, error_body("Method Not Allowed"))
        return Reply(404, error_body("Not Found"))

    # -- /track ---------------------------------------------------------------------------

    def track(self, method: str, query: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """``/track`` as the configured Tracardi version answers it, once its rows are
        committed (with those of the other requests under way: see :meth:`Store.leave_group`)."""
        store = self.store
        store.enter_group()
        group: int | None = None
        try:
            pending = self.stage_track(method, query, headers, body)
            group = pending.group
        finally:
            self._leave_group(group)
        return self.finish_track(pending)

    def stage_track(
        self, method: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> PendingReply:
        """All of ``/track`` but the commit: the rows go into the open transaction.

        For a server that reads many requests before it answers any: stage each, then
        :meth:`commit` once, then :meth:`finish_track` each.
        """
        started = time.perf_counter()
        received = _now()
        staged: list[int] = []  # the transaction holding this request's rows, once written
        try:
            _check_authorization(headers.get("authorization"))
            if method == "POST":
                reply = _exactly(
                    lambda fast: self._post_track(query, headers, body, received, fast, staged)
                )
            elif method == "PUT":
                reply = _exactly(lambda fast: self._put_track(query, headers, body, received, fast))
            else:
                raise Rejection(405, "Method Not Allowed")
        except Rejection as rejection:
            self._record_bad(method, query, headers, body, received, rejection)
            allow = (("allow", "POST"),) if rejection.status == 405 else ()
            reply = Reply(rejection.status, rejection.body(), headers=allow)
        group = staged[0] if staged else None
        return PendingReply(reply, group, started, headers.get("x-context"))

    def commit(self) -> None:
        """Commit the rows staged so far (:meth:`finish_track` tells each request whether
        its commit failed)."""
        self.store.commit()

    def finish_track(self, pending: PendingReply) -> Reply:
        """The answer of :meth:`stage_track`, once its rows are committed.

        :raises sqlite3.OperationalError: when the transaction holding its rows failed.
        """
        if pending.group is not None:
            self._check_committed(pending.group)
            with self.stored:
                self.stored.notify_all()
        reply = pending.reply
        extra = [("x-process-time", f"{time.perf_counter() - pending.started:.6f}")]
        if pending.context is not None:
            extra.append(("x-context", pending.context))  # Tracardi echoes the data set it used
        return reply._replace(headers=(*reply.headers, *extra))

    def _put_track(
        self, query: str, headers: Mapping[str, str], body: bytes, received: datetime, fast: bool
    ) -> Reply:
        read_track_payload(
            body=body,
            content_type=headers.get("content-type"),
            query=query,
            version=self.version,
            now=received,
            fast=fast,
        )
        return Reply(200, b"null")

    def _leave_group(self, group: int | None) -> None:
        """Wait until this request's rows are committed (see :meth:`Store.leave_group`).

        If the commit failed, the profiles and sessions this collector knows are read again
        from the database (they may name some that were not stored), and the error raised.
        """
        try:
            self.store.leave_group(group)
        except Exception:
            self._forget_uncommitted()
            raise

    def _check_committed(self, group: int) -> None:
        """Raise (as :meth:`_leave_group`) if transaction ``group`` failed to commit."""
        try:
            self.store.check_committed(group)
        except Exception:
            self._forget_uncommitted()
            raise

    def _forget_uncommitted(self) -> None:
        """Read the profiles and sessions again from the database after a failed commit."""
        with self._lock:
            self.state.clear()
            self.state.load(self.store.load_profiles(), self.store.load_sessions())

    def _post_track(
        self,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        received: datetime,
        fast: bool,
        staged: list[int],
    ) -> Reply:
        """``POST /track``; the transaction holding the rows written goes into ``staged``
        (they are committed before the answer goes out: see :meth:`stage_track`)."""
        version = self.version
        received_at = format_datetime(received)
        payload, profile_less = read_track_payload(
            body=body,
            content_type=headers.get("content-type"),
            query=query,
            version=version,
            now=received,
            fast=fast,
            now_text=received_at,
        )
        if payload.request_is_null:
            raise Rejection(500, "'NoneType' object does not support item assignment")
        if payload.source_id.startswith("@"):
            raise Rejection(500, "Internal event sources are not allowed via API.")
        origin_is_bot = version.gtm_origin_is_bot and headers.get("origin") == GTM_SERVER_ORIGIN
        if origin_is_bot or is_bot_user_agent(headers.get("user-agent")):
            raise Rejection(version.rejection_status, "Traffic from bot is not allowed.")
        source_id = payload.source_id.strip()
        self._check_source(source_id, payload)
        if not payload.events:
            return Reply(200, b"null")

        options = payload.options
        save_events = _is_on(options, "saveEvents", True)
        session_id = (payload.session_id or "").strip() or None
        profile_id = (payload.profile_id or "").strip() or None
        events = payload.events
        encoded = encode_events(events.payloads, payload.by_orjson) if save_events else []
        failure = events.failure
        task = _uuid4()
        with self._lock:
            if self.state.is_new_session(session_id):
                agent = _browser_agent(payload.context, headers.get("user-agent"))
                if is_bot_user_agent(agent):
                    raise Rejection(
                        version.new_session_bot_status, "Traffic from bot is not allowed."
                    )
            if failure is not None:
                raise Rejection(500, failure)
            resolution = self.state.resolve(
                session_id=session_id,
                session_metadata=payload.session_metadata,
                profile_id=profile_id,
                profile_metadata=payload.profile_metadata,
                profile_ids=payload.profile_ids,
                profile_less=profile_less,
                save_session=_is_on(options, "saveSession", True),
                save_profile=_is_on(options, "saveProfile", True),
                now=received_at,
            )
            batch = None
            if encoded:
                batch = EventBatch(
                    ids=events.ids(),
                    types=events.types(),
                    payloads=encoded,
                    profile_id=resolution.profile_id,
                    session_id=resolution.session_id,
                    source_id=source_id,
                    task=task,
                    received_at=received_at,
                )
            staged.append(self.store.stage(batch, resolution.profiles, resolution.sessions))
            self.state.apply(resolution)
        debug = self.config.track_debug and _is_on(options, "debugger", False)
        if debug and batch is not None:
            answer = {
                "task": task,
                "ux": [],
                "response": {},
                "events": list(batch.ids),
                "profile": {"id": resolution.profile_id},
                "session": {"id": resolution.session_id},
                "errors": [],
                "warnings": [],
            }
            return Reply(200, dumps(answer))
        answer_text = _ANSWER.format(
            task=task,
            profile=_json_string(resolution.profile_id),
            session=_json_string(resolution.session_id),
        )
        return Reply(200, answer_text.encode("utf-8"))

    def _check_source(self, source_id: str, payload: TrackPayload) -> None:
        config = self.config
        status = self.version.rejection_status
        if source_id in config.disabled_sources:
            raise Rejection(status, "Event source disabled.")
        if config.sources is not None and source_id not in config.sources:
            tenant = (
                f" for tenant `{_TENANT}`. Tenant or event source may not exit."
                if self.version.tenant_in_source_error
                else "."
            )
            raise Rejection(
                status,
                f"Invalid event source `{source_id}`{tenant} Request came from IP: `None` "
                f"width payload: {_payload_repr(payload)}",
                f"Invalid event source `{source_id}`",
            )

    def _record_bad(
        self,
        method: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        received: datetime,
        rejection: Rejection,
    ) -> None:
        self.store.add_bad(
            received_at=format_datetime(received),
            method=method,
            path="/track" + (f"?{query}" if query else ""),
            status=rejection.status,
            reason=_short(str(rejection.reason)),
            detail_json=dumps(rejection.detail).decode("utf-8"),
            body=body[:_BODY_KEEP].decode("utf-8", "replace"),
            user_agent=headers.get("user-agent"),
        )

    # -- inspection -----------------------------------------------------------------------

    def summary(self) -> dict[str, int]:
        """``{"total": ..., "good": ..., "bad": ...}``."""
        good = self.store.count_events()
        bad = self.store.count_bad()
        return {"total": good + bad, "good": good, "bad": bad}

    def reset(self) -> None:
        """Forget every event, rejected request, profile and session."""
        with self._lock:
            self.store.reset()
            self.state.clear()

    def add_profile(self, profile_id: str, ids: tuple[str, ...] = ()) -> ProfileRecord:
        """Create (or extend) a profile, as if Tracardi had merged ``ids`` into it."""
        with self._lock:
            existing = self.state.profile(profile_id)
            if existing is not None and existing.id == profile_id:
                merged = tuple(dict.fromkeys((*existing.ids, *ids)))
                record = ProfileRecord(
                    id=profile_id,
                    ids=merged,
                    metadata=existing.metadata,
                    created_at=existing.created_at,
                )
            else:
                record = ProfileRecord(id=profile_id, ids=ids, created_at=format_datetime(_now()))
            self.store.write_track(None, (record,), ())
            self.state.apply(Resolution(profile_id=None, session_id=None, profiles=(record,)))
            return record

    def info(self) -> dict[str, Any]:
        """What this collector imitates and how it is configured."""
        config = self.config
        return {
            "collector": f"tracardi-tracker {__version__}",
            "tracardi_version": self.version.name,
            "imitates": self.version.covers,
            "sources": None if config.sources is None else sorted(config.sources),
            "disabled_sources": sorted(config.disabled_sources),
            "static_profile_ids": config.static_profile_ids,
            "track_debug": config.track_debug,
            "db": self.store.path,
            "summary": self.summary(),
            "commits": self.store.commits,
        }

    def _good(self, query: dict[str, str], _body: bytes) -> Reply:
        events = self.store.events(
            type=normalize_type(query["type"]) if "type" in query else None,
            profile=query.get("profile"),
            session=query.get("session"),
            limit=_int(query, "limit"),
        )
        return _json_reply([event.to_json() for event in events])

    def _bad(self, query: dict[str, str], _body: bytes) -> Reply:
        bad = self.store.bad(limit=_int(query, "limit"))
        return _json_reply([item.to_json() for item in bad])

    def _all(self, _query: dict[str, str], _body: bytes) -> Reply:
        return _json_reply(self.summary())

    def _reset(self, _query: dict[str, str], _body: bytes) -> Reply:
        self.reset()
        return _json_reply(self.summary())

    def _faults_get(self, _query: dict[str, str], _body: bytes) -> Reply:
        return _json_reply(self.faults.status())

    def _faults_set(self, _query: dict[str, str], body: bytes) -> Reply:
        data = json.loads(body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of fault settings")
        self.faults.set(Faults.from_json(data))
        return _json_reply(self.faults.status())

    def _faults_clear(self, _query: dict[str, str], _body: bytes) -> Reply:
        self.faults.clear()
        return _json_reply(self.faults.status())

    def _profiles(self, _query: dict[str, str], _body: bytes) -> Reply:
        with self._lock:
            profiles = self.state.profiles()
        return _json_reply([_record_json(profile) for profile in profiles])

    def _profiles_add(self, _query: dict[str, str], body: bytes) -> Reply:
        data = json.loads(body or b"{}")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ValueError('expected {"id": "...", "ids": ["..."]}')
        ids = data.get("ids") or []
        if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
            raise ValueError("ids must be a list of strings")
        return _json_reply(_record_json(self.add_profile(data["id"], tuple(ids))))

    def _sessions(self, _query: dict[str, str], _body: bytes) -> Reply:
        with self._lock:
            sessions = self.state.sessions()
        return _json_reply([_record_json(session) for session in sessions])

    def _info(self, _query: dict[str, str], _body: bytes) -> Reply:
        return _json_reply(self.info())

    def _page(self, query: dict[str, str], _body: bytes) -> Reply:
        event_type = normalize_type(query["type"]) if query.get("type") else None
        profile = query.get("profile") or None
        events = self.store.events(
            type=event_type, profile=profile, limit=_PAGE_EVENTS, newest_first=True
        )
        bad = self.store.bad(limit=100, newest_first=True)
        page = render_page(
            events=events,
            bad=bad,
            summary=self.summary(),
            info=self.info(),
            type_filter=event_type,
            profile_filter=profile,
            limit=_PAGE_EVENTS,
        )
        return Reply(200, page.encode("utf-8"), "text/html; charset=utf-8")


def _int(query: Mapping[str, str], key: str) -> int | None:
    if key not in query:
        return None
    try:
        return int(query[key])
    except ValueError:
        raise ValueError(f"{key} must be an integer") from None


def _record_json(record: ProfileRecord | SessionRecord) -> dict[str, Any]:
    return attrs.asdict(record)


_ROUTES: dict[tuple[str, str], Callable[[Engine, dict[str, str], bytes], Reply]] = {
    ("GET", "/"): Engine._page,
    ("GET", "/micro/all"): Engine._all,
    ("GET", "/micro/good"): Engine._good,
    ("GET", "/micro/bad"): Engine._bad,
    ("POST", "/micro/reset"): Engine._reset,
    ("GET", "/micro/faults"): Engine._faults_get,
    ("POST", "/micro/faults"): Engine._faults_set,
    ("DELETE", "/micro/faults"): Engine._faults_clear,
    ("GET", "/micro/profiles"): Engine._profiles,
    ("POST", "/micro/profiles"): Engine._profiles_add,
    ("GET", "/micro/sessions"): Engine._sessions,
    ("GET", "/micro/info"): Engine._info,
}


def _exactly(answer: Callable[[bool], Reply]) -> Reply:
    """``answer(True)`` (``orjson`` may read the body), unless that might not be FastAPI's.

    Then the answer is ``answer(False)`` (the standard library reads it): on :class:`Inexact`
    (raised before anything is stored), and on any rejection, as an error answer can show
    the values it was sent (rare enough to be read twice).
    """
    if not ACCELERATED:
        return answer(False)
    try:
        return answer(True)
    except (Inexact, Rejection):
        return answer(False)


def _check_authorization(value: str | None) -> None:
    """Tracardi's context middleware unpacks ``Authorization`` into exactly two words."""
    if value is None:
        return
    parts = value.split()
    if len(parts) < 2:
        raise Rejection(500, f"not enough values to unpack (expected 2, got {len(parts)})")
    if len(parts) > 2:
        raise Rejection(500, "too many values to unpack (expected 2)")


def _browser_agent(context: Mapping[str, Any], header: str | None) -> str | None:
    """``context.browser.local.browser.userAgent``, else the ``User-Agent`` header."""
    try:
        agent = context["browser"]["local"]["browser"]["userAgent"]
    except KeyError:
        return header
    except TypeError as error:
        raise Rejection(500, str(error)) from error
    return agent if isinstance(agent, str) else None


def _payload_repr(payload: TrackPayload) -> str:
    """A short pydantic-like repr of the payload, as in Tracardi's unknown-source message."""
    session = f"DefaultEntity(id={payload.session_id!r}, metadata=None)"
    profile = f"PrimaryEntity(id={payload.profile_id!r})" if payload.profile_id else "None"
    parsed = payload.events
    events = ", ".join(
        f"EventPayload(id={event_id!r}, type={event_type!r})"
        for event_id, event_type in zip(parsed.ids()[:10], parsed.types()[:10], strict=True)
    )
    if len(payload.events) > 10:
        events += ", ..."
    return (
        f"source=Entity(id={payload.source_id!r}) "
        f"session={session if payload.session_id is not None else 'None'} "
        f"profile={profile} context={payload.context!r} properties={payload.properties!r} "
        f"events=[{events}] options={payload.options!r} profile_less=False debug=False"
    )
