"""Models to Tracardi wire JSON, in one place.

Everything that decides how an event, a subject or a property value looks on the
wire lives here, so the golden files in ``tests/golden`` guard one module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import importlib
import json
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, overload
from urllib.parse import parse_qsl, urlsplit

import attrs

from ._times import format_epoch_bytes, format_epoch_us, format_utc, from_epoch, to_utc
from .events import (
    BaseEvent,
    Event,
    PagePing,
    PageView,
    ScreenView,
    SelfDescribing,
    StructuredEvent,
)
from .exceptions import InvalidEventError
from .models import Options, SelfDescribingJson, Subject, Time, event_type_slug

JsonDict = dict[str, Any]


def to_json_value(value: Any, path: str) -> Any:
    """Return ``value`` as plain JSON data, or raise naming the path of the bad part.

    Converted: datetime (aware, to ISO UTC), date and time (ISO), Decimal (to a
    number), UUID (string), Enum (its value), set/frozenset/tuple (lists),
    dataclass and attrs instances (objects). Rejected: NaN, infinity, naive
    datetimes, non-string keys and every other type.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise InvalidEventError(path, f"{value!r} is not a finite number")
        return value
    if kind is dict:
        for key, item in value.items():
            item_kind = type(item)
            if type(key) is not str or (
                item_kind not in _PLAIN and (item_kind is not float or not math.isfinite(item))
            ):
                break
        else:
            return value  # plain already: sent as it is
        return {
            _key(key, path): to_json_value(item, f"{path}.{key}") for key, item in value.items()
        }
    if kind is list:
        return [to_json_value(item, f"{path}[{index}]") for index, item in enumerate(value)]
    return _convert_other(value, path)


_PLAIN = frozenset({str, int, bool, type(None)})


def check_json_value(value: Any, path: str) -> None:
    """Raise naming the path when ``value`` cannot become JSON; cheap for plain data.

    The same rules as :func:`to_json_value`, which does the converting later (in the
    background emitter's thread): this check is what runs on the caller's path.
    """
    kind = type(value)
    if kind in _PLAIN:
        return
    if kind is float:
        if not math.isfinite(value):
            raise InvalidEventError(path, f"{value!r} is not a finite number")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidEventError(path, f"key {key!r} is not a string")
            item_kind = type(item)
            if item_kind not in _PLAIN and (item_kind is not float or not math.isfinite(item)):
                check_json_value(item, f"{path}.{key}")
        return
    if kind is list:
        for index, item in enumerate(value):
            if type(item) not in _PLAIN:
                check_json_value(item, f"{path}[{index}]")
        return
    to_json_value(value, path)


def check_event(event: BaseEvent) -> None:
    """Validate an event's free-form values (properties, context, options) at ``track()``."""
    if isinstance(event, Event):
        if event.properties:
            check_json_value(event.properties, "properties")
    elif isinstance(event, SelfDescribing):
        check_json_value(event.event_json.data, "properties")
    context = event.context
    if context:
        if isinstance(context, Mapping):
            check_json_value(dict(context), "context")
        else:
            for index, entity in enumerate(context):
                check_json_value(entity.data, f"context[{index}].data")
    if event.options:
        check_json_value(event.options, "options")


def _key(key: object, path: str) -> str:
    if isinstance(key, str):
        return key
    raise InvalidEventError(f"{path}", f"key {key!r} is not a string")


def _convert_other(value: Any, path: str) -> Any:
    if isinstance(value, enum.Enum):
        return to_json_value(value.value, path)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return to_json_value(float(value), path)
    if isinstance(value, datetime):
        return format_utc(to_utc(value, path))
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidEventError(path, f"{value!r} is not a finite number")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return to_json_value(dict(value), path)
    if isinstance(value, (list, tuple)):
        return to_json_value(list(value), path)
    if isinstance(value, (set, frozenset)):
        items = list(value)
        with contextlib.suppress(TypeError):  # unorderable members keep the set's order
            items.sort()
        return to_json_value(items, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        return to_json_value(fields, path)
    if attrs.has(type(value)):
        return to_json_value(attrs.asdict(value, recurse=False), path)
    raise InvalidEventError(path, f"{type(value).__name__} values cannot be sent to Tracardi")


def _omit_none(values: Mapping[str, Any]) -> JsonDict:
    return {key: value for key, value in values.items() if value is not None}


def time_to_wire(value: Time) -> JsonDict:
    """Tracardi's time object: the set times as ISO-8601 UTC strings."""
    return {
        name: format_utc(moment)
        for name, moment in (
            ("create", value.create),
            ("insert", value.insert),
            ("update", value.update),
        )
        if moment is not None
    }


def options_to_wire(options: Options) -> JsonDict:
    """Payload options under the keys Tracardi's code reads."""
    return {
        "saveEvents": options.save_events,
        "saveSession": options.save_session,
        "saveProfile": options.save_profile,
        "debugger": options.debugger,
    }


@functools.lru_cache(maxsize=1024)
def page_context(url: str, title: str | None, referrer: str | None) -> JsonDict:
    """The event ``context.page`` Tracardi's JS tracker sends, from a URL, title and referrer.

    Cached: the dict returned is shared by the events of one page and never changed.
    """
    parts = urlsplit(url)
    referer: JsonDict = {"host": None, "query": None}
    if referrer:
        ref = urlsplit(referrer)
        referer = {"host": ref.netloc or None, "query": dict(parse_qsl(ref.query)) or None}
    page: JsonDict = {"url": url, "path": parts.path or "/", "hash": parts.fragment or None}
    page["title"] = title
    page["referer"] = referer
    return page


def _event_body(event: BaseEvent) -> tuple[str, JsonDict, JsonDict]:
    """Type, properties and the class's own context for one event."""
    if isinstance(event, Event):
        return event_type_slug(event.type), dict(event.properties or {}), {}
    if isinstance(event, PageView):
        return (
            "page-view",
            {},
            {"page": page_context(event.page_url, event.page_title, event.referrer)},
        )
    if isinstance(event, PagePing):
        offsets = {
            "min_x": event.min_x,
            "max_x": event.max_x,
            "min_y": event.min_y,
            "max_y": event.max_y,
        }
        return (
            "page-ping",
            _omit_none(offsets),
            {"page": page_context(event.page_url, event.page_title, event.referrer)},
        )
    if isinstance(event, ScreenView):
        screen = {
            "id": event.id_,
            "name": event.name,
            "type": event.type,
            "previous_name": event.previous_name,
            "previous_id": event.previous_id,
            "previous_type": event.previous_type,
            "transition_type": event.transition_type,
        }
        return "screen-view", _omit_none(screen), {}
    if isinstance(event, StructuredEvent):
        structured = {
            "category": event.category,
            "action": event.action,
            "label": event.label,
            "property": event.property_,
            "value": event.value,
        }
        return event_type_slug(event.action), _omit_none(structured), {}
    if isinstance(event, SelfDescribing):
        return (
            event.event_json.event_type,
            dict(event.event_json.data),
            {"schema": event.event_json.schema},
        )
    raise InvalidEventError("event", f"{type(event).__name__} is not an event class the SDK knows")


def event_time(event: BaseEvent) -> JsonDict:
    """The event's wire times with the defaults filled: ``insert`` when the event was
    made, ``create`` from ``true_timestamp`` or else equal to ``insert``."""
    given = event.time
    if given is None:
        insert = format_epoch_us(event.made_us)
        if event.true_timestamp is None:
            return {"create": insert, "insert": insert}
        create = from_epoch(event.true_timestamp, "true_timestamp", milliseconds=True)
        return {"create": format_utc(create), "insert": insert}
    insert = format_utc(given.insert) if given.insert else format_epoch_us(event.made_us)
    if given.create is not None:
        wire = {"create": format_utc(given.create), "insert": insert}
    elif event.true_timestamp is not None:
        create = from_epoch(event.true_timestamp, "true_timestamp", milliseconds=True)
        wire = {"create": format_utc(create), "insert": insert}
    else:
        wire = {"create": insert, "insert": insert}
    if given.update is not None:
        wire["update"] = format_utc(given.update)
    return wire


def _entities(entities: Sequence[SelfDescribingJson]) -> list[JsonDict]:
    return [{"schema": entity.schema, "data": dict(entity.data)} for entity in entities]


def event_to_wire(event: BaseEvent, event_id: str, tags: Sequence[str] = ()) -> JsonDict:
    """One event of a payload's ``events`` list, validated and ready for ``json.dumps``;
    ``tags`` (the tracker's) go before the event's own."""
    event_type, properties, context = _event_body(event)  # the class's context is JSON already
    if event.context is not None:
        if isinstance(event.context, Mapping):
            context.update(to_json_value(event.context, "context"))
        else:
            context["entities"] = to_json_value(_entities(event.context), "context.entities")
    wire: JsonDict = {
        "id": event_id,
        "type": event_type,
        "time": event_time(event),
        "properties": to_json_value(properties, "properties"),
    }
    if context:
        wire["context"] = context
    if tags or event.tags:
        wire["tags"] = [*tags, *event.tags]
    if event.options:
        wire["options"] = to_json_value(dict(event.options), "options")
    return wire


def encode_event(event: BaseEvent, event_id: str, tags: tuple[str, ...] = ()) -> bytes:
    """One event of a payload's ``events`` list, encoded: the same JSON as
    :func:`event_to_wire` gives, made faster for the common events.

    A custom event or page view with no times, context, options or tags of its own is
    spliced from parts that are each valid JSON (the id and properties encoded by
    orjson, the type and page context encoded once per distinct value, the time text
    that :func:`format_epoch_bytes` makes), keys in :func:`event_to_wire`'s order. Its
    properties were checked at ``track()``; any value that would need converting (a
    datetime, a set, an integer beyond 64 bits...) sends it down the general path,
    which converts it.
    """
    kind = type(event)
    if (  # a common event with nothing of its own to convert (inline: this runs per event)
        (kind is Event or kind is PageView)
        and not tags
        and _ORJSON is not None
        and event.time is None
        and event.true_timestamp is None
        and event.context is None
        and not event.options
        and not event.tags
    ):
        made = format_epoch_bytes(event.made_us)
        try:
            if type(event) is Event:
                properties = event.properties
                return (
                    b'{"id":%b,"type":%b,"time":{"create":"%b","insert":"%b"},"properties":%b}'
                    % (
                        _ORJSON.dumps(event_id),
                        _type_json(event.type),
                        made,
                        made,
                        _ORJSON.dumps(properties, default=_refuse, option=_ORJSON_AS_IS)
                        if properties
                        else b"{}",
                    )
                )
            assert isinstance(event, PageView)
            return (
                b'{"id":%b,"type":"page-view","time":{"create":"%b","insert":"%b"},'
                b'"properties":{},"context":{"page":%b}}'
                % (
                    _ORJSON.dumps(event_id),
                    made,
                    made,
                    _page_context_json(event.page_url, event.page_title, event.referrer),
                )
            )
        except TypeError:
            pass  # a value to convert: the general path below
    return dumps_kept(event_to_wire(event, event_id, tags))


@functools.lru_cache(maxsize=1024)
def _type_json(name: str) -> bytes:
    return dumps_kept(event_type_slug(name))


@functools.lru_cache(maxsize=1024)
def _page_context_json(url: str, title: str | None, referrer: str | None) -> bytes:
    return dumps_kept(page_context(url, title, referrer))


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} needs converting")


def payload_context(
    subject: Subject,
    base: Mapping[str, Any] | None,
    *,
    namespace: str | None,
    app_id: str | None,
) -> JsonDict:
    """The payload-level context (Tracardi merges it into the session): the tracker's
    own context, the subject's device fields where the JS tracker puts them, and the
    tracker's namespace and app id."""
    context: JsonDict = to_json_value(dict(base or {}), "context")
    browser = _omit_none({"userAgent": subject.useragent, "language": subject.lang})
    device = _omit_none({"platform": subject.platform})
    if browser or device:
        local = context.setdefault("browser", {}).setdefault("local", {})
        if browser:
            local.setdefault("browser", {}).update(browser)
        if device:
            local.setdefault("device", {}).update(device)
    screen: JsonDict = {}
    if subject.screen_resolution is not None:
        screen["width"], screen["height"] = subject.screen_resolution
    if subject.viewport is not None:
        screen["innerWidth"], screen["innerHeight"] = subject.viewport
    if subject.color_depth is not None:
        screen["colorDepth"] = subject.color_depth
    if screen:
        context.setdefault("screen", {}).setdefault("local", {}).update(screen)
    if subject.timezone is not None:
        context.setdefault("time", {})["tz"] = subject.timezone
    if subject.user_id is not None:
        context.setdefault("user", {})["id"] = subject.user_id
    tracker = _omit_none({"namespace": namespace, "app_id": app_id})
    if tracker:
        context["tracker"] = tracker
    return context


def profile_ids(subject: Subject) -> list[str]:
    """The aliases sent in ``profile.ids``: the subject's ids and its ``user_id``."""
    ids = list(subject.profile_ids)
    if subject.user_id is not None and subject.user_id not in ids:
        ids.append(subject.user_id)
    return ids


def payload_to_wire(
    *,
    source_id: str,
    session_id: str | None,
    session_metadata: Time | None,
    profile_id: str | None,
    profile_ids: Sequence[str],
    profile_metadata: Time | None,
    context: Mapping[str, Any],
    properties: Mapping[str, Any],
    options: Options,
    events: Sequence[JsonDict],
) -> JsonDict:
    """A whole tracker payload: one source, one session, one profile, N events.

    ``profile`` is sent only once its id is known (Tracardi requires ``profile.id``
    whenever ``profile`` is present); ``metadata`` keys only when given.
    """
    payload: JsonDict = {"source": {"id": source_id}}
    if session_id is not None:
        session: JsonDict = {"id": session_id}
        if session_metadata is not None:
            session["metadata"] = time_to_wire(session_metadata)
        payload["session"] = session
    if profile_id is not None:
        profile: JsonDict = {"id": profile_id}
        if profile_ids:
            profile["ids"] = list(profile_ids)
        if profile_metadata is not None:
            profile["metadata"] = time_to_wire(profile_metadata)
        payload["profile"] = profile
    if context:
        payload["context"] = dict(context)
    if properties:
        payload["properties"] = dict(properties)
    payload["options"] = options_to_wire(options)
    payload["events"] = list(events)
    return payload


_EVENTS_LAST = b'"events":[]}'


def encode_payload(payload: JsonDict, events: Sequence[bytes]) -> bytes:
    """Encode a payload from :func:`payload_to_wire` (with no events) and the events
    already encoded one by one, spliced into its ``events`` list.

    Events are encoded when they are tracked, so they wait as bytes, which the garbage
    collector never scans, rather than as dicts.
    """
    return splice_events(dumps(payload), b",".join(events))


_ID_FIRST = b'{"id":"'
"""How an encoded event begins: ``id`` is its first key (see :func:`event_to_wire`)."""


def read_event_id(event_json: bytes) -> str:
    """The ``id`` of an encoded event: sliced out when it is written plainly (no
    escapes, as every generated id is), else decoded."""
    if event_json.startswith(_ID_FIRST):
        close = event_json.find(b'"', len(_ID_FIRST))
        if close > 0 and event_json.find(b"\\", len(_ID_FIRST), close) < 0:
            return event_json[len(_ID_FIRST) : close].decode()
    return str(json.loads(event_json)["id"])


class EventIds(Sequence[str]):
    """The ids of encoded events, read back from their JSON only if something asks:
    what waits for delivery need not keep an id string per event (about 90 bytes each)
    beside the JSON that already holds it, and most payloads never need their ids."""

    __slots__ = ("_events", "_ids")

    def __init__(self, events: Sequence[bytes]) -> None:
        self._events = events
        self._ids: list[str] | None = None

    def _read(self) -> list[str]:
        if self._ids is None:
            self._ids = [read_event_id(event) for event in self._events]
        return self._ids

    def __len__(self) -> int:
        return len(self._events)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._read()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())


def splice_events(encoded_payload: bytes, events: bytes | memoryview) -> bytes:
    """A payload encoded with an empty ``events`` list last (as :func:`payload_to_wire`
    puts it), with ``events`` (encoded events joined by commas) put into that list."""
    if not encoded_payload.endswith(_EVENTS_LAST):
        raise ValueError("the payload must end with an empty events list")
    return b"".join((memoryview(encoded_payload)[:-2], events, b"]}"))


def _stdlib_dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _load_orjson() -> Any:
    """The ``fast`` extra's encoder, or None: same JSON meaning, several times faster."""
    try:
        return importlib.import_module("orjson")
    except ImportError:
        return None


_ORJSON: Any = _load_orjson()
_ORJSON_AS_IS = (
    0 if _ORJSON is None else _ORJSON.OPT_PASSTHROUGH_DATETIME | _ORJSON.OPT_PASSTHROUGH_DATACLASS
)
"""orjson options that hand every value our rules convert differently to ``default``."""

_DIGITS_AS_NINE = bytes(57 if 48 <= byte <= 57 else 32 for byte in range(256))
_NINETEEN_NINES = b"9" * 19


def has_long_digit_run(data: bytes) -> bool:
    """Whether ``data`` has 19 digits in a row: perhaps an integer beyond 64 bits, which
    ``orjson`` reads as a float (rounded), so JSON holding one is read by the standard
    library, exactly. A run inside a string (a long numeric id) only costs the slower
    reading. (``bytes.translate`` and a substring search: a third of what the regular
    expression ``\\d{19}`` costs.)"""
    return _NINETEEN_NINES in data.translate(_DIGITS_AS_NINE)


def dumps(payload: Any) -> bytes:
    """Encode a payload as compact UTF-8 JSON (NaN and infinity are refused).

    With ``orjson`` installed (``tracardi-tracker[fast]``) it does the encoding; values
    reach this point already checked (strings as keys, finite numbers), and whatever
    ``orjson`` will not encode falls back to the standard library and its errors.
    """
    if _ORJSON is not None:
        try:
            encoded: bytes = _ORJSON.dumps(payload)
        except TypeError:
            pass
        else:
            return encoded
    return _stdlib_dumps(payload)


def dumps_kept(value: Any) -> bytes:
    """:func:`dumps` for a small value that will be held a while (an event waiting in a
    queue): orjson's result keeps a buffer of at least 4 KB whatever the length, so it
    is copied into bytes of the right size."""
    encoded = dumps(value)
    return memoryview(encoded).tobytes() if _ORJSON is not None else encoded
