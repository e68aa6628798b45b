"""Values that must never go out wrong: NaN and infinities, times on every Python, the
fast paths that must say exactly what the general ones say."""

from __future__ import annotations

import importlib
import json
import random
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from importer_helpers import at, row

from tracardi_tracker._capture import CapturingTransport
from tracardi_tracker._serialization import _stdlib_dumps
from tracardi_tracker._times import format_utc
from tracardi_tracker.importer import (
    FieldMapping,
    ImportConfigError,
    ImportSummary,
    Rows,
    _json,
    _mapping,
    _readers,
)
from tracardi_tracker.importer._mapping import FieldError, Mapper, parse_time, utc_text

Run = Callable[..., ImportSummary]
Files = Callable[..., Path]


# -- NaN and infinities -------------------------------------------------------------------------


@pytest.fixture(params=["orjson", "stdlib"])
def json_library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with orjson doing the JSON (when installed), then with the standard
    library decoding rows and encoding payloads, as without the ``fast`` extra."""
    if request.param == "orjson":
        if not _json.ACCELERATED:
            pytest.skip("orjson is not installed")
    else:

        def stdlib_decode(raw: bytes) -> Any:
            return _json.decode_text(raw.decode())

        monkeypatch.setattr(_readers, "fast_loads", stdlib_decode)
        monkeypatch.setattr(_readers, "decode", stdlib_decode)
        monkeypatch.setattr(_json, "encode", _stdlib_dumps)
    return str(request.param)


def rejects_of(path: Path) -> list[tuple[int, str | None]]:
    return [
        (item["line"], item["field"])
        for item in (json.loads(line) for line in path.read_text().splitlines())
    ]


def assert_no_null_went_out(capture: CapturingTransport) -> None:
    def walk(value: Any) -> None:
        assert value is not None, "a value went out as null"
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for event in capture.events:
        walk(event["properties"])
        walk(event.get("context", {}))


def test_nan_and_infinities_in_json_lines_are_rejected_naming_the_field_never_sent_as_null(
    json_library: str, jsonl: Files, run: Run, capture: CapturingTransport, tmp_path: Path
) -> None:
    def line(minutes: float, rest: str) -> str:  # JSON as an export might write it
        return '{"type": "view", "time": "' + at(minutes) + '", ' + rest + "}"

    path = jsonl(
        [
            json.dumps(row("view", 0, properties={"price": 1.5})),
            line(1, '"properties": {"price": NaN}'),
            line(2, '"context": {"screen": {"w": Infinity}}'),
            line(3, '"properties": {"sizes": [1, -1e400]}'),
            line(4, '"properties": {"big": 1e400}'),
            json.dumps(row("view", 5, properties={"price": 2.5})),
        ]
    )
    rejects = tmp_path / "rejects.jsonl"

    summary = run([path], rejects=rejects)

    assert (summary.sent, summary.rejected) == (2, 4)
    assert rejects_of(rejects) == [
        (2, "properties.price"),
        (3, "context.screen.w"),
        (4, "properties.sizes[1]"),
        (5, "properties.big"),
    ]
    reasons = [json.loads(line)["reason"] for line in rejects.read_text().splitlines()]
    assert reasons[0] == "NaN is not a finite number (Tracardi cannot store NaN or infinities)"
    assert reasons[3].startswith("1e400 is not a finite number")
    assert [event["properties"] for event in capture.events] == [{"price": 1.5}, {"price": 2.5}]
    assert_no_null_went_out(capture)


def test_an_integer_beyond_64_bits_is_sent_exact_beside_events_orjson_encodes(
    json_library: str, jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    big = 123456789012345678901234567890
    path = jsonl(
        [
            '{"type": "view", "time": "' + at(0) + '", "profile": "p-1", "properties": {"n": 1}}',
            '{"type": "view", "time": "' + at(1) + '", "profile": "p-1", '
            f'"properties": {{"n": {big}}}}}',
            '{"type": "view", "time": "' + at(2) + '", "profile": "p-1", "properties": {"n": 3}}',
        ]
    )

    summary = run([path])

    assert (summary.sent, summary.requests) == (3, 1)  # one payload, its events spliced
    assert [event["properties"]["n"] for event in capture.events] == [1, big, 3]


def test_nan_and_infinities_in_csv_cells_are_rejected_naming_the_column(
    json_library: str, run: Run, capture: CapturingTransport, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "type,time,profile_id,properties.price:float,properties.extra:json\n"
        f"view,{at(0)},p-1,1.5,{{}}\n"
        f"view,{at(1)},p-1,nan,{{}}\n"
        f"view,{at(2)},p-1,-inf,{{}}\n"
        f'view,{at(3)},p-1,2,"{{""a"": NaN}}"\n'
        f"view,{at(4)},p-1,3,{{}}\n"
    )
    rejects = tmp_path / "rejects.jsonl"

    summary = run([path], rejects=rejects)

    assert (summary.sent, summary.rejected) == (2, 3)
    assert rejects_of(rejects) == [
        (3, "properties.price"),
        (4, "properties.price"),
        (5, "properties.extra"),
    ]
    assert_no_null_went_out(capture)


def test_nan_inside_rows_in_memory_is_rejected_naming_the_field_while_nan_on_top_is_absent(
    json_library: str, run: Run, capture: CapturingTransport, tmp_path: Path
) -> None:
    rows = [
        row("view", 0, properties={"price": 1.5}, options=float("nan")),  # top level: absent
        row("view", 1, properties={"price": float("nan")}),
        row("view", 2, context={"list": [1.0, float("-inf")]}),
        row("view", 3, properties={"price": 3.0}),
    ]
    rejects = tmp_path / "rejects.jsonl"

    summary = run([Rows("part-1", rows)], rejects=rejects)

    assert (summary.sent, summary.rejected) == (2, 2)
    assert rejects_of(rejects) == [(2, "properties.price"), (3, "context.list[1]")]
    assert_no_null_went_out(capture)


def test_a_non_finite_number_is_found_wherever_it_is() -> None:
    assert _json.find_non_finite({"a": [1, {"b": float("inf")}]}) == ("a[1].b", float("inf"))
    assert _json.find_non_finite({"a": [1.5, "x", None, True]}) is None
    with pytest.raises(_json.NonFiniteError) as caught:
        _json.decode(b'{"a": {"b": [0, NaN]}}')
    assert caught.value.path == "a.b[1]"


# -- Python 3.10: no "Z" in fromisoformat, fractions of 3 or 6 digits, tomli ------------------


def fromisoformat_310(text: str) -> datetime:
    """What Python 3.10's ``datetime.fromisoformat`` accepts: no ``Z``, a fraction of 3 or 6
    digits only, ``T`` or any one character between date and time."""
    fraction = re.search(r"\d{2}:\d{2}:\d{2}[.,](\d+)", text)
    if text[-1:] in ("Z", "z") or (fraction and len(fraction.group(1)) not in (3, 6)):
        raise ValueError(f"Invalid isoformat string: {text!r}")
    return datetime.fromisoformat(text)


@pytest.fixture
def python_310(monkeypatch: pytest.MonkeyPatch) -> None:
    """Time parsing as on Python 3.10: its ``fromisoformat`` and the branch chosen for it."""
    monkeypatch.setattr(_mapping, "_fromisoformat", fromisoformat_310)
    monkeypatch.setattr(_mapping, "_from_zulu", _mapping._from_zulu_310)


TIMES = [
    ("2023-03-01T10:02:11Z", "2023-03-01T10:02:11+00:00"),
    ("2023-03-01T10:02:11.2Z", "2023-03-01T10:02:11.200000+00:00"),
    ("2023-03-01T10:02:11.25Z", "2023-03-01T10:02:11.250000+00:00"),
    ("2023-03-01T10:02:11.250Z", "2023-03-01T10:02:11.250000+00:00"),
    ("2023-03-01T10:02:11.2501Z", "2023-03-01T10:02:11.250100+00:00"),
    ("2023-03-01T10:02:11.123456Z", "2023-03-01T10:02:11.123456+00:00"),
    ("2023-03-01 10:02:11.5Z", "2023-03-01T10:02:11.500000+00:00"),
    ("2023-03-01T10:02:11.123456789Z", "2023-03-01T10:02:11.123456+00:00"),
    ("2023-03-01T12:02:11.5+02:00", "2023-03-01T10:02:11.500000+00:00"),
    ("2023-03-01T10:02:11,25Z", "2023-03-01T10:02:11.250000+00:00"),
]


@pytest.mark.parametrize(("text", "instant"), TIMES)
def test_times_read_the_same_with_python_310s_parser(
    python_310: None, text: str, instant: str
) -> None:
    _wire, moment = parse_time(text, "time.create", None)

    assert moment == datetime.fromisoformat(instant)
    assert moment == parse_time(text, "time.create", None)[1]


def test_the_310_parser_stand_in_refuses_what_310_refuses() -> None:
    # the fixture is only a test if it fails where Python 3.10 fails
    for text in ("2023-03-01T10:02:11Z", "2023-03-01T10:02:11.25+00:00"):
        with pytest.raises(ValueError, match="Invalid isoformat"):
            fromisoformat_310(text)


def test_a_row_maps_the_same_with_python_310s_parser(python_310: None) -> None:
    data = row("view", 0, time={"create": "2023-03-01T10:02:11.25Z", "insert": at(1)})

    mapped = Mapper(FieldMapping(), "s").map(b"raw", data)

    assert mapped.create == datetime(2023, 3, 1, 10, 2, 11, 250000, tzinfo=timezone.utc)
    assert mapped.event["time"] == {"create": "2023-03-01T10:02:11.25Z", "insert": at(1)}
    with pytest.raises(FieldError, match="not a valid date"):
        Mapper(FieldMapping(), "s").map(b"raw", row("view", 0, time="2023-02-30T10:00:00Z"))


def test_toml_mappings_are_read_with_tomli_where_tomllib_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text('[fields]\ntype = "event"\n')
    parser = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10: no such module
    monkeypatch.setitem(sys.modules, "tomli", parser)  # the package it came from

    assert FieldMapping.from_file(path).fields == {"type": "event"}
    path.write_text("fields = [")
    with pytest.raises(ImportConfigError, match="not valid TOML"):
        FieldMapping.from_file(path)


def test_toml_mappings_without_tomli_on_python_310_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text('[fields]\ntype = "event"\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)

    with pytest.raises(ImportConfigError, match="needs the 'tomli' package"):
        FieldMapping.from_file(path)


# -- the fast paths say what the general ones say -----------------------------------------------


def old_canonical(text: str) -> datetime | None:
    """The canonical-time test before the fast check: the regex, then ``fromisoformat``."""
    if _mapping._CANONICAL.match(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


def new_canonical(text: str) -> datetime | None:
    """The fast check as :func:`parse_time` makes it."""
    if (
        len(text) in _mapping._CANONICAL_LENGTHS
        and text[-1] == "Z"
        and text[4:20:3] in _mapping._CANONICAL_SHAPES
    ):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


def test_the_fast_canonical_time_check_accepts_exactly_what_the_regex_did() -> None:
    rng = random.Random(11)
    alphabet = "0123456789-:.,TZz +Wé٣\t"
    seeds = ["2023-03-01T10:02:11Z", "2023-03-01T10:02:11.250Z", "2023-12-31T23:59:59.999999Z"]
    cases = 0
    for seed in seeds:
        for _ in range(4000):
            chars = list(seed)
            for _ in range(rng.randint(1, 3)):
                where = rng.randrange(len(chars) + 1)
                action = rng.random()
                if action < 0.6 and where < len(chars):
                    chars[where] = rng.choice(alphabet)
                elif action < 0.8:
                    chars.insert(where, rng.choice(alphabet))
                elif where < len(chars):
                    del chars[where]
            text = "".join(chars)
            if text:
                cases += 1
                assert new_canonical(text) == old_canonical(text), text
    assert cases > 10_000


def test_utc_text_of_a_wire_time_is_what_format_utc_writes_for_it() -> None:
    rng = random.Random(5)
    wires = ["2023-03-01T10:00:00Z", "2023-03-01T10:00:00.0Z", "2023-03-01T10:00:00.000000Z"]
    for _ in range(2_000):
        moment = datetime.fromtimestamp(rng.uniform(1e9, 2e9), timezone.utc)
        digits = moment.strftime("%f")[: rng.randint(0, 6)]
        wires.append(moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + "Z")

    for wire in wires:
        assert utc_text(wire) == format_utc(parse_time(wire, "time.create", None)[1]), wire


def test_the_export_format_maps_the_same_with_or_without_its_fast_path() -> None:
    fast = Mapper(FieldMapping(), "s")
    generic = Mapper(FieldMapping(), "s", generic=True)
    rng = random.Random(5)
    values: list[Any] = [None, "", " ", "x", 7, 1.5, True, [], {}, ["a"], [""], [1], {"a": 1}]
    times: list[Any] = [at(1), "2023-03-01T10:00:00", "2023-03-01", 1677664800, "2023-13-01T0Z"]
    for _ in range(3000):
        data: dict[str, Any] = {}
        for key in ("type", "id", "properties", "context", "tags", "options"):
            if rng.random() < 0.7:
                data[key] = rng.choice([*values, "Page View"] if key == "type" else values)
        if rng.random() < 0.9:
            data["time"] = rng.choice([rng.choice(times), {"create": rng.choice(times)}])
            if rng.random() < 0.3 and isinstance(data["time"], dict):
                data["time"]["insert"] = rng.choice(times)
        for entity in ("profile", "session"):
            if rng.random() < 0.7:
                nested = {"id": rng.choice(["p-1", "", 5, None, [1]])}
                if rng.random() < 0.3:
                    nested["ids"] = rng.choice(values)
                if rng.random() < 0.3:
                    nested["metadata"] = rng.choice([{"create": rng.choice(times)}, "x"])
                data[entity] = rng.choice([nested, "p-2", 3])
        raw = json.dumps(data).encode()
        assert outcome(fast, raw, data) == outcome(generic, raw, data), data


def outcome(mapper: Mapper, raw: bytes, data: dict[str, Any]) -> Any:
    try:
        mapped = mapper.map(raw, json.loads(json.dumps(data)))
    except FieldError as error:
        return ("error", error.field, error.reason)
    return tuple(
        getattr(mapped, name)
        for name in (
            "event",
            "t",
            "create",
            "insert",
            "key",
            "profile_id",
            "profile_ids",
            "profile_meta",
            "session_id",
            "session_meta",
        )
    )


def test_integers_beyond_64_bits_arrive_exact_whichever_decoder_reads_them() -> None:
    from tracardi_tracker.importer import _json

    big = 123456789012345678901234567890
    row = b'{"n": 123456789012345678901234567890, "m": 18446744073709551616, "k": 7}'
    assert _json.decode(row) == {"n": big, "m": 2**64, "k": 7}
    try:
        fast = _json.fast_loads(row)
    except ValueError:
        fast = _json.decode(row)  # what the reader does when the quick path declines
    assert fast["n"] == big
    assert isinstance(fast["n"], int)
    assert _json.fast_loads(b'{"id": "12345", "n": 999999999999999999}') == {
        "id": "12345",
        "n": 10**18 - 1,
    }
    assert _json.decode(b'{"n": 9223372036854775808}') == {"n": 2**63}
