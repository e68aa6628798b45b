"""Which part of a row is which event field, and turning a row into a Tracardi event.

A :class:`FieldMapping` names, for each event field (the *target*), the dotted path of the
row value it comes from (the *source*). By default every target reads the same path in the
row, so the export format (see ``docs/importer.md``) needs no mapping at all::

    {"id": "...", "type": "purchase", "time": {"create": "2023-03-01T10:02:11Z"},
     "profile": {"id": "p-1", "ids": ["crm:1"], "metadata": {"create": "..."}},
     "session": {"id": "s-1", "metadata": {"create": "..."}},
     "properties": {...}, "context": {...}, "tags": ["backfill"]}

CSV rows are read into the same shape first (a ``properties.sku`` column becomes
``{"properties": {"sku": ...}}``), so one mapping works for both formats.

:class:`Mapper` is the compiled form used for every row: it validates the values the way
Tracardi's payload model does and builds the event's wire JSON directly (the same shape
:func:`~tracardi_tracker._serialization.event_to_wire` makes, which a test guards), without
making an :class:`~tracardi_tracker.Event` per row, for speed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import attrs

from .._times import format_utc, from_epoch
from ..exceptions import InvalidEventError
from ..models import event_type_slug
from ._errors import ImportConfigError
from ._readers import CAST_NAMES, FORMATS, make_cast

__all__ = [
    "EVENT_NAMESPACE",
    "SESSION_NAMESPACE",
    "TARGETS",
    "FieldError",
    "FieldMapping",
    "MappedRow",
    "Mapper",
    "parse_time",
    "parse_timezone",
    "utc_text",
    "uuid5",
]

UTC = timezone.utc

EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "tracardi-tracker:importer:event")
"""Namespace of derived event ids: ``uuid5(EVENT_NAMESPACE, source_id + "\\n" + raw row)``."""
SESSION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "tracardi-tracker:importer:session")
"""Namespace of derived session ids: ``uuid5(SESSION_NAMESPACE, source + profile + start)``."""

TARGETS = (
    "id",
    "type",
    "time.create",
    "time.insert",
    "profile.id",
    "profile.ids",
    "profile.metadata.create",
    "profile.metadata.insert",
    "profile.metadata.update",
    "session.id",
    "session.metadata.create",
    "session.metadata.insert",
    "session.metadata.update",
    "properties",
    "context",
    "tags",
    "options",
)
"""The event fields a mapping can name; ``properties.KEY`` and ``context.KEY`` too."""

_MAX_EVENT_ID = 64
_MIN_EPOCH = 10**9  # 2001-09-09: a smaller number is more likely a YYYYMMDD date than a time
_NUMERIC = re.compile(r"[+-]?\d+(\.\d+)?")
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z\Z")
# The canonical form without the regex, for the common case: its length, the "Z", and the
# separators at 4, 7, 10, 13, 16 and 19; ``fromisoformat`` then accepts only ASCII digits
# everywhere else (a test checks the two agree). Cheaper than the regex by half.
_CANONICAL_LENGTHS = frozenset((20, 22, 23, 24, 25, 26, 27))
_CANONICAL_SHAPES = frozenset(("--T::.", "--T::Z"))
_FRACTION = re.compile(r"(\d{2}:\d{2}:\d{2})[.,](\d+)")
_DATE = re.compile(r"\d{4}(-?\d{2}){0,2}\Z")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):?(\d{2})$")


class FieldError(Exception):
    """A row value that breaks the payload rules: which event field, and why."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


# -- times ----------------------------------------------------------------------------------


def parse_timezone(name: str) -> tzinfo:
    """A time zone from an IANA name (``Europe/Warsaw``), ``UTC`` or an offset (``+02:00``)."""
    text = name.strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta >= timedelta(hours=24):
            raise ImportConfigError(f"time zone offset {name!r} is out of range")
        return timezone(-delta if sign == "-" else delta)
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError as error:  # pragma: no cover - zoneinfo is in the stdlib since 3.9
        raise ImportConfigError("time zone names need the zoneinfo module") from error
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImportConfigError(
            f"unknown time zone {name!r}; give an IANA name like 'Europe/Warsaw', 'UTC' "
            "or an offset like '+02:00' (on systems without a time zone database, "
            "install the 'tzdata' package)"
        ) from None


def parse_time(value: object, field: str, zone: tzinfo | None) -> tuple[str, datetime]:
    """Read one time of a row: return its wire form (ISO-8601 UTC) and the aware datetime.

    The SDK's time policy (:mod:`tracardi_tracker._times`), plus ``zone`` for times that
    carry no offset: ISO-8601 with ``Z`` or an offset is taken as it is; without one it is
    refused unless ``zone`` says where it was recorded; epoch seconds or milliseconds (a
    number, or a string of digits) are taken as UTC, but numbers below 10**9 are refused (an
    8-digit ``20230101`` is a date, not a time); date-only strings are refused (Tracardi
    answers 422 to them). Raises :class:`FieldError`.
    """
    if (
        type(value) is str
        and len(value) in _CANONICAL_LENGTHS
        and value[-1] == "Z"
        and value[4:20:3] in _CANONICAL_SHAPES
    ):
        try:  # the common case, already in the form Tracardi gets: kept exactly as it is
            return value, _from_zulu(value)
        except ValueError:
            if _CANONICAL.match(value):
                raise FieldError(field, f"{value!r} is not a valid date and time") from None
        # not digits where digits belong: the general rules below say what it is
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise FieldError(field, "is empty")
        if ":" not in text and _NUMERIC.fullmatch(text):
            return _epoch(float(text), value, field)
        if len(text) <= 10:
            if _DATE.match(text):
                raise FieldError(field, f"{value!r} is a date without a time of day")
            raise FieldError(field, f"{value!r} is not an ISO-8601 date and time")
        try:
            parsed = _from_iso(text)
        except ValueError:
            raise FieldError(field, f"{value!r} is not an ISO-8601 date and time") from None
        if parsed.tzinfo is None:
            if zone is None:
                raise FieldError(
                    field,
                    f"{value!r} has no time zone; add 'Z' or an offset to the data, "
                    "or say where it was recorded with --timezone (never guessed)",
                )
            parsed = parsed.replace(tzinfo=zone)
        moment = parsed.astimezone(UTC)
        return format_utc(moment), moment
    if isinstance(value, bool) or not isinstance(value, (int, float, datetime)):
        raise FieldError(field, f"expected a date and time, got {value!r}")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            if zone is None:
                raise FieldError(field, f"{value.isoformat()} has no time zone (never guessed)")
            value = value.replace(tzinfo=zone)
        moment = value.astimezone(UTC)
        return format_utc(moment), moment
    return _epoch(value, value, field)


def utc_text(wire: str) -> str:
    """What :func:`~tracardi_tracker._times.format_utc` gives for the time whose wire form
    (an event's ``time.create`` or ``time.insert`` as mapped: ``YYYY-MM-DDTHH:MM:SS``,
    1 to 6 digits of a second or none, ``Z``) is ``wire``, from the text alone: a tenth
    of the cost of formatting the datetime (a test checks the two agree)."""
    if len(wire) == 20:  # no fraction of a second
        return wire
    fraction = wire[20:-1]
    if not fraction.strip("0"):  # a whole second: written without a fraction
        return wire[:19] + "Z"
    return wire[:20] + fraction.ljust(6, "0") + "Z"


def _from_iso(text: str) -> datetime:
    """``datetime.fromisoformat`` the same on every Python: a trailing ``Z`` read as UTC and
    fractions of a second of any length (truncated to µs), which 3.10's refuses."""
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    match = _FRACTION.search(text)
    if match is not None and len(match.group(2)) != 6:
        digits = match.group(2)[:6].ljust(6, "0")
        text = f"{text[: match.start()]}{match.group(1)}.{digits}{text[match.end() :]}"
    return _fromisoformat(text)


def _from_zulu_310(text: str) -> datetime:
    """Read a canonical ``...Z`` time with 3.10's ``fromisoformat`` (no ``Z``, fractions of
    3 or 6 digits only); 3.11 reads it as it is."""
    head, dot, fraction = text[:-1].partition(".")
    if dot:
        head = f"{head}.{fraction.ljust(6, '0')}"
    return _fromisoformat(head + "+00:00")


_fromisoformat = datetime.fromisoformat  # the one place the standard parser is called
_from_zulu: Callable[[str], datetime] = (
    datetime.fromisoformat if sys.version_info >= (3, 11) else _from_zulu_310
)


def _epoch(number: float, shown: object, field: str) -> tuple[str, datetime]:
    if not math.isfinite(number):
        raise FieldError(field, f"{shown!r} is not a time")
    if abs(number) < _MIN_EPOCH:
        raise FieldError(
            field,
            f"{shown!r} is too small for an epoch time (before 2001-09-09); "
            "a date like 20230101 must be written as ISO-8601",
        )
    try:
        moment = from_epoch(number, field)
    except InvalidEventError as error:
        raise FieldError(field, error.message) from None
    return format_utc(moment), moment


# -- ids ------------------------------------------------------------------------------------

_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def uuid5(namespace: uuid.UUID, name: bytes) -> str:
    """``str(uuid.uuid5(namespace, name))`` for a bytes name, about twice as fast."""
    return uuid5_raw(namespace.bytes, name)


def uuid5_raw(prefix: bytes, raw: bytes) -> str:
    """A uuid5 string of ``prefix + raw``, where ``prefix`` starts with the namespace's bytes."""
    digest = hashlib.sha1(prefix + raw, usedforsecurity=False).hexdigest()
    return (
        f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-"
        f"{_VARIANT[digest[16]]}{digest[17:20]}-{digest[20:32]}"
    )


# -- the mapping ----------------------------------------------------------------------------


def _check_fields(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    for target, source in value.items():
        if not isinstance(target, str) or not isinstance(source, str) or not source.strip():
            raise ImportConfigError(f"mapping: {target!r} must name a source path (a string)")
        if target not in TARGETS and not target.startswith(("properties.", "context.")):
            raise ImportConfigError(
                f"mapping: {target!r} is not an event field; use one of {', '.join(TARGETS)}, "
                "properties.KEY or context.KEY"
            )
        if any(not part for part in source.split(".")):
            raise ImportConfigError(f"mapping: source {source!r} of {target!r} has an empty part")


def _check_types(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    for column, type_name in value.items():
        if type_name not in CAST_NAMES:
            raise ImportConfigError(
                f"mapping: type {type_name!r} of column {column!r} is not one of "
                f"{', '.join(CAST_NAMES)}"
            )


def _check_timezone(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        parse_timezone(value)


def _check_format(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value not in FORMATS:
        raise ImportConfigError(f"mapping: format {value!r} is not one of {', '.join(FORMATS)}")


def _check_separator(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ImportConfigError("mapping: list_separator must be a non-empty string")


def _str_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ImportConfigError(f"mapping: expected a table of names, got {value!r}")
    return {str(key): value[key] for key in value}


@attrs.frozen(kw_only=True)
class FieldMapping:
    """Where each event field is read from in a row, and how CSV cells and times are read.

    ``fields`` maps an event field (``type``, ``time.create``, ``profile.id``,
    ``properties.sku``...; see :data:`TARGETS`) to the dotted path of a row value (for CSV,
    a column name). Fields not named read their default place in the export format.
    ``types`` reads CSV columns as ``int``, ``float``, ``bool``, ``json`` or ``list``
    (cells are strings otherwise). ``timezone`` is where times without an offset were
    recorded (they are refused without it). ``list_separator`` splits CSV list cells
    (``tags``, ``profile.ids``) that are not JSON arrays.
    """

    fields: Mapping[str, str] = attrs.field(
        factory=dict, converter=_str_dict, validator=_check_fields
    )
    types: Mapping[str, str] = attrs.field(
        factory=dict, converter=_str_dict, validator=_check_types
    )
    timezone: str | None = attrs.field(default=None, validator=_check_timezone)
    list_separator: str = attrs.field(default="|", validator=_check_separator)
    format: str | None = attrs.field(default=None, validator=_check_format)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldMapping:
        """Build a mapping from a mapping file's content (see ``docs/importer.md``)."""
        known = {"fields", "types", "timezone", "list_separator", "format"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ImportConfigError(
                f"mapping: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | Path) -> FieldMapping:
        """Read a TOML (``.toml``) or JSON mapping file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as error:
            raise ImportConfigError(f"cannot read mapping file {file}: {error}") from None
        if file.suffix.lower() == ".toml":
            data = _load_toml(text, file)
        else:
            try:
                data = json.loads(text)
            except ValueError as error:
                raise ImportConfigError(f"{file}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ImportConfigError(f"{file}: expected a table/object at the top")
        try:
            return cls.from_dict(data)
        except ImportConfigError as error:
            raise ImportConfigError(f"{file}: {error}") from None

    def with_overrides(
        self,
        *,
        fields: Mapping[str, str] | None = None,
        types: Mapping[str, str] | None = None,
        timezone: str | None = None,
        list_separator: str | None = None,
        format: str | None = None,
    ) -> FieldMapping:
        """A copy with some fields, types or settings replaced (command-line options win)."""
        return FieldMapping(
            fields={**self.fields, **(fields or {})},
            types={**self.types, **(types or {})},
            timezone=timezone if timezone is not None else self.timezone,
            list_separator=list_separator if list_separator is not None else self.list_separator,
            format=format if format is not None else self.format,
        )

    def casts(self) -> dict[str, Callable[[str], Any]]:
        """The CSV cell readers ``types`` asks for, by column."""
        return {column: make_cast(name, self.list_separator) for column, name in self.types.items()}


def _toml_reader() -> Any:
    """The TOML parser: ``tomllib`` (3.11+), else the ``tomli`` package it came from (3.10);
    ``None`` when neither is there."""
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _load_toml(text: str, file: Path) -> Any:
    reader = _toml_reader()
    if reader is None:
        raise ImportConfigError(
            f"{file}: reading TOML on Python 3.10 needs the 'tomli' package; "
            "or write the mapping as JSON"
        )
    try:
        return reader.loads(text)
    except reader.TOMLDecodeError as error:
        raise ImportConfigError(f"{file}: not valid TOML ({error})") from None


# -- compiled -------------------------------------------------------------------------------

Getter = Callable[[dict[str, Any]], Any]


def _getter(path: tuple[str, ...], scalar_parent: bool = False) -> Getter:
    """Read a dotted path; ``None`` when absent. ``scalar_parent``: a string or number in
    place of the parent object is the value itself (``"time": "..."`` means ``time.create``)."""
    if len(path) == 1:
        (key,) = path
        return lambda row: row.get(key)
    if len(path) == 2:
        first, second = path

        def get2(row: dict[str, Any]) -> Any:
            parent = row.get(first)
            if type(parent) is dict:
                return parent.get(second)
            if scalar_parent:  # "time": "..." is time.create; "profile": "p-1" profile.id
                return parent
            return None

        return get2

    def get(row: dict[str, Any]) -> Any:
        value: Any = row
        for part in path:
            if type(value) is not dict:
                return None
            value = value.get(part)
        return value

    return get


class MappedRow:
    """One row made into an event, with the identity and times its payload needs."""

    __slots__ = (
        "create",
        "event",
        "insert",
        "key",
        "profile_id",
        "profile_ids",
        "profile_meta",
        "session_id",
        "session_meta",
        "t",
    )

    def __init__(
        self,
        event: dict[str, Any],
        t: float,
        create: datetime,
        insert: datetime | None,
        profile_id: str | None,
        profile_ids: list[str] | None,
        profile_meta: dict[str, str] | None,
        session_id: str | None,
        session_meta: dict[str, str] | None,
    ) -> None:
        self.event = event
        self.t = t
        self.create = create
        self.insert = insert
        self.profile_id = profile_id
        self.profile_ids = profile_ids
        self.profile_meta = profile_meta
        self.session_id = session_id
        self.session_meta = session_meta
        if profile_id is not None:
            key = profile_id
        elif session_id is not None:
            key = "\x00session:" + session_id
        else:
            key = "\x00event:" + str(event["id"])
        self.key = key
        """What orders, sessions and shards the row: its profile, else its session, else
        the event itself."""


_METADATA = ("create", "insert", "update")


class Mapper:
    """A :class:`FieldMapping` compiled for speed: ``map(raw, row)`` gives a
    :class:`MappedRow` or raises :class:`FieldError`.

    Without ``fields`` (the export format read as it is, the common case) ``map`` reads the
    row directly; otherwise it goes through a getter per field. Both check the same things
    in the same order (``generic=True`` forces the getters, for the test that says so).
    """

    def __init__(self, mapping: FieldMapping, source_id: str, *, generic: bool = False) -> None:
        self.mapping = mapping
        self.zone = parse_timezone(mapping.timezone) if mapping.timezone else None
        id_prefix = EVENT_NAMESPACE.bytes + source_id.encode() + b"\n"
        compile_map = self._compile if generic or mapping.fields else self._compile_export
        self.map: Callable[[bytes, dict[str, Any]], MappedRow] = compile_map(id_prefix)
        """Validate one row and build its event (a compiled closure)."""
        get_profile = self._get("profile.id", scalar_parent=True)

        def profile_key(row: dict[str, Any]) -> str | None:
            value = get_profile(row)
            if type(value) is str:
                return value.strip() or None
            return str(value) if type(value) is int else None

        self.profile_key = profile_key
        """The row's profile id, cheaply (``None`` when absent or bad): to skip other shards'
        rows without mapping them; equal to :attr:`MappedRow.key` when not ``None``."""

    def sources(self) -> set[str]:
        """The top-level row keys this mapping reads (a CSV column outside them is unused)."""
        fields = self.mapping.fields
        used = {fields.get(target, target).split(".")[0] for target in TARGETS}
        used.update(source.split(".")[0] for source in fields.values())
        return used

    def _get(self, target: str, scalar_parent: bool = False) -> Getter:
        source = self.mapping.fields.get(target)
        if source is None:
            return _getter(tuple(target.split(".")), scalar_parent)
        return _getter(tuple(source.split(".")))

    def _extras(self, prefix: str) -> list[tuple[tuple[str, ...], Getter]]:
        return [
            (tuple(target[len(prefix) :].split(".")), _getter(tuple(source.split("."))))
            for target, source in self.mapping.fields.items()
            if target.startswith(prefix)
        ]

    def _metadata(self, entity: str) -> Callable[[dict[str, Any]], dict[str, str] | None]:
        """Read ``<entity>.metadata.{create,insert,update}`` as wire times (UTC ``...Z``
        text, the form :func:`~tracardi_tracker._serialization.time_to_wire` gives)."""
        zone = self.zone
        field = f"{entity}.metadata"
        targets = [f"{field}.{name}" for name in _METADATA]
        if not any(target in self.mapping.fields for target in targets):
            parent = _getter((entity, "metadata"))

            def read_default(row: dict[str, Any]) -> dict[str, str] | None:
                values = parent(row)
                if values is None:
                    return None
                if type(values) is not dict:
                    raise FieldError(field, f"must be an object, got {_shown(values)}")
                found = {
                    name: format_utc(parse_time(values[name], f"{field}.{name}", zone)[1])
                    for name in _METADATA
                    if values.get(name) is not None
                }
                return found or None

            return read_default
        getters = [(name, self._get(f"{field}.{name}")) for name in _METADATA]

        def read(row: dict[str, Any]) -> dict[str, str] | None:
            found: dict[str, str] = {}
            for name, getter in getters:
                value = getter(row)
                if value is not None:
                    found[name] = format_utc(parse_time(value, f"{field}.{name}", zone)[1])
            return found or None

        return read

    def _compile(self, id_prefix: bytes) -> Callable[[bytes, dict[str, Any]], MappedRow]:
        zone = self.zone
        separator = self.mapping.list_separator
        get_id = self._get("id")
        get_type = self._get("type")
        get_create = self._get("time.create", scalar_parent=True)
        get_insert = self._get("time.insert")
        get_profile = self._get("profile.id", scalar_parent=True)
        get_profile_ids = self._get("profile.ids")
        get_session = self._get("session.id", scalar_parent=True)
        get_properties = self._get("properties")
        get_context = self._get("context")
        get_tags = self._get("tags")
        get_options = self._get("options")
        extra_properties = self._extras("properties.")
        extra_context = self._extras("context.")
        profile_meta = self._metadata("profile")
        session_meta = self._metadata("session")
        slugs, slug_of = _slugger()

        def strings(value: Any, field: str) -> list[str]:
            return _strings(value, field, separator)

        def map_row(raw: bytes, row: dict[str, Any]) -> MappedRow:
            event_type = get_type(row)
            slug = slugs.get(event_type) if type(event_type) is str else None
            if slug is None:
                slug = slug_of(event_type)

            event_id = get_id(row)
            if event_id is None:
                event_id = uuid5_raw(id_prefix, raw)
            else:
                event_id = _text(event_id, "id")
                if len(event_id) > _MAX_EVENT_ID:
                    raise FieldError("id", f"is longer than {_MAX_EVENT_ID} characters")

            create_value = get_create(row)
            if create_value is None:
                raise FieldError("time.create", "is missing (every imported event needs its time)")
            create_wire, create = parse_time(create_value, "time.create", zone)
            time_wire = {"create": create_wire}
            insert_value = get_insert(row)
            insert = None
            if insert_value is not None:
                time_wire["insert"], insert = parse_time(insert_value, "time.insert", zone)

            properties = get_properties(row)
            if properties is None:
                properties = {}
            elif type(properties) is not dict:
                raise FieldError("properties", f"must be an object, got {_shown(properties)}")
            if extra_properties:
                properties = _with_extras(properties, extra_properties, row)
            event: dict[str, Any] = {
                "id": event_id,
                "type": slug,
                "time": time_wire,
                "properties": properties,
            }
            context = get_context(row)
            if context is not None and type(context) is not dict:
                raise FieldError("context", f"must be an object, got {_shown(context)}")
            if extra_context:
                context = _with_extras(context or {}, extra_context, row)
            if context:
                event["context"] = context
            tags = get_tags(row)
            if tags is not None:
                tags = strings(tags, "tags")
                if tags:
                    event["tags"] = tags
            options = get_options(row)
            if options is not None:
                if type(options) is not dict:
                    raise FieldError("options", f"must be an object, got {_shown(options)}")
                if options:
                    event["options"] = options

            profile_id = get_profile(row)
            if profile_id is not None:
                profile_id = _text(profile_id, "profile.id")
            profile_ids = get_profile_ids(row)
            if profile_ids is not None:
                profile_ids = strings(profile_ids, "profile.ids") or None
            session_id = get_session(row)
            if session_id is not None:
                session_id = _text(session_id, "session.id")
            return MappedRow(
                event,
                create.timestamp(),
                create,
                insert,
                profile_id,
                profile_ids,
                profile_meta(row),
                session_id,
                session_meta(row),
            )

        return map_row

    def _compile_export(self, id_prefix: bytes) -> Callable[[bytes, dict[str, Any]], MappedRow]:
        """``map`` for the default mapping: what :meth:`_compile` builds for it, with the
        row read directly instead of through getters (a third of the cost)."""
        zone = self.zone
        separator = self.mapping.list_separator
        slugs, slug_of = _slugger()
        id_hash = hashlib.sha1(id_prefix, usedforsecurity=False)  # copied for each row
        variant = _VARIANT
        blank = object.__new__

        def metadata(values: Any, field: str) -> dict[str, str] | None:
            if type(values) is not dict:
                raise FieldError(field, f"must be an object, got {_shown(values)}")
            found = {
                name: format_utc(parse_time(values[name], f"{field}.{name}", zone)[1])
                for name in _METADATA
                if values.get(name) is not None
            }
            return found or None

        def map_export(raw: bytes, row: dict[str, Any]) -> MappedRow:
            get = row.get
            event_type = get("type")
            slug = slugs.get(event_type) if type(event_type) is str else None
            if slug is None:
                slug = slug_of(event_type)

            event_id = get("id")
            if event_id is None:  # uuid5_raw(id_prefix, raw), inline
                hashed = id_hash.copy()
                hashed.update(raw)
                digest = hashed.hexdigest()
                event_id = (
                    f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-"
                    f"{variant[digest[16]]}{digest[17:20]}-{digest[20:32]}"
                )
            else:
                event_id = _text(event_id, "id")
                if len(event_id) > _MAX_EVENT_ID:
                    raise FieldError("id", f"is longer than {_MAX_EVENT_ID} characters")

            times = get("time")
            if type(times) is dict:
                create_value = times.get("create")
                insert_value = times.get("insert")
            else:  # "time": "..." is time.create
                create_value = times
                insert_value = None
            if create_value is None:
                raise FieldError("time.create", "is missing (every imported event needs its time)")
            create: datetime | None = None
            if (  # parse_time's first case, inline: the canonical form is kept as it is
                type(create_value) is str
                and len(create_value) in _CANONICAL_LENGTHS
                and create_value[-1] == "Z"
                and create_value[4:20:3] in _CANONICAL_SHAPES
            ):
                try:
                    create = _from_zulu(create_value)
                    create_wire = create_value
                except ValueError:
                    pass
            if create is None:
                create_wire, create = parse_time(create_value, "time.create", zone)
            time_wire = {"create": create_wire}
            insert = None
            if insert_value is not None:
                time_wire["insert"], insert = parse_time(insert_value, "time.insert", zone)

            properties = get("properties")
            if properties is None:
                properties = {}
            elif type(properties) is not dict:
                raise FieldError("properties", f"must be an object, got {_shown(properties)}")
            event: dict[str, Any] = {
                "id": event_id,
                "type": slug,
                "time": time_wire,
                "properties": properties,
            }
            context = get("context")
            if context is not None:
                if type(context) is not dict:
                    raise FieldError("context", f"must be an object, got {_shown(context)}")
                if context:
                    event["context"] = context
            tags = get("tags")
            if tags is not None:
                if type(tags) is list:  # the common case, checked inline
                    for tag in tags:
                        if type(tag) is not str or not tag.strip():
                            tags = _strings(tags, "tags", separator)  # raises, naming it
                else:
                    tags = _strings(tags, "tags", separator)
                if tags:
                    event["tags"] = tags
            options = get("options")
            if options is not None:
                if type(options) is not dict:
                    raise FieldError("options", f"must be an object, got {_shown(options)}")
                if options:
                    event["options"] = options

            profile = get("profile")
            profile_ids = profile_meta = None
            if type(profile) is dict:
                profile_id = profile.get("id")
                profile_ids = profile.get("ids")
                profile_meta = profile.get("metadata")
            else:  # "profile": "p-1" is profile.id
                profile_id = profile
            if type(profile_id) is str and profile_id:  # _text's common case, inline
                stripped = profile_id.strip()
                profile_id = stripped if stripped else _text(profile_id, "profile.id")
            elif profile_id is not None:
                profile_id = _text(profile_id, "profile.id")
            if profile_ids is not None:
                profile_ids = _strings(profile_ids, "profile.ids", separator) or None
            session = get("session")
            session_meta = None
            if type(session) is dict:
                session_id = session.get("id")
                session_meta = session.get("metadata")
            else:
                session_id = session
            if session_id is not None:
                session_id = _text(session_id, "session.id")
            if profile_meta is not None:
                profile_meta = metadata(profile_meta, "profile.metadata")
            if session_meta is not None:
                session_meta = metadata(session_meta, "session.metadata")
            mapped = blank(MappedRow)  # what MappedRow(...) makes, without the call's cost
            mapped.event = event
            mapped.t = create.timestamp()
            mapped.create = create
            mapped.insert = insert
            mapped.profile_id = profile_id
            mapped.profile_ids = profile_ids
            mapped.profile_meta = profile_meta
            mapped.session_id = session_id
            mapped.session_meta = session_meta
            if profile_id is not None:
                mapped.key = profile_id
            elif session_id is not None:
                mapped.key = "\x00session:" + session_id
            else:
                mapped.key = "\x00event:" + event_id
            return mapped

        return map_export


def _slugger() -> tuple[dict[str, str], Callable[[Any], str]]:
    """A cache of event type slugs, and the function that checks a type and fills it."""
    slugs: dict[str, str] = {}

    def slug_of(event_type: Any) -> str:
        if event_type is None:
            raise FieldError("type", "is missing")
        if type(event_type) is not str:
            raise FieldError("type", f"must be a string, got {_shown(event_type)}")
        slug = event_type_slug(event_type.strip())
        if not slug:
            raise FieldError("type", f"{event_type!r} has no letters or digits")
        if len(slugs) > 10_000:
            slugs.clear()
        slugs[event_type] = slug
        return slug

    return slugs, slug_of


def _strings(value: Any, field: str, separator: str) -> list[str]:
    """A list of non-empty strings (``tags``, ``profile.ids``), or text split on
    ``separator``."""
    if type(value) is str:
        return [item.strip() for item in value.split(separator) if item.strip()]
    if type(value) is not list:
        raise FieldError(field, f"must be a list of strings, got {_shown(value)}")
    for index, item in enumerate(value):
        if type(item) is not str or not item.strip():
            raise FieldError(f"{field}[{index}]", f"must be a non-empty string, got {item!r}")
    return value


def _text(value: Any, field: str) -> str:
    if type(value) is str:
        text = value.strip()
        if not text:
            raise FieldError(field, "is empty")
        return text
    if type(value) is int:
        return str(value)
    raise FieldError(field, f"must be a string, got {_shown(value)}")


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _with_extras(
    base: dict[str, Any], extras: list[tuple[tuple[str, ...], Getter]], row: dict[str, Any]
) -> dict[str, Any]:
    merged = dict(base)
    for path, getter in extras:
        value = getter(row)
        if value is None:
            continue
        target = merged
        for part in path[:-1]:
            child = target.get(part)
            child = dict(child) if type(child) is dict else {}
            target[part] = child
            target = child
        target[path[-1]] = value
    return merged
