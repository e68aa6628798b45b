"""Reading inputs: JSON Lines, CSV, gzip by magic bytes, standard input, rows in memory."""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tracardi_tracker.importer import ImportConfigError, Rows, _readers
from tracardi_tracker.importer._readers import Input, Record, csv_text, make_cast


def records(item: Input) -> list[Record]:
    return list(item.records({}))


def test_jsonl_rows_come_with_their_line_numbers_and_blank_lines_are_skipped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "a"}\n\n   \n{"type": "b"}\n', encoding="utf-8")

    found = [(line, data) for line, _raw, data, _error in records(Input(path))]

    assert found == [(1, {"type": "a"}), (4, {"type": "b"})]


def test_a_malformed_json_line_is_an_error_record_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "a"}\n{"type": \n[1, 2]\n{"x": NaN}\n{"type": "b"}\n')

    found = records(Input(path))

    assert [(line, data is None) for line, _raw, data, _error in found] == [
        (1, False),
        (2, True),
        (3, True),
        (4, True),
        (5, False),
    ]
    errors = {line: error for line, _raw, _data, error in found if error}
    assert "malformed JSON" in errors[2][1]
    assert errors[3][1] == "expected a JSON object, got an array"
    assert "NaN" in errors[4][1]
    assert found[1][1] == b'{"type": '


def test_gzip_is_recognised_by_its_magic_bytes_whatever_the_name(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"  # no .gz, yet compressed
    path.write_bytes(gzip.compress(b'{"type": "a"}\n{"type": "b"}\n'))

    found = [data for _line, _raw, data, _error in records(Input(path))]

    assert found == [{"type": "a"}, {"type": "b"}]


def test_a_truncated_gzip_file_ends_in_an_error_record(tmp_path: Path) -> None:
    whole = gzip.compress(b"".join(b'{"type": "a%d"}\n' % i for i in range(2000)))
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])

    found = records(Input(path))

    assert found[-1][0] == -1
    assert "cannot read further" in (found[-1][3] or ("", ""))[1]
    assert all(error is None for _line, _raw, _data, error in found[:-1])


def test_csv_columns_nest_by_dots_and_flat_aliases_name_event_fields(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "type,time,profile_id,session_id,properties.sku,properties.price:float,tags\n"
        'purchase,2023-03-01T10:00:00Z,p-1,,A-1,9.5,"a|b"\n',
        encoding="utf-8",
    )

    ((line, _raw, data, error),) = records(Input(path))

    assert error is None
    assert line == 2
    assert data == {
        "type": "purchase",
        "time": {"create": "2023-03-01T10:00:00Z"},
        "profile": {"id": "p-1"},
        "properties": {"sku": "A-1", "price": 9.5},
        "tags": ["a", "b"],
    }


def test_a_csv_cell_of_the_wrong_type_names_its_column(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("type,time,properties.qty:int\nbuy,2023-03-01T10:00:00Z,many\n")

    ((_line, _raw, data, error),) = records(Input(path))

    assert data is None
    assert error == ("properties.qty", "'many' is not an integer")


def test_a_csv_record_with_too_few_fields_is_an_error_and_multiline_cells_keep_line_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.csv"
    path.write_text('type,properties.note\na,"two\nlines"\nb\nc,x\n')

    found = [(line, data, error) for line, _raw, data, error in records(Input(path))]

    assert found == [
        (2, {"type": "a", "properties": {"note": "two\nlines"}}, None),
        (4, None, (None, "expected 2 fields, got 1")),
        (5, {"type": "c", "properties": {"note": "x"}}, None),
    ]


def test_overlapping_csv_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("type,properties,properties.sku\na,b,c\n")

    with pytest.raises(ImportConfigError, match="overlap"):
        records(Input(path))


def test_standard_input_is_read_with_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(b'{"type": "a"}\n')))
    monkeypatch.setattr(sys, "stdin", stdin)

    item = Input("-")

    assert item.is_stdin
    assert [data for _line, _raw, data, _error in records(item)] == [{"type": "a"}]


def test_rows_in_memory_are_read_like_json_lines_with_dates_converted() -> None:
    from datetime import datetime, timezone

    moment = datetime(2023, 3, 1, 10, 0, tzinfo=timezone.utc)
    rows: list[Any] = [{"type": "a", "time": moment}, "not a row"]
    item = Input(Rows("partition-0", rows))

    found = records(item)

    assert found[0][2] == {"type": "a", "time": "2023-03-01T10:00:00Z"}
    assert found[1][3] == (None, "expected a mapping (a dict)")


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ImportConfigError, match="no such file"):
        Input(tmp_path / "nope.jsonl")


def test_the_fingerprint_changes_with_the_content(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "a"}\n')
    before = Input(path).fingerprint()
    path.write_text('{"type": "b"}\n')

    assert Input(path).fingerprint() != before


def test_list_cells_are_json_arrays_or_separated_text() -> None:
    parse = make_cast("list", ";")

    assert parse('["a", "b"]') == ["a", "b"]
    assert parse("a; b;;") == ["a", "b"]


def test_a_csv_record_turns_back_into_csv_text_for_the_reject_file() -> None:
    assert csv_text(b"a\x1fb,c\x1f") == 'a,"b,c",'
    assert json.loads(json.dumps(csv_text(b"x"))) == "x"


def test_missing_values_of_data_frames_mean_absent() -> None:
    item = Input(Rows("frame", [{"type": "a", "session_id": float("nan"), "note": None}]))

    ((_line, raw, data, error),) = records(item)

    assert error is None
    assert data == {"type": "a"}
    assert raw == b'{"type":"a"}'


def test_jsonl_lines_are_the_same_whichever_block_they_fall_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_readers, "_BLOCK", 64)  # lines cross blocks and outgrow them
    long_text = "x" * 300
    path = tmp_path / "rows.jsonl"
    path.write_bytes(
        b'{"n":1}\r\n\n'
        + json.dumps({"n": 2, "text": long_text}).encode()
        + b'\n{"n":3,"big":12345678901234567890123}\n{"n":4}'  # no final line end
    )

    found = [(line, raw[-1:], data) for line, raw, data, _error in records(Input(path))]

    assert found == [
        (1, b"}", {"n": 1}),
        (3, b"}", {"n": 2, "text": long_text}),
        (4, b"}", {"n": 3, "big": 12345678901234567890123}),
        (5, b"}", {"n": 4}),
    ]


def test_a_big_integer_is_read_exactly_beside_rows_read_quickly(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [{"n": n} for n in range(50)] + [{"id": 98765432109876543210987}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    found = [data for _line, _raw, data, _error in records(Input(path))]

    assert found == rows
