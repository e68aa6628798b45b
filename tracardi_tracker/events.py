"""The events a tracker sends: Snowplow's classes and Tracardi's own :class:`Event`.

Every class takes, besides its own fields, the keyword-only common fields of
:class:`BaseEvent`. An event is stamped with its collection time when it is made;
its Tracardi type and properties are derived by
:mod:`tracardi_tracker._serialization`, which also validates the values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from ._times import from_epoch_us, now_us
from .exceptions import InvalidEventError
from .models import SelfDescribingJson, Subject, Time, event_type_slug

__all__ = [
    "BaseEvent",
    "Event",
    "PagePing",
    "PageView",
    "ScreenView",
    "SelfDescribing",
    "StructuredEvent",
]

_MAX_EVENT_ID = 64  # Tracardi's index keeps ids up to 64 characters


def _non_empty_str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEventError(attribute.name, f"must be a non-empty string, got {value!r}")


def _optional_str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _non_empty_str(instance, attribute, value)


def _optional_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidEventError(attribute.name, f"must be a finite number, got {value!r}")


def _check_event_id(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_EVENT_ID:
        raise InvalidEventError(
            "id", f"must be a non-empty string of at most {_MAX_EVENT_ID} characters, got {value!r}"
        )


def _check_subject(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Subject):
        raise InvalidEventError("event_subject", f"must be a Subject, got {type(value).__name__}")


def _check_time(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Time):
        raise InvalidEventError("time", f"must be a Time, got {type(value).__name__}")


def _check_context(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, Mapping):
        return
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        for index, item in enumerate(value):
            if not isinstance(item, SelfDescribingJson):
                raise InvalidEventError(
                    f"context[{index}]", f"must be a SelfDescribingJson, got {type(item).__name__}"
                )
        return
    raise InvalidEventError(
        "context", f"must be a dict or a list of SelfDescribingJson, got {type(value).__name__}"
    )


def _tags(value: Iterable[str] | None) -> tuple[str, ...]:
    if value is None or value == ():
        return ()
    if isinstance(value, str):
        raise InvalidEventError("tags", "must be a list of strings, not a string")
    tags = tuple(value)
    for index, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise InvalidEventError(f"tags[{index}]", f"must be a string, got {tag!r}")
    return tags


def _copy_mapping(value: Any) -> Any:
    """A shallow copy of a mapping, so later changes by the caller do not reach the event."""
    if value is None:  # the common cases first, without the abstract-class check's cost
        return None
    return dict(value) if type(value) is dict or isinstance(value, Mapping) else value


def _copy_context(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_mapping(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidEventError(attribute.name, f"must be a dict, got {type(value).__name__}")


def _check_true_timestamp(
    instance: BaseEvent, attribute: attrs.Attribute[Any], value: object
) -> None:
    _optional_number(instance, attribute, value)
    if value is not None and instance.time is not None and instance.time.create is not None:
        raise InvalidEventError(
            "true_timestamp", "give either true_timestamp or time.create, not both"
        )


@attrs.frozen
class BaseEvent:
    """Fields every event takes, all keyword-only.

    - ``event_subject``: a :class:`Subject` merged over the tracker's for this event.
    - ``context``: a dict merged into the event's Tracardi context, or a list of
      :class:`SelfDescribingJson` entities (sent under ``context.entities``).
    - ``true_timestamp``: when the event really happened, in ms since the epoch;
      it becomes ``time.create``.
    - ``time``: Tracardi's :class:`Time`; ``insert`` defaults to when the event
      was made, ``create`` to ``true_timestamp`` or else to ``insert``.
    - ``tags``: strings stored with the event.
    - ``options``: event-level options, stored by Tracardi as the event's config.
    - ``event_id``: the event's id; a uuid4 is made at ``track()`` when absent.
      Give one (at most 64 characters) to make re-sends idempotent.
    """

    # checked together in __attrs_post_init__
    event_subject: Subject | None = attrs.field(default=None, kw_only=True)
    context: Mapping[str, Any] | Sequence[SelfDescribingJson] | None = attrs.field(
        default=None, kw_only=True, converter=_copy_context
    )
    time: Time | None = attrs.field(default=None, kw_only=True)
    true_timestamp: float | None = attrs.field(default=None, kw_only=True)
    tags: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_tags)
    options: Mapping[str, Any] | None = attrs.field(
        default=None, kw_only=True, converter=_copy_mapping
    )
    event_id: str | None = attrs.field(default=None, kw_only=True)
    made_us: int = attrs.field(factory=now_us, init=False, eq=False, repr=False)
    """When the event object was made, in microseconds since the Unix epoch: its default
    collection time (``time.insert``). :attr:`made_at` gives it as a datetime."""

    def __attrs_post_init__(self) -> None:
        """Check the common fields, in one call rather than a validator each (making an
        event is on the caller's path, and these fields are mostly ``None``)."""
        fields = _BASE_FIELDS
        if self.event_subject is not None:
            _check_subject(self, fields.event_subject, self.event_subject)
        if self.context is not None:
            _check_context(self, fields.context, self.context)
        if self.time is not None:
            _check_time(self, fields.time, self.time)
        if self.true_timestamp is not None:
            _check_true_timestamp(self, fields.true_timestamp, self.true_timestamp)
        if self.options is not None:
            _check_mapping(self, fields.options, self.options)
        if self.event_id is not None:
            _check_event_id(self, fields.event_id, self.event_id)

    @property
    def made_at(self) -> datetime:
        """When the event object was made, as an aware UTC datetime."""
        return from_epoch_us(self.made_us)


_BASE_FIELDS = attrs.fields(BaseEvent)


@attrs.frozen
class PageView(BaseEvent):
    """A page view (type ``page-view``); fills the event's ``context.page``."""

    page_url: str = attrs.field(validator=_non_empty_str)
    page_title: str | None = attrs.field(default=None, validator=_optional_str)
    referrer: str | None = attrs.field(default=None, validator=_optional_str)


@attrs.frozen
class PagePing(BaseEvent):
    """A page ping with scroll offsets (type ``page-ping``); fills ``context.page``."""

    page_url: str = attrs.field(validator=_non_empty_str)
    page_title: str | None = attrs.field(default=None, validator=_optional_str)
    referrer: str | None = attrs.field(default=None, validator=_optional_str)
    min_x: int | None = attrs.field(default=None, validator=_optional_number)
    max_x: int | None = attrs.field(default=None, validator=_optional_number)
    min_y: int | None = attrs.field(default=None, validator=_optional_number)
    max_y: int | None = attrs.field(default=None, validator=_optional_number)


@attrs.frozen
class ScreenView(BaseEvent):
    """A screen view in an app (type ``screen-view``)."""

    id_: str = attrs.field(validator=_non_empty_str)
    name: str = attrs.field(validator=_non_empty_str)
    type: str | None = attrs.field(default=None, validator=_optional_str)
    previous_name: str | None = attrs.field(default=None, validator=_optional_str)
    previous_id: str | None = attrs.field(default=None, validator=_optional_str)
    previous_type: str | None = attrs.field(default=None, validator=_optional_str)
    transition_type: str | None = attrs.field(default=None, validator=_optional_str)


@attrs.frozen
class StructuredEvent(BaseEvent):
    """Snowplow's structured event; its Tracardi type is the slug of ``action``."""

    category: str = attrs.field(validator=_non_empty_str)
    action: str = attrs.field(validator=_non_empty_str)
    label: str | None = attrs.field(default=None, validator=_optional_str)
    property_: str | None = attrs.field(default=None, validator=_optional_str)
    value: float | None = attrs.field(default=None, validator=_optional_number)


def _check_sdj(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, SelfDescribingJson):
        raise InvalidEventError(
            "event_json", f"must be a SelfDescribingJson, got {type(value).__name__}"
        )


@attrs.frozen
class SelfDescribing(BaseEvent):
    """A self-describing event; its type is the slug of the schema's name, its data the
    event's properties."""

    event_json: SelfDescribingJson = attrs.field(validator=_check_sdj)


def _check_type(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _non_empty_str(instance, attribute, value)
    if not event_type_slug(str(value)):
        raise InvalidEventError("type", f"{value!r} has no letters or digits to make a type from")


@attrs.frozen
class Event(BaseEvent):
    """Tracardi's own custom event: ``Event("Add To Cart", {"sku": "A1"})``.

    The type sent is the slug of ``type`` (``add-to-cart``).
    """

    type: str = attrs.field(validator=_check_type)
    properties: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_copy_mapping, validator=_check_mapping
    )
