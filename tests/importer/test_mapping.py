"""Rows into events: the export format, mappings, the time policy, ids and validation."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tracardi_tracker import Event, Time
from tracardi_tracker._serialization import event_to_wire, time_to_wire
from tracardi_tracker.importer import EVENT_NAMESPACE, FieldMapping, ImportConfigError
from tracardi_tracker.importer._mapping import (
    FieldError,
    MappedRow,
    Mapper,
    parse_time,
    parse_timezone,
    uuid5,
)

SOURCE = "src-1"


def mapped(
    row: dict[str, Any], mapping: FieldMapping | None = None, raw: bytes = b"raw"
) -> MappedRow:
    return Mapper(mapping or FieldMapping(), SOURCE).map(raw, row)


def field_error(row: dict[str, Any], mapping: FieldMapping | None = None) -> tuple[str | None, str]:
    with pytest.raises(FieldError) as caught:
        mapped(row, mapping)
    return caught.value.field, caught.value.reason


def test_the_export_format_needs_no_mapping() -> None:
    row = {
        "id": "e-1",
        "type": "Purchase Order",
        "time": {"create": "2023-03-01T10:02:11.250Z", "insert": "2023-03-01T10:02:12Z"},
        "profile": {
            "id": "p-1",
            "ids": ["crm:1", "email:a@b.c"],
            "metadata": {"create": "2021-06-01T00:00:00Z"},
        },
        "session": {"id": "s-1", "metadata": {"create": "2023-03-01T09:59:58Z"}},
        "properties": {"order_id": "A-991", "value": 49.9},
        "context": {"page": {"url": "https://shop.example/checkout"}},
        "tags": ["backfill"],
        "options": {"fire": True},
    }

    result = mapped(row)

    assert result.event == {
        "id": "e-1",
        "type": "purchase-order",
        "time": {"create": "2023-03-01T10:02:11.250Z", "insert": "2023-03-01T10:02:12Z"},
        "properties": {"order_id": "A-991", "value": 49.9},
        "context": {"page": {"url": "https://shop.example/checkout"}},
        "tags": ["backfill"],
        "options": {"fire": True},
    }
    assert result.profile_id == "p-1"
    assert result.profile_ids == ["crm:1", "email:a@b.c"]
    assert result.profile_meta == time_to_wire(Time(create="2021-06-01T00:00:00Z"))
    assert result.session_id == "s-1"
    assert result.session_meta == time_to_wire(Time(create="2023-03-01T09:59:58Z"))
    assert result.key == "p-1"


def test_the_event_has_the_shape_the_sdk_serializer_gives() -> None:
    sdk = event_to_wire(
        Event(
            "Page View",
            {"a": 1},
            time=Time(create="2023-03-01T10:00:00Z", insert="2023-03-01T10:00:01Z"),
            context={"page": {"url": "https://x"}},
            tags=["t"],
        ),
        "e-1",
    )

    ours = mapped(
        {
            "id": "e-1",
            "type": "Page View",
            "time": {"create": "2023-03-01T10:00:00Z", "insert": "2023-03-01T10:00:01Z"},
            "properties": {"a": 1},
            "context": {"page": {"url": "https://x"}},
            "tags": ["t"],
        }
    ).event

    assert json.dumps(ours, sort_keys=True) == json.dumps(sdk, sort_keys=True)


def test_shorthands_a_time_string_and_a_profile_string() -> None:
    result = mapped({"type": "a", "time": "2023-03-01T10:00:00Z", "profile": "p-9", "session": "s"})

    assert result.event["time"] == {"create": "2023-03-01T10:00:00Z"}
    assert (result.profile_id, result.session_id) == ("p-9", "s")


def test_event_ids_derive_from_source_and_row_bytes_as_uuid5() -> None:
    first = mapped({"type": "a", "time": "2023-03-01T10:00:00Z"}, raw=b"line one")
    again = mapped({"type": "a", "time": "2023-03-01T10:00:00Z"}, raw=b"line one")
    other = mapped({"type": "a", "time": "2023-03-01T10:00:00Z"}, raw=b"line two")

    assert first.event["id"] == again.event["id"] != other.event["id"]
    assert first.event["id"] == str(uuid.uuid5(EVENT_NAMESPACE, f"{SOURCE}\nline one"))


def test_fast_uuid5_equals_the_standard_one() -> None:
    for name in ("", "a", "zażółć", "x" * 1000):
        assert uuid5(uuid.NAMESPACE_URL, name.encode()) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))


@pytest.mark.parametrize(
    ("row", "field", "reason_part"),
    [
        ({"time": "2023-03-01T10:00:00Z"}, "type", "is missing"),
        ({"type": 7, "time": "2023-03-01T10:00:00Z"}, "type", "must be a string"),
        ({"type": "!!!", "time": "2023-03-01T10:00:00Z"}, "type", "no letters or digits"),
        ({"type": "a"}, "time.create", "is missing"),
        ({"type": "a", "time": "2023-03-01"}, "time.create", "date without a time"),
        ({"type": "a", "time": "yesterday"}, "time.create", "not an ISO-8601"),
        ({"type": "a", "time": "2023-03-01T10:00:00"}, "time.create", "no time zone"),
        ({"type": "a", "time": "2023-13-01T10:00:00Z"}, "time.create", "not a valid date"),
        ({"type": "a", "time": 20230301}, "time.create", "too small for an epoch"),
        ({"type": "a", "time": True}, "time.create", "expected a date and time"),
        (
            {"type": "a", "time": {"create": "2023-03-01T10:00:00Z", "insert": "x"}},
            "time.insert",
            "not an ISO-8601",
        ),
        ({"type": "a", "time": "2023-03-01T10:00:00Z", "properties": [1]}, "properties", "object"),
        ({"type": "a", "time": "2023-03-01T10:00:00Z", "tags": [1]}, "tags[0]", "string"),
        (
            {"type": "a", "time": "2023-03-01T10:00:00Z", "profile": {"id": ""}},
            "profile.id",
            "empty",
        ),
        ({"type": "a", "time": "2023-03-01T10:00:00Z", "id": "x" * 65}, "id", "longer than 64"),
        (
            {
                "type": "a",
                "time": "2023-03-01T10:00:00Z",
                "session": {"id": "s", "metadata": {"create": "2023-03-01"}},
            },
            "session.metadata.create",
            "date without a time",
        ),
    ],
)
def test_bad_values_name_the_field_and_the_problem(
    row: dict[str, Any], field: str, reason_part: str
) -> None:
    found_field, reason = field_error(row)

    assert found_field == field
    assert reason_part in reason


def test_times_with_an_offset_become_utc_and_canonical_ones_are_kept_exactly() -> None:
    zone = None

    assert parse_time("2023-03-01T10:02:11.25Z", "t", zone)[0] == "2023-03-01T10:02:11.25Z"
    assert parse_time("2023-03-01T12:00:00+02:00", "t", zone)[0] == "2023-03-01T10:00:00Z"
    assert parse_time("2023-03-01 10:00:00.123456789Z", "t", zone)[0] == (
        "2023-03-01T10:00:00.123456Z"
    )
    assert parse_time(1677664800, "t", zone)[0] == "2023-03-01T10:00:00Z"
    assert parse_time("1677664800000", "t", zone)[0] == "2023-03-01T10:00:00Z"


def test_naive_times_need_a_timezone_and_then_get_it() -> None:
    mapping = FieldMapping(timezone="Europe/Warsaw")

    result = mapped({"type": "a", "time": "2023-07-01 12:00:00"}, mapping)

    assert result.event["time"]["create"] == "2023-07-01T10:00:00Z"
    assert result.create == datetime(2023, 7, 1, 10, tzinfo=timezone.utc)


def test_timezones_are_names_utc_or_offsets() -> None:
    assert parse_timezone("UTC") is timezone.utc
    assert datetime(2023, 1, 1, tzinfo=parse_timezone("+05:30")).utcoffset() is not None
    with pytest.raises(ImportConfigError, match="unknown time zone"):
        parse_timezone("Mars/Olympus")


def test_a_mapping_names_where_each_field_comes_from() -> None:
    mapping = FieldMapping(
        fields={
            "type": "event",
            "time.create": "ts",
            "profile.id": "user.id",
            "properties.sku": "item.sku",
            "context.page.url": "url",
            "tags": "labels",
        }
    )
    row = {
        "event": "Add To Cart",
        "ts": 1677664800,
        "user": {"id": 42},
        "item": {"sku": "A-1"},
        "url": "https://x",
        "labels": "a|b",
        "properties": {"kept": True},
    }

    result = mapped(row, mapping)

    assert result.event["type"] == "add-to-cart"
    assert result.event["properties"] == {"kept": True, "sku": "A-1"}
    assert result.event["context"] == {"page": {"url": "https://x"}}
    assert result.event["tags"] == ["a", "b"]
    assert result.profile_id == "42"


def test_mapping_files_in_toml_and_json_say_the_same(tmp_path: Path) -> None:
    toml = tmp_path / "mapping.toml"
    toml.write_text(
        'timezone = "UTC"\nformat = "csv"\n[fields]\ntype = "event"\n"profile.id" = "uid"\n'
        '[types]\nprice = "float"\n'
    )
    as_json = tmp_path / "mapping.json"
    as_json.write_text(
        json.dumps(
            {
                "timezone": "UTC",
                "format": "csv",
                "fields": {"type": "event", "profile.id": "uid"},
                "types": {"price": "float"},
            }
        )
    )

    assert FieldMapping.from_file(toml) == FieldMapping.from_file(as_json)
    assert FieldMapping.from_file(toml).with_overrides(fields={"type": "kind"}).fields == {
        "type": "kind",
        "profile.id": "uid",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fields": {"colour": "c"}}, "not an event field"),
        ({"fields": {"type": ""}}, "must name a source"),
        ({"types": {"a": "decimal"}}, "is not one of"),
        ({"timezone": "Nowhere/Else"}, "unknown time zone"),
        ({"format": "xml"}, "format"),
        ({"extra": 1}, "unknown key"),
    ],
)
def test_a_bad_mapping_is_refused_with_a_reason(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ImportConfigError, match=message):
        FieldMapping.from_dict(data)


def test_a_broken_mapping_file_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "mapping.toml"
    broken.write_text("fields = [")

    with pytest.raises(ImportConfigError, match=r"mapping\.toml: not valid TOML"):
        FieldMapping.from_file(broken)
