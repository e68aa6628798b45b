"""Value objects: times, options, the subject (who an event is about) and entities.

They hold what the caller said, validated at construction; turning them into
Tracardi's JSON is :mod:`tracardi_tracker._serialization`'s job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import attrs
from slugify import slugify

from ._times import to_utc
from .exceptions import InvalidEventError

__all__ = ["Options", "SelfDescribingJson", "Subject", "Time"]

_IGLU = re.compile(r"^iglu:([^/\s]+)/([^/\s]+)/([^/\s]+)/(\d+-\d+-\d+)$")


@functools.lru_cache(maxsize=4096)
def event_type_slug(name: str) -> str:
    """The Tracardi event type for a name: its slug (``Page View`` gives ``page-view``).

    Cached: an application tracks few distinct types, and slugifying costs microseconds.
    """
    return slugify(name)


TimeInput = datetime | str | int | float | None
"""What a time can be given as: aware datetime, ISO-8601 string, epoch s or ms."""


def _create(value: TimeInput) -> datetime | None:
    return None if value is None else to_utc(value, "create")


def _insert(value: TimeInput) -> datetime | None:
    return None if value is None else to_utc(value, "insert")


def _update(value: TimeInput) -> datetime | None:
    return None if value is None else to_utc(value, "update")


@attrs.frozen(kw_only=True)
class Time:
    """Tracardi's ``{create, insert, update}`` times, as aware UTC datetimes.

    Each accepts an aware datetime, an ISO-8601 string with an offset or ``Z``, or
    epoch seconds or milliseconds (see :mod:`tracardi_tracker._times` for the exact
    policy; naive datetimes are rejected). For an event, ``create`` is when it
    happened and ``insert`` when it was collected (Tracardi's timeline time);
    ``update`` is accepted by Tracardi and kept for session and profile metadata.
    """

    create: datetime | None = attrs.field(default=None, converter=_create)
    insert: datetime | None = attrs.field(default=None, converter=_insert)
    update: datetime | None = attrs.field(default=None, converter=_update)


def _strict_bool(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidEventError(
            f"options.{attribute.name}", f"must be True or False, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Options:
    """Payload options Tracardi reads: what to store and whether to debug.

    They go out as ``saveEvents``, ``saveSession``, ``saveProfile`` and ``debugger``,
    always as real booleans (Tracardi ignores ``"true"`` strings).
    """

    save_events: bool = attrs.field(default=True, validator=_strict_bool)
    save_session: bool = attrs.field(default=True, validator=_strict_bool)
    save_profile: bool = attrs.field(default=True, validator=_strict_bool)
    debugger: bool = attrs.field(default=False, validator=_strict_bool)

    _WIRE_NAMES: ClassVar[Mapping[str, str]] = {
        "saveEvents": "save_events",
        "saveEvent": "save_events",  # the name Tracardi's docs use; its code reads saveEvents
        "saveSession": "save_session",
        "saveProfile": "save_profile",
        "debugger": "debugger",
    }

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Options:
        """Build options from Tracardi's wire names (``saveEvents``...) or field names.

        The documented but unread ``saveEvent`` is taken as ``saveEvents``. An
        unknown key raises :class:`InvalidEventError`.
        """
        fields = {field.name for field in attrs.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = cls._WIRE_NAMES.get(key, key)
            if name not in fields:
                raise InvalidEventError(f"options.{key}", "is not an option Tracardi reads")
            kwargs[name] = value
        return cls(**kwargs)


def _mapping_copy(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEventError("data", f"must be a dict, got {type(value).__name__}")
    return dict(value)


def _check_iglu(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _IGLU.match(value):
        raise InvalidEventError(
            attribute.name, f"{value!r} is not an Iglu URI like iglu:com.acme/name/jsonschema/1-0-0"
        )


@attrs.frozen
class SelfDescribingJson:
    """Snowplow's self-describing JSON: an Iglu ``schema`` URI and its ``data``.

    Used as the body of a :class:`~tracardi_tracker.SelfDescribing` event (its
    Tracardi type is the slug of the schema's name) and as a context entity.
    """

    schema: str = attrs.field(validator=_check_iglu)
    data: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping_copy)

    @property
    def name(self) -> str:
        """The schema's name: ``link_click`` for ``iglu:com.acme/link_click/jsonschema/1-0-1``."""
        match = _IGLU.match(self.schema)
        assert match is not None  # checked at construction
        return match.group(2)

    @property
    def event_type(self) -> str:
        """The Tracardi event type this schema names: the slug of its name."""
        return event_type_slug(self.name)


def _optional_str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidEventError(
            f"subject.{attribute.name}", f"must be a non-empty string, got {value!r}"
        )


def _optional_pair(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)
    )
    if not ok:
        raise InvalidEventError(
            f"subject.{attribute.name}", f"must be (width, height) in pixels, got {value!r}"
        )


def _optional_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidEventError(f"subject.{attribute.name}", f"must be an int, got {value!r}")


def _optional_metadata(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Time):
        raise InvalidEventError(
            f"subject.{attribute.name}", f"must be a Time, got {type(value).__name__}"
        )


def _ids(value: Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise InvalidEventError("subject.profile_ids", "must be a list of strings, not a string")
    ids = tuple(value)
    for index, item in enumerate(ids):
        if not isinstance(item, str) or not item.strip():
            raise InvalidEventError(
                f"subject.profile_ids[{index}]", f"must be a non-empty string, got {item!r}"
            )
    return ids


_S = TypeVar("_S", bound="Subject")


_IDENTITY_FIELDS = (
    "user_id",
    "profile_id",
    "profile_ids",
    "session_id",
    "profile_metadata",
    "session_metadata",
)


def _bump_version(instance: Subject, attribute: attrs.Attribute[Any], value: Any) -> Any:
    object.__setattr__(instance, "_version", instance._version + 1)
    return value


@attrs.define(
    kw_only=True,
    on_setattr=[attrs.setters.convert, attrs.setters.validate, _bump_version],
)
class Subject:
    """Who an event is about: Snowplow's subject fields plus Tracardi's identity.

    Setters chain, as in Snowplow's tracker (``Subject().set_user_id("1234")``) and
    change the subject in place; the tracker takes a copy at each ``track()``. An
    event's ``event_subject`` is merged over the tracker's subject, field by field,
    the event's values winning.

    Tracardi identity: ``profile_id`` (a profile Tracardi gave earlier),
    ``profile_ids`` (aliases Tracardi merges into the profile), ``session_id``, and
    ``profile_metadata`` / ``session_metadata`` times, applied by Tracardi when it
    creates that profile or session.
    """

    user_id: str | None = attrs.field(default=None, validator=_optional_str)
    platform: str | None = attrs.field(default=None, validator=_optional_str)
    screen_resolution: tuple[int, int] | None = attrs.field(default=None, validator=_optional_pair)
    viewport: tuple[int, int] | None = attrs.field(default=None, validator=_optional_pair)
    color_depth: int | None = attrs.field(default=None, validator=_optional_int)
    timezone: str | None = attrs.field(default=None, validator=_optional_str)
    lang: str | None = attrs.field(default=None, validator=_optional_str)
    ip_address: str | None = attrs.field(default=None, validator=_optional_str)
    useragent: str | None = attrs.field(default=None, validator=_optional_str)
    profile_id: str | None = attrs.field(default=None, validator=_optional_str)
    profile_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    session_id: str | None = attrs.field(default=None, validator=_optional_str)
    profile_metadata: Time | None = attrs.field(default=None, validator=_optional_metadata)
    session_metadata: Time | None = attrs.field(default=None, validator=_optional_metadata)
    _version: int = attrs.field(default=0, init=False, eq=False, repr=False, on_setattr=None)
    _memo: Any = attrs.field(
        default=None, init=False, eq=False, repr=False, on_setattr=attrs.setters.NO_OP
    )
    """A tracker's visitor and payload head for this subject, as of ``_version`` (private
    to :class:`~tracardi_tracker.Tracker`: a backend reusing one Subject per visitor
    pays for them once)."""

    def _set(self: _S, name: str, value: object) -> _S:
        setattr(self, name, value)
        return self

    def set_user_id(self: _S, user_id: str | None) -> _S:
        """Set the application's own id for the user (sent as a profile alias)."""
        return self._set("user_id", user_id)

    def set_platform(self: _S, platform: str | None) -> _S:
        """Set the platform (``pc``, ``mob``, ``srv``, ``app``...)."""
        return self._set("platform", platform)

    def set_screen_resolution(self: _S, width: int, height: int) -> _S:
        """Set the screen resolution in pixels."""
        return self._set("screen_resolution", (width, height))

    def set_viewport(self: _S, width: int, height: int) -> _S:
        """Set the browser viewport in pixels."""
        return self._set("viewport", (width, height))

    def set_color_depth(self: _S, depth: int) -> _S:
        """Set the screen's color depth in bits."""
        return self._set("color_depth", depth)

    def set_timezone(self: _S, timezone: str) -> _S:
        """Set the visitor's time zone name, e.g. ``Europe/Warsaw``."""
        return self._set("timezone", timezone)

    def set_lang(self: _S, lang: str) -> _S:
        """Set the visitor's language, e.g. ``en-GB``."""
        return self._set("lang", lang)

    def set_ip_address(self: _S, ip: str) -> _S:
        """Set the visitor's IP address (sent as ``X-Forwarded-For``)."""
        return self._set("ip_address", ip)

    def set_useragent(self: _S, useragent: str) -> _S:
        """Set the visitor's user agent (Tracardi derives the device from it)."""
        return self._set("useragent", useragent)

    def set_profile_id(self: _S, profile_id: str | None) -> _S:
        """Set the Tracardi profile id this visitor was given earlier."""
        return self._set("profile_id", profile_id)

    def set_profile_ids(self: _S, profile_ids: Iterable[str]) -> _S:
        """Set ids Tracardi should merge into the profile as aliases."""
        return self._set("profile_ids", _ids(profile_ids))

    def set_session_id(self: _S, session_id: str | None) -> _S:
        """Set the visitor's session id (from a cookie, say)."""
        return self._set("session_id", session_id)

    def set_profile_metadata(self: _S, time: Time | None) -> _S:
        """Set the times Tracardi gives the profile if it creates it."""
        return self._set("profile_metadata", time)

    def set_session_metadata(self: _S, time: Time | None) -> _S:
        """Set the times Tracardi gives the session if it creates it."""
        return self._set("session_metadata", time)

    def merged(self, over: Subject | None) -> Subject:
        """Return a new subject: this one with ``over``'s set fields written on top."""
        return self._copy(over, ())

    def without_identity(self) -> Subject:
        """A copy with the identity fields (ids, user id, metadata) cleared."""
        return self._copy(None, _IDENTITY_FIELDS)

    def __getstate__(self) -> dict[str, Any]:
        """The fields, for ``pickle`` and ``copy``, without a tracker's memo (it holds a
        visitor and its locks; a copy makes its own)."""
        return {name: getattr(self, name) for name in _SUBJECT_STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`__getstate__` gave."""
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_memo", None)

    def _copy(self, over: Subject | None, cleared: tuple[str, ...]) -> Subject:
        # Both sides were validated when set: copy the slots without running validators.
        new = object.__new__(Subject)
        for name in _SUBJECT_FIELDS:
            value = getattr(self, name)
            if over is not None:
                given = getattr(over, name)
                if given is not None and given != ():
                    value = given
            if name in cleared:
                value = () if name == "profile_ids" else None
            object.__setattr__(new, name, value)
        object.__setattr__(new, "_version", 0)
        object.__setattr__(new, "_memo", None)
        return new


_SUBJECT_FIELDS = tuple(field.name for field in attrs.fields(Subject) if field.init)
_SUBJECT_STATE = (*_SUBJECT_FIELDS, "_version")
