"""Tracardi's request models, checked the way FastAPI and pydantic check them.

There is no pydantic here: the checks are written out by hand so they stay fast (the collector
must take tens of thousands of events a second) and so the *error bodies* can imitate the two
pydantic styles Tracardi servers produce:

``"2.3"`` (Tracardi 0.8.2 and 0.9.0 pin pydantic 2.3.0)
    Tracardi's ``TrackerPayload``, ``EventPayload`` and ``Time`` override ``__init__``. Under
    pydantic 2.3 a ``ValidationError`` raised inside a nested overridden ``__init__`` escapes
    validation as it is, so the answer lists only the errors of the *first* nested model that
    failed, with ``loc`` relative to that model (``["body", "type"]`` for a missing event type,
    ``["body", "create"]`` for a bad event time). Errors of fields that are not such models
    (``source``, ``session``, ``profile``, lists, dicts) keep their path from the body. Every
    item carries a ``url``.
``"2.7"`` (Tracardi 1.0 with pydantic >= 2.7 and FastAPI >= 0.111)
    Every error of every event, with its full ``loc`` (``["body", "events", 0, "type"]``), and
    no ``url``.

``input`` shows the payload after the server's own additions, as Tracardi's error bodies do:
an event without ``id``/``time`` gets a fresh ``id`` and ``time.insert``; the payload gets
``context: {}`` and ``metadata``.

Values that pass validation but make Tracardi fail later (``"time": null``, ``"tags": null``,
non-string tags, ``"options": null``, ``"request": null``, scheduler options) are reported to
the caller so it can answer ``500`` as Tracardi does.
"""

from __future__ import annotations

import json
import operator
import re
import uuid
from calendar import isleap
from collections.abc import Callable
from datetime import datetime
from email.message import Message
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

import attrs

from ._datetimes import DateTimeInvalid, format_datetime, parse_datetime
from ._versions import TracardiVersion
from ._wire import (
    ACCELERATED,
    Inexact,
    InjectedMetadata,
    InjectedTime,
    Rejection,
    check_writable,
    parse_body,
)

__all__ = [
    "LineError",
    "ParsedEvent",
    "ParsedEvents",
    "TrackPayload",
    "parse_profile_less",
    "read_track_payload",
]

Loc = tuple[str | int, ...]
_T = TypeVar("_T")
_MISSING: Any = object()
_URL = "https://errors.pydantic.dev/2.3/v/"
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_STATUS_SLOTS = ("validation", "reshaping", "merging", "error")


@attrs.frozen
class LineError:
    """One item of a 422 ``detail`` list."""

    type: str
    loc: Loc
    msg: str
    input: object
    ctx: dict[str, object] | None = None
    pydantic: bool = True
    """Made by pydantic (gets a ``url`` in the 2.3 style); ``False`` for FastAPI's own."""

    def to_json(self, style: str) -> dict[str, object]:
        """The item as the server writes it, in pydantic ``style`` ``"2.3"`` or ``"2.7"``."""
        item: dict[str, object] = {
            "type": self.type,
            "loc": list(self.loc),
            "msg": self.msg,
            "input": self.input,
        }
        if self.ctx is not None:
            item["ctx"] = self.ctx
        if style == "2.3" and self.pydantic:
            item["url"] = _URL + self.type
        return item


class ParsedEvent(NamedTuple):
    """One valid event, ready to store."""

    id: str
    type: str
    payload: dict[str, Any]
    """The event as stored: id, type, time, properties, context, tags, options."""
    failure: str | None
    """Why Tracardi would fail on this event after validation (answers 500), if it would."""


@attrs.define
class ParsedEvents:
    """A payload's valid events, in the order they came.

    Only the stored payloads are kept (their ``id`` and ``type`` are the event's, see
    :class:`ParsedEvent`); they are encoded and dropped, never changed, so the empty
    ``properties``, ``context``, ``options`` and ``tags`` of events without them may share
    one object.
    """

    payloads: list[dict[str, Any]] = attrs.field(factory=list)
    """Each event as stored (see :class:`ParsedEvent`)."""
    failure: str | None = None
    """The first event's reason Tracardi would fail after validation (answers 500), if any."""

    def __len__(self) -> int:
        return len(self.payloads)

    def ids(self) -> list[str]:
        """Each event's id."""
        return list(map(_GET_ID, self.payloads))

    def types(self) -> list[str]:
        """Each event's type as stored."""
        return list(map(_GET_TYPE, self.payloads))

    def add(self, event: ParsedEvent) -> None:
        """Append one event."""
        self.payloads.append(event.payload)
        if self.failure is None:
            self.failure = event.failure


_GET_ID = operator.itemgetter("id")
_GET_TYPE = operator.itemgetter("type")


@attrs.frozen(kw_only=True)
class TrackPayload:
    """A ``/track`` body that passed validation (ids not yet trimmed)."""

    source_id: str
    session_id: str | None
    session_metadata: dict[str, str | None] | None
    profile_id: str | None
    profile_metadata: dict[str, str | None] | None
    profile_ids: tuple[str, ...]
    context: dict[str, Any]
    properties: dict[str, Any] | None
    options: dict[str, Any]
    request_is_null: bool
    events: ParsedEvents
    body: dict[str, Any]
    by_orjson: bool = False
    """``orjson`` read the body (see :func:`._wire.parse_body`)."""


class _Abort(Exception):
    """A nested model with its own ``__init__`` failed (pydantic 2.3: escapes validation)."""

    def __init__(self, errors: list[LineError]) -> None:
        super().__init__(f"{len(errors)} validation errors")
        self.errors = errors


class _Crash(Exception):
    """Tracardi raises something that is not a validation error: the answer is 500."""


def _bool(value: object) -> tuple[bool | None, str | None]:
    """pydantic's lax ``bool``: the value, or the error type."""
    if value is True or value is False:
        return value, None
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True, None
        if lowered in _FALSE:
            return False, None
        return None, "bool_parsing"
    if isinstance(value, (int, float)):
        if value == 1:
            return True, None
        if value == 0:
            return False, None
        return None, "bool_parsing"
    return None, "bool_type"


_BOOL_MSG = {
    "bool_parsing": "Input should be a valid boolean, unable to interpret input",
    "bool_type": "Input should be a valid boolean",
}


def parse_profile_less(query: str, style: str) -> tuple[bool, list[LineError]]:
    """Read the ``?profile_less=`` query parameter (FastAPI ``bool``, default false)."""
    if not query:
        return False, []  # (what parse_qsl would find: nothing)
    value: str | None = None
    for key, item in parse_qsl(query, keep_blank_values=True):
        if key == "profile_less":
            value = item
    if value is None:
        return False, []
    parsed, error = _bool(value)
    if error is not None:
        return False, [LineError(error, ("query", "profile_less"), _BOOL_MSG[error], value)]
    return bool(parsed), []


class _Checker:
    """Walks one payload, collecting :class:`LineError` items in the chosen style."""

    def __init__(
        self, version: TracardiVersion, now: datetime, *, by_orjson: bool, now_text: str = ""
    ) -> None:
        self.version = version
        self.by_orjson = by_orjson
        self.legacy = version.pydantic == "2.3"
        self.now = now
        self.now_text = now_text or format_datetime(now)
        self.errors: list[LineError] = []

    # -- error helpers -------------------------------------------------------------------

    def err(
        self,
        loc: Loc,
        kind: str,
        msg: str,
        value: object,
        ctx: dict[str, object] | None = None,
    ) -> None:
        self.errors.append(LineError(kind, loc, msg, value, ctx))

    def missing(self, loc: Loc, model_input: object) -> None:
        self.err(loc, "missing", "Field required", model_input)

    def not_model(self, loc: Loc, value: object, name: str) -> None:
        self.err(
            loc,
            "model_type",
            f"Input should be a valid dictionary or instance of {name}",
            value,
            {"class_name": name},
        )

    def optional_str(self, loc: Loc, value: object) -> None:
        if value is not None and type(value) is not str:
            self.err(loc, "string_type", "Input should be a valid string", value)

    def optional_dict(self, loc: Loc, value: object) -> None:
        if value is not None and type(value) is not dict:
            self.err(loc, "dict_type", "Input should be a valid dictionary", value)

    def optional_list(self, loc: Loc, value: object) -> None:
        if value is not None and type(value) is not list:
            self.err(loc, "list_type", "Input should be a valid list", value)

    def optional_bool(self, loc: Loc, value: object) -> None:
        if value is None:
            return
        self.required_bool(loc, value)

    def required_bool(self, loc: Loc, value: object) -> None:
        _, error = _bool(value)
        if error is not None:
            self.err(loc, error, _BOOL_MSG[error], value)

    def datetime_field(self, loc: Loc, value: object) -> datetime | None:
        if value is None:
            return None
        if type(value) is datetime:
            return value
        try:
            return parse_datetime(value, date_only=self.version.accepts_date_only)
        except DateTimeInvalid as invalid:
            if invalid.reason is None:
                self.err(loc, invalid.kind, "Input should be a valid datetime", value)
            else:
                self.err(
                    loc,
                    invalid.kind,
                    f"Input should be a valid datetime, {invalid.reason}",
                    value,
                    {"error": invalid.reason},
                )
            return None

    # -- models with an overridden __init__ ----------------------------------------------

    def custom_init(
        self, loc: Loc, check: Callable[[Loc, dict[str, Any]], _T], data: dict[str, Any]
    ) -> _T | None:
        """Check a model whose ``__init__`` Tracardi overrides (see the module docstring)."""
        if self.legacy:
            outer = self.errors
            self.errors = []
            try:
                result = check((), data)
            finally:
                own, self.errors = self.errors, outer
            if own:
                raise _Abort(own)
            return result
        before = len(self.errors)
        result = check(loc, data)
        return result if len(self.errors) == before else None

    def time(self, loc: Loc, data: dict[str, Any]) -> tuple[datetime | None, ...]:
        """``Time``: ``insert``, ``create``, ``update``; ``insert`` defaults to now."""
        if "insert" not in data:
            data = {**data, "insert": self.now}
        return (
            self.datetime_field((*loc, "insert"), data.get("insert")),
            self.datetime_field((*loc, "create"), data.get("create")),
            self.datetime_field((*loc, "update"), data.get("update")),
        )

    def time_field(self, loc: Loc, value: object) -> dict[str, str | None] | None:
        """An optional ``Time`` sub-model, returned as ISO strings."""
        if value is None:
            return None
        if type(value) is not dict:
            self.not_model(loc, value, "Time")
            return None
        times = self.custom_init(loc, self.time, value)
        if times is None:
            return None
        insert, create, update = times
        return {
            "insert": format_datetime(insert) if insert else None,
            "create": format_datetime(create) if create else None,
            "update": format_datetime(update) if update else None,
        }

    # -- entities ---------------------------------------------------------------------------

    def entity(
        self, loc: Loc, data: dict[str, Any], *, metadata: bool = False, primary: bool = False
    ) -> tuple[str, dict[str, str | None] | None, tuple[str, ...]]:
        """``Entity`` / ``DefaultEntity`` / ``PrimaryEntity`` fields."""
        entity_id = data.get("id", _MISSING)
        if entity_id is _MISSING:
            self.missing((*loc, "id"), data)
        elif type(entity_id) is not str:
            self.err((*loc, "id"), "string_type", "Input should be a valid string", entity_id)
        if primary:
            self.optional_str((*loc, "primary_id"), data.get("primary_id"))
        meta = self.time_field((*loc, "metadata"), data.get("metadata")) if metadata else None
        ids: tuple[str, ...] = ()
        if primary:
            raw_ids = data.get("ids")
            if raw_ids is not None:
                if type(raw_ids) is not list:
                    self.optional_list((*loc, "ids"), raw_ids)
                else:
                    for index, item in enumerate(raw_ids):
                        if type(item) is not str:
                            self.err(
                                (*loc, "ids", index),
                                "string_type",
                                "Input should be a valid string",
                                item,
                            )
                    ids = tuple(item for item in raw_ids if type(item) is str)
        return (entity_id if type(entity_id) is str else ""), meta, ids

    def union(
        self,
        loc: Loc,
        value: object,
        members: tuple[tuple[str, Callable[[Loc, dict[str, Any]], _T]], ...],
    ) -> _T | None:
        """A smart-mode union of models: the first member that validates wins."""
        if type(value) is not dict:
            for name, _ in members:
                self.not_model((*loc, name), value, name)
            return None
        collected: list[LineError] = []
        for name, check in members:
            outer = self.errors
            self.errors = []
            try:
                result = check((*loc, name), value)
            finally:
                own, self.errors = self.errors, outer
            if not own:
                return result
            collected.extend(own)
        self.errors.extend(collected)
        return None

    # -- events -----------------------------------------------------------------------------

    def event(self, loc: Loc, data: dict[str, Any]) -> ParsedEvent | None:
        """``EventPayload`` (its ``__init__`` adds ``id`` and ``time.insert`` first)."""
        time_value = data.get("time", _MISSING)
        if "id" not in data or time_value is _MISSING:
            data = dict(data)
            if "id" not in data:
                data["id"] = str(uuid.uuid4())
            if time_value is _MISSING:
                data["time"] = time_value = InjectedTime(self.now)
        if type(time_value) is dict and "insert" not in time_value:
            time_value["insert"] = self.now
        before = len(self.errors)

        event_id = data["id"]
        if event_id is not None and type(event_id) is not str:
            self.err((*loc, "id"), "string_type", "Input should be a valid string", event_id)

        failure: str | None = None
        insert: datetime | None = None
        create: datetime | None = None
        if type(time_value) is InjectedTime:
            insert = self.now
        elif time_value is None:
            failure = "'NoneType' object has no attribute 'insert'"
        elif type(time_value) is dict:
            times = self.custom_init((*loc, "time"), self.time, time_value)
            if times is not None:
                insert, create, _ = times
        else:
            self.not_model((*loc, "time"), time_value, "Time")

        event_type = data.get("type", _MISSING)
        stored_type = ""
        if event_type is _MISSING:
            self.missing((*loc, "type"), data)
        elif type(event_type) is not str:
            self.err((*loc, "type"), "string_type", "Input should be a valid string", event_type)
        else:
            stripped = event_type.strip()
            if not stripped:
                self.err(
                    (*loc, "type"),
                    "value_error",
                    "Value error, Event type can not be empty",
                    event_type,
                    {"error": {}},
                )
            stored_type = stripped.lower().replace(" ", "-")

        properties = data.get("properties", {})
        options = data.get("options", {})
        context = data.get("context", {})
        tags = data.get("tags", [])
        self.optional_dict((*loc, "properties"), properties)
        self.optional_dict((*loc, "options"), options)
        self.optional_dict((*loc, "context"), context)
        self.optional_list((*loc, "tags"), tags)
        for slot in _STATUS_SLOTS:
            status = data.get(slot)
            if status is not None:
                self.process_status((*loc, slot), status)

        if len(self.errors) != before:
            return None
        if options is None:
            raise _Crash("argument of type 'NoneType' is not iterable")
        if "source_id" in options:
            options = {key: value for key, value in options.items() if key != "source_id"}
        if failure is None:
            failure = _tags_failure(tags)
        if not event_id:
            event_id = str(uuid.uuid4())
        payload = {
            "id": event_id,
            "type": stored_type,
            "time": {
                "insert": format_datetime(insert) if insert else self.now_text,
                "create": format_datetime(create) if create else None,
            },
            "properties": properties,
            "context": context,
            "tags": tags,
            "options": options,
        }
        return ParsedEvent(event_id, stored_type, payload, failure)

    def process_status(self, loc: Loc, value: object) -> None:
        """``ProcessStatus``: ``{error: bool, message: str?, trace: list?}``."""
        if type(value) is not dict:
            self.not_model(loc, value, "ProcessStatus")
            return
        if "error" not in value:
            self.missing((*loc, "error"), value)
        else:
            self.required_bool((*loc, "error"), value["error"])
        self.optional_str((*loc, "message"), value.get("message"))
        self.optional_list((*loc, "trace"), value.get("trace"))

    # -- the payload ------------------------------------------------------------------------

    def tracker_payload(self, loc: Loc, data: dict[str, Any]) -> TrackPayload | None:
        """``TrackerPayload`` (its ``__init__`` sets ``context`` and ``metadata`` first)."""
        body = data
        data = dict(data)
        if data.get("context") is None:
            data["context"] = {}
        data["metadata"] = InjectedMetadata(self.now)
        before = len(self.errors)
        version = self.version

        source_id = ""
        if "source" not in data:
            self.missing((*loc, "source"), data)
        else:
            source = self.union(
                (*loc, "source"),
                data["source"],
                (("EventSource", self.entity), ("Entity", self.entity)),
            )
            if source is not None:
                source_id = source[0]

        session: tuple[str, dict[str, str | None] | None, tuple[str, ...]] | None = None
        raw_session = data.get("session")
        if raw_session is not None:
            if version.session_is_union:
                session = self.union(
                    (*loc, "session"),
                    raw_session,
                    (("DefaultEntity", self.default_entity), ("Entity", self.entity)),
                )
            elif type(raw_session) is dict:
                session = self.entity((*loc, "session"), raw_session)
            else:
                self.not_model((*loc, "session"), raw_session, "Entity")

        profile: tuple[str, dict[str, str | None] | None, tuple[str, ...]] | None = None
        raw_profile = data.get("profile")
        if raw_profile is not None:
            if type(raw_profile) is not dict:
                self.not_model((*loc, "profile"), raw_profile, version.profile_model)
            else:
                extras = version.reads_entity_extras
                profile = self.entity(
                    (*loc, "profile"), raw_profile, metadata=extras, primary=extras
                )

        context = data["context"]
        properties = data.get("properties", {})
        request = data.get("request", {})
        self.optional_dict((*loc, "context"), context)
        self.optional_dict((*loc, "properties"), properties)
        self.optional_dict((*loc, "request"), request)

        events = ParsedEvents()
        raw_events = data.get("events", [])
        if type(raw_events) is not list:
            self.err((*loc, "events"), "list_type", "Input should be a valid list", raw_events)
        else:
            index = _fast_events(raw_events, 0, self.now_text, events)
            if index < len(raw_events) and self.by_orjson:
                raise Inexact("an event the fast path does not take")  # see ._wire
            while index < len(raw_events):
                item = raw_events[index]
                if type(item) is not dict:
                    self.not_model((*loc, "events", index), item, "EventPayload")
                else:
                    parsed = self.custom_init((*loc, "events", index), self.event, item)
                    if parsed is not None:
                        events.add(parsed)
                index = _fast_events(raw_events, index + 1, self.now_text, events)

        options = data.get("options", {})
        self.optional_dict((*loc, "options"), options)
        if "profile_less" in data:
            self.required_bool((*loc, "profile_less"), data["profile_less"])
        self.optional_bool((*loc, "debug"), data.get("debug"))

        if len(self.errors) != before:
            return None
        if options is None:
            raise _Crash("argument of type 'NoneType' is not iterable")
        _check_scheduled(options, events, source_id)
        return TrackPayload(
            source_id=source_id,
            session_id=session[0] if session else None,
            session_metadata=session[1] if session else None,
            profile_id=profile[0] if profile else None,
            profile_metadata=profile[1] if profile else None,
            profile_ids=profile[2] if profile else (),
            context=context,
            properties=properties,
            options=options,
            request_is_null=request is None,
            events=events,
            body=body,
            by_orjson=self.by_orjson,
        )

    def default_entity(
        self, loc: Loc, data: dict[str, Any]
    ) -> tuple[str, dict[str, str | None] | None, tuple[str, ...]]:
        """``DefaultEntity``: an id and optional ``metadata`` (a ``Time``)."""
        return self.entity(loc, data, metadata=self.version.reads_entity_extras)


_FAST_KEYS = frozenset({"id", "type", "time", "properties", "context", "options", "tags"})
_TIME_KEYS = frozenset({"insert", "create", "update"})


def _fast_time(value: object) -> str | None:
    """A well-formed ISO 8601 string, normalised as :func:`format_datetime` writes it.

    ``None`` for anything else (the full check then decides). Dates seen before are not
    checked again, so a stream of events costs a regex match and a few string operations.
    """
    if type(value) is not str:
        return None
    if _CANONICAL(value) is not None and value[:10] in _GOOD_DATES:
        return value
    match = _ISO(value)
    if match is None:
        return None
    date, hour, minute, second, fraction, sign, tz_hour, tz_minute = match.groups()
    if date not in _GOOD_DATES:
        try:
            datetime(int(date[:4]), int(date[5:7]), int(date[8:]))
        except ValueError:
            return None
        if len(_GOOD_DATES) > 4096:
            _GOOD_DATES.clear()
        _GOOD_DATES.add(date)
    if hour > "23" or minute > "59" or (second is not None and second > "59"):
        return None
    text = f"{date}T{hour}:{minute}:{second or '00'}"
    if fraction is not None:
        micro = (fraction + "00000")[:6]
        if micro != "000000":
            text = f"{text}.{micro}"
    tz_minute = tz_minute or "00"
    if sign is None or (tz_hour == "00" and tz_minute == "00"):
        return text + "Z"
    if tz_hour > "23" or tz_minute > "59":
        return None
    return f"{text}{sign}{tz_hour}:{tz_minute}"


_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt_ ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)?"
).fullmatch
_GOOD_DATES: set[str] = set()
_CANONICAL = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.(?!000000)[0-9]{6})?Z"
).fullmatch
"""Times already written as :func:`_fast_time` writes them (given a date in ``_GOOD_DATES``)."""
_STORED_TYPES: dict[str, str] = {}
"""Event types seen before (never blank ones), as stored."""
_NO_DICT: dict[str, Any] = {}
"""``properties``, ``context`` or ``options`` of an event without them (shared: see
:class:`ParsedEvents`)."""
_NO_TAGS: list[str] = []
"""``tags`` of an event without them (shared: see :class:`ParsedEvents`)."""
_KNOWN_TIMES: dict[str, str] = {}
"""Valid times seen before that are not written as stored, and how they are stored."""
_SHAPE = b"9999-99-99T99:99:99.999999Z"
_SHAPES: dict[int, bytes] = {}
"""``_SHAPE`` repeated, joined by line breaks, by count."""
_DATE_TIME = (
    r"(?!0000)[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-9])|(?:0[13-9]|1[0-2])-30"
    r"|(?:0[13578]|1[02])-31)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
)
"""A valid ``YYYY-MM-DDTHH:MM:SS`` (year 1 on), except that February 29 of any year matches."""
_MS_TIMES = re.compile(f"{_DATE_TIME}\\.[0-9]{{3}}Z(?:\n{_DATE_TIME}\\.[0-9]{{3}}Z)*").fullmatch
"""Times ``YYYY-MM-DDTHH:MM:SS.fffZ`` joined by line breaks (February 29 checked apart)."""
_FEBRUARY_29 = re.compile(r"([0-9]{4})-02-29T").findall
_DIGITS_AS_NINE = bytes(57 if 48 <= byte <= 57 else byte for byte in range(256))
_GOOD_PREFIXES: set[str] = set()
"""``YYYY-MM-DDTHH:MM:S`` (to the tens of seconds) of valid times seen before."""
_PREFIX = operator.itemgetter(slice(0, 18))


def _stored_type(data: object) -> str:
    """The event's type as stored, remembered; ``""`` if the fast path cannot take it.

    ``data`` must be a dict with a string ``type`` that is not blank (a blank one is left to
    the full check, which rejects it).
    """
    event_type = data.get("type") if type(data) is dict else None
    if type(event_type) is not str:
        return ""
    stored = event_type.strip().lower().replace(" ", "-")
    if stored:
        if len(_STORED_TYPES) > 4096:
            _STORED_TYPES.clear()
        _STORED_TYPES[event_type] = stored
    return stored


def _fast_events(raw_events: list[Any], start: int, now_text: str, events: ParsedEvents) -> int:
    """Take the common-case events from ``raw_events[start]`` on; return where it stopped.

    The common case, checked quickly: plain strings, dicts, lists and ISO times. It stops at
    the first event that is anything else (its index is returned, ``len(raw_events)`` when
    all were taken); the caller then runs the full check on that one, which decides (and
    words the errors). Only accepts what the full check accepts, and stores the same.

    Times that look stored as they are written (27 characters, as in
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ``), or written to the millisecond (24 characters,
    ``YYYY-MM-DDTHH:MM:SS.fffZ``, as most exports and JavaScript's ``toISOString`` write
    them; stored with six digits) are checked together at the end, which costs far less than
    a regular expression each; if one of them is not what it looks like, the events are
    taken again, each time checked on its own.
    """
    payloads = events.payloads
    taken = len(payloads)
    pending: list[str] = []
    pending_ms: list[str] = []
    stop = _take_events(raw_events, start, now_text, payloads, pending, pending_ms)
    if (not pending or _all_stored_form(pending)) and (
        not pending_ms or _all_millisecond_form(pending_ms)
    ):
        return stop
    del payloads[taken:]
    return _take_events(raw_events, start, now_text, payloads, None, None)


def _take_events(
    raw_events: list[Any],
    start: int,
    now_text: str,
    payloads: list[dict[str, Any]],
    pending: list[str] | None,
    pending_ms: list[str] | None,
) -> int:
    """:func:`_fast_events`, putting 27-character times into ``pending`` and 24-character
    ones into ``pending_ms`` (stored as :func:`_millisecond_stored` writes them) unchecked,
    if given."""
    fast_keys = _FAST_KEYS
    time_keys = _TIME_KEYS
    stored_types = _STORED_TYPES
    known_time = _known_time
    defer = pending.append if pending is not None else None
    defer_ms = pending_ms.append if pending_ms is not None else None
    last_ms = last_ms_stored = ""  # the last 24-character time deferred, and as stored
    add = payloads.append
    no_dict = _NO_DICT
    no_tags = _NO_TAGS
    for index in range(start, len(raw_events)):
        data = raw_events[index]
        try:
            stored_type = stored_types[data["type"]]  # (also fails unless data is a dict)
        except (KeyError, TypeError):
            stored_type = _stored_type(data)
            if not stored_type:
                return index
        if not fast_keys.issuperset(data):
            return index
        event_id = data.get("id")
        if event_id is None:
            if "id" in data:
                return index
            event_id = str(uuid.uuid4())
        elif type(event_id) is not str or not event_id:
            return index
        properties = data.get("properties", no_dict)
        context = data.get("context", no_dict)
        options = data.get("options", no_dict)
        tags = data.get("tags", no_tags)
        if (
            type(properties) is not dict
            or type(context) is not dict
            or type(options) is not dict
            or type(tags) is not list
            or "source_id" in options
        ):
            return index
        if tags:
            for tag in tags:
                if type(tag) is not str:
                    return index
        time_value = data.get("time")
        if time_value is None:
            if "time" in data:
                return index  # "time": null (Tracardi fails on it later)
            insert: str | None = now_text
            create: str | None = None
        else:
            if type(time_value) is not dict or not time_keys.issuperset(time_value):
                return index
            raw = insert = time_value.get("insert")
            if raw is None:
                insert = now_text
            elif defer is not None and type(raw) is str and len(raw) == 27:
                defer(raw)
            elif defer_ms is not None and type(raw) is str and len(raw) == 24:
                if raw != last_ms:  # (a run of events with one time: deferred once)
                    defer_ms(raw)
                    last_ms = raw
                    last_ms_stored = raw[:19] + "Z" if raw[19:] == ".000Z" else raw[:23] + "000Z"
                insert = last_ms_stored
            else:
                insert = known_time(raw)
                if insert is None:
                    return index
            create = time_value.get("create")
            if create is not None:
                if create == raw:
                    create = insert  # the same text as insert: checked once
                elif defer is not None and type(create) is str and len(create) == 27:
                    defer(create)
                elif defer_ms is not None and type(create) is str and len(create) == 24:
                    if create != last_ms:
                        defer_ms(create)
                        last_ms = create
                        last_ms_stored = (
                            create[:19] + "Z" if create[19:] == ".000Z" else create[:23] + "000Z"
                        )
                    create = last_ms_stored
                else:
                    create = known_time(create)
                    if create is None:
                        return index
            if "update" in time_value:
                raw = time_value["update"]
                if raw is not None and known_time(raw) is None:
                    return index
        add(
            {
                "id": event_id,
                "type": stored_type,
                "time": {"insert": insert, "create": create},
                "properties": properties,
                "context": context,
                "tags": tags,
                "options": options,
            }
        )
    return len(raw_events)


def _known_time(value: object) -> str | None:
    """A valid time as stored (:func:`_fast_time`), or ``None``; remembers what it learns."""
    if type(value) is not str:
        return None
    known = _KNOWN_TIMES.get(value)
    if known is None:
        if _CANONICAL(value) is not None and value[:10] in _GOOD_DATES:
            return value  # (not remembered: such times are rarely sent twice)
        known = _fast_time(value)
        if known is not None and known != value:
            if len(_KNOWN_TIMES) > 4096:
                _KNOWN_TIMES.clear()
            _KNOWN_TIMES[value] = known
    return known


def _all_millisecond_form(times: list[str]) -> bool:
    """Whether every one of these 24-character times is a valid ``YYYY-MM-DDTHH:MM:SS.fffZ``.

    :func:`_take_events` stored each as :func:`_fast_time` writes it, assuming so: the
    fraction padded to six digits, or dropped when ``.000``. Checked for all at once, by one
    regular expression over them joined (with the years of any February 29 looked at apart):
    a fifth of the cost of learning each new ``YYYY-MM-DDTHH:MM:S`` as valid, which is what
    an export's times spread over weeks mostly bring.
    """
    joined = "\n".join(times)
    if _MS_TIMES(joined) is None:
        return False
    return "-02-29" not in joined or all(map(isleap, map(int, _FEBRUARY_29(joined))))


def _in_shape(times: list[str], unit: bytes, shapes: dict[int, bytes]) -> bytes | None:
    """The times joined by newlines as ASCII bytes when every one has the shape ``unit``
    (digits written as ``9``), else None: one ``bytes.translate`` for them all. ``shapes``
    keeps the joined shape per count of times."""
    joined = "\n".join(times)
    if not joined.isascii():
        return None
    data = joined.encode("ascii")
    count = len(times)
    shape = shapes.get(count)
    if shape is None:
        shape = b"\n".join([unit] * count)
        if count <= 1024:
            shapes[count] = shape
    return data if data.translate(_DIGITS_AS_NINE) == shape else None


def _all_stored_form(times: list[str]) -> bool:
    """Whether every one of these 27-character times is written as :func:`_fast_time` writes
    it (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, a valid time, the fraction not all zeros).

    Checked for all at once: their shape by one ``bytes.translate``, and the part up to the
    tens of seconds against prefixes seen valid before (learnt one time at a time).
    """
    data = _in_shape(times, _SHAPE, _SHAPES)
    if data is None or b".000000Z" in data:
        return False
    prefixes = _GOOD_PREFIXES
    if prefixes.issuperset(map(_PREFIX, times)):
        return True
    for text in times:
        if text[:18] not in prefixes:
            if _known_time(text) != text:
                return False
            if len(prefixes) > 4096:
                prefixes.clear()
            prefixes.add(text[:18])
    return True


_FAST_PAYLOAD_KEYS = frozenset(
    {"source", "session", "profile", "context", "properties", "request", "events", "options"}
)
_FAST_SESSION_KEYS = frozenset({"id", "metadata"})
_FAST_PROFILE_KEYS = frozenset({"id", "metadata", "ids"})
_SCHEDULER_OPTIONS = ("scheduledFlowId", "scheduledNodeId")


def _fast_payload(
    data: dict[str, Any], version: TracardiVersion, now_text: str, by_orjson: bool
) -> TrackPayload | None:
    """The common ``/track`` payload, checked quickly; ``None`` for anything else.

    The common case: only the keys Tracardi reads, ``source``, ``session`` and ``profile``
    objects with a string ``id`` (and, for the last two, ``metadata`` of string times;
    ``profile.ids`` strings), ``context``, ``properties``, ``request`` and ``options``
    objects (no scheduler options), and every event taken by :func:`_fast_events`. Such a
    payload passes the full check (:meth:`_Checker.tracker_payload`) with the same result;
    anything else, valid or not, is left to the full check, which decides and words the
    errors.
    """
    if not _FAST_PAYLOAD_KEYS.issuperset(data):
        return None
    source = data.get("source")
    if type(source) is not dict or len(source) != 1 or type(source.get("id")) is not str:
        return None
    extras = version.reads_entity_extras
    session_id: str | None = None
    session_metadata: dict[str, str | None] | None = None
    session = data.get("session")
    if session is not None:
        taken = _fast_entity(session, _FAST_SESSION_KEYS, now_text)
        if taken is None:
            return None
        session_id, metadata = taken
        session_metadata = metadata if extras else None
    profile_id: str | None = None
    profile_metadata: dict[str, str | None] | None = None
    profile_ids: tuple[str, ...] = ()
    profile = data.get("profile")
    if profile is not None:
        taken = _fast_entity(profile, _FAST_PROFILE_KEYS, now_text)
        if taken is None:
            return None
        profile_id, metadata = taken
        ids = profile.get("ids")
        if ids is not None:
            if type(ids) is not list or any(type(item) is not str for item in ids):
                return None
            profile_ids = tuple(ids) if extras else ()
        profile_metadata = metadata if extras else None
    context = data.get("context")
    if context is None:
        context = {}
    properties = data.get("properties", _NO_DICT)
    request = data.get("request", _NO_DICT)
    options = data.get("options", _NO_DICT)
    if (
        type(context) is not dict
        or (properties is not None and type(properties) is not dict)
        or (request is not None and type(request) is not dict)
        or type(options) is not dict
        or any(key in options for key in _SCHEDULER_OPTIONS)
    ):
        return None
    raw_events = data.get("events", _NO_TAGS)
    if type(raw_events) is not list:
        return None
    events = ParsedEvents()
    if _fast_events(raw_events, 0, now_text, events) < len(raw_events):
        return None
    # What else the body holds must be written back by orjson as the full check requires
    # (see read_track_payload); the rest is strings. A list adds the level the body did.
    check_writable([context, properties, request, options], by_orjson)
    return TrackPayload(
        source_id=source["id"],
        session_id=session_id,
        session_metadata=session_metadata,
        profile_id=profile_id,
        profile_metadata=profile_metadata,
        profile_ids=profile_ids,
        context=context,
        properties=properties if properties is not _NO_DICT else {},
        options=options if options is not _NO_DICT else {},
        request_is_null=request is None,
        events=events,
        body=data,
        by_orjson=by_orjson,
    )


_NOT_FAST: dict[str, str | None] = {}
"""What :func:`_fast_metadata` returns for metadata the fast path does not take."""


def _fast_entity(
    value: object, keys: frozenset[str], now_text: str
) -> tuple[str, dict[str, str | None] | None] | None:
    """A session's or profile's id and metadata, when the entity takes the fast path
    (a dict of ``keys`` only, a string id, metadata :func:`_fast_metadata` takes)."""
    if type(value) is not dict or not keys.issuperset(value):
        return None
    entity_id = value.get("id")
    if type(entity_id) is not str:
        return None
    metadata = _fast_metadata(value.get("metadata"), now_text)
    if metadata is _NOT_FAST:
        return None
    return entity_id, metadata


def _fast_metadata(value: object, now_text: str) -> dict[str, str | None] | None:
    """An entity's ``metadata`` as :meth:`_Checker.time_field` returns it, when every time
    in it is a string :func:`_known_time` takes (``None`` when there is no metadata), else
    ``_NOT_FAST``."""
    if value is None:
        return None
    if type(value) is not dict or not _TIME_KEYS.issuperset(value):
        return _NOT_FAST
    times: dict[str, str | None] = {"insert": now_text, "create": None, "update": None}
    for key, raw in value.items():
        if raw is None:
            times[key] = None
        else:
            known = _known_time(raw)
            if known is None:
                return _NOT_FAST
            times[key] = known
    return times


def _tags_failure(tags: list[Any] | None) -> str | None:
    """Tracardi builds ``Tags(values=tuple(tags))`` when it stores the event."""
    if tags is None:
        return "'NoneType' object is not iterable"
    bad = [(index, tag) for index, tag in enumerate(tags) if type(tag) is not str]
    if not bad:
        return None
    count = len(bad)
    lines = [f"{count} validation error{'s' if count > 1 else ''} for Tags"]
    for index, tag in bad:
        lines.append(f"values.{index}")
        lines.append(
            f"  Input should be a valid string [type=string_type, input_value={tag!r}, "
            f"input_type={type(tag).__name__}]"
        )
        lines.append(f"    For further information visit {_URL}string_type")
    return "\n".join(lines)


def _check_scheduled(options: dict[str, Any], events: ParsedEvents, source_id: str) -> None:
    """``scheduledFlowId`` + ``scheduledNodeId`` are for Tracardi's own scheduler only."""
    flow = options.get("scheduledFlowId")
    node = options.get("scheduledNodeId")
    if not (isinstance(flow, str) and isinstance(node, str)):
        return
    if len(events) > 1:
        types = events.types()
        raise _Crash(
            "Scheduled events may have only one event per tracker payload. "
            f"Expected one event got {types}"
        )
    if not source_id:
        raise _Crash("string index out of range")
    if source_id[0] != "@":
        raise _Crash("Scheduled events must be send via internal scheduler event source.")


def _is_json_type(content_type: str | None) -> bool:
    """Whether FastAPI parses a body with this ``Content-Type`` as JSON (none: yes)."""
    if not content_type:
        return True
    known = _JSON_TYPES.get(content_type)
    if known is None:
        message = Message()
        message["content-type"] = content_type
        known = False
        if message.get_content_maintype() == "application":
            subtype = message.get_content_subtype()
            known = subtype == "json" or subtype.endswith("+json")
        if len(_JSON_TYPES) > 256:
            _JSON_TYPES.clear()
        _JSON_TYPES[content_type] = known
    return known


_JSON_TYPES: dict[str, bool] = {}
"""Content types seen before, and whether they are JSON."""


def _decode_body(body: bytes, content_type: str | None, fast: bool) -> tuple[object, bool]:
    """What FastAPI hands to validation: parsed JSON, raw bytes, or ``None`` for no body.

    Also whether ``orjson`` read it (see :func:`._wire.parse_body`).
    """
    if not body:
        return None, False
    if not _is_json_type(content_type):
        return body, False
    try:
        return parse_body(body, fast=fast)
    except json.JSONDecodeError as error:
        item = LineError(
            "json_invalid",
            ("body", error.pos),
            "JSON decode error",
            {},
            {"error": error.msg},
            pydantic=False,
        )
        raise Rejection(422, [item.to_json("2.7")], "JSON decode error") from error
    except Exception as error:  # FastAPI: anything else while parsing is a 400
        raise Rejection(400, "There was an error parsing the body") from error


def read_track_payload(
    *,
    body: bytes,
    content_type: str | None,
    query: str,
    version: TracardiVersion,
    now: datetime,
    fast: bool = ACCELERATED,
    now_text: str = "",
) -> tuple[TrackPayload, bool]:
    """Validate a ``/track`` request as Tracardi's endpoint does.

    :param fast: let ``orjson`` read the body (see :func:`._wire.parse_body`: when it reads
        one differently, the answer must come from reading it with ``fast=False``).
    :param now_text: ``now`` as :func:`format_datetime` writes it, if the caller has it.
    :returns: the payload and the ``?profile_less`` flag.
    :raises Rejection: with status 400, 422 or 500 and Tracardi's body.
    """
    style = version.pydantic
    value, by_orjson = _decode_body(body, content_type, fast)
    profile_less, errors = parse_profile_less(query, style)
    checker = _Checker(version, now, by_orjson=by_orjson, now_text=now_text)
    payload: TrackPayload | None = None
    if value is None:
        errors.append(LineError("missing", ("body",), "Field required", None, pydantic=False))
    elif type(value) is not dict:
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError as error:
                raise Rejection(500, str(error)) from error
        errors.append(
            LineError(
                "model_attributes_type",
                ("body",),
                "Input should be a valid dictionary or object to extract fields from",
                value,
            )
        )
    else:
        fast_payload = _fast_payload(value, version, checker.now_text, by_orjson)
        if fast_payload is not None and not errors:
            return fast_payload, profile_less
        base: Loc = () if checker.legacy else ("body",)
        try:
            payload = checker.custom_init(base, checker.tracker_payload, value)
            if not checker.legacy:
                errors.extend(checker.errors)
        except _Abort as abort:
            errors.extend(attrs.evolve(item, loc=("body", *item.loc)) for item in abort.errors)
        except _Crash as crash:
            raise Rejection(500, str(crash)) from None
    if errors or payload is None:
        detail = [item.to_json(style) for item in errors]
        first = errors[0] if errors else None
        reason = f"{first.msg} at {'.'.join(map(str, first.loc))}" if first else "invalid"
        raise Rejection(422, detail, reason)
    # The events were written back by encode_events; what else the body holds is not.
    check_writable({key: item for key, item in payload.body.items() if key != "events"}, by_orjson)
    return payload, profile_less
