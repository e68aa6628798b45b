"""Reading inputs as a stream of records: JSON Lines, CSV, gzip, standard input, rows in memory.

Every reader yields :data:`Record` tuples, one per row, in file order, holding nothing but
the current row: memory does not grow with the file. A row that cannot be read (bad JSON,
wrong number of CSV fields, a cell that is not the declared type) is a record carrying an
error, not an exception, so the import goes on.

Compression is recognised by its magic bytes (``1f 8b``), whatever the file is called; the
format by the name (``.jsonl``, ``.ndjson``, ``.json``, ``.csv``, each optionally ``.gz``) or,
failing that, by the first byte (``{`` is JSON Lines, anything else CSV).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import decimal
import enum
import gzip
import hashlib
import io
import json
import math
import os
import sys
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import attrs

from .._serialization import has_long_digit_run
from .._times import format_utc
from ._errors import ImportConfigError
from ._json import (
    NonFiniteError,
    decode,
    decode_text,
    fast_loads,
    find_non_finite,
    loads_checked_block,
)

__all__ = [
    "CAST_NAMES",
    "FORMATS",
    "Input",
    "Record",
    "Rows",
    "make_cast",
    "open_inputs",
]

Record = tuple[int, bytes, "dict[str, Any] | None", "tuple[str | None, str] | None"]
"""``(line, raw, data, error)``: the 1-based line the row starts on, the row's bytes as read
(what event ids are derived from), the row as a JSON object, or ``None`` and an error
``(field, reason)``."""

FORMATS = ("jsonl", "csv")
"""The input formats the importer reads."""

_GZIP_MAGIC = b"\x1f\x8b"
_FINGERPRINT_BYTES = 64 * 1024
_CSV_ALIASES = {
    "time": "time.create",
    "profile_id": "profile.id",
    "profile_ids": "profile.ids",
    "session_id": "session.id",
    "event_id": "id",
}
"""Flat CSV column names and the event fields they stand for."""
_LIST_COLUMNS = frozenset({"tags", "profile.ids"})


@attrs.frozen
class Rows:
    """Rows already in memory, as an input: a name and an iterable of dicts.

    For a distributed job (a Spark or Dask partition, a database cursor): each dict is one
    row of the export format, exactly like one JSON line. ``name`` identifies the input in
    the checkpoint and in messages, so give each partition its own stable name; a resumed
    import iterates the rows again and expects them in the same order.
    """

    name: str
    rows: Iterable[Mapping[str, Any]] = attrs.field(repr=False)


class Input:
    """One input: a file (plain or gzip), standard input (``-``) or :class:`Rows`.

    Knows its name, its size on disk (for progress), a fingerprint (to tell a checkpoint
    whether the file is the one it was made for) and how to read itself as records.
    """

    def __init__(self, source: str | os.PathLike[str] | Rows, fmt: str | None = None) -> None:
        self.rows: Rows | None = None
        self.path: Path | None = None
        self._size: int | None = None
        if isinstance(source, Rows):
            self.name = source.name
            self.rows = source
        elif str(source) == "-":
            self.name = "-"
        else:
            self.path = Path(source)
            self.name = str(source)
            if not self.path.is_file():
                raise ImportConfigError(f"{self.name}: no such file")
            self._size = self.path.stat().st_size
        if fmt is not None and fmt not in FORMATS:
            raise ImportConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.detected_format: str | None = "jsonl" if self.rows is not None else fmt
        """The format being read (known once reading has started)."""
        self.columns: list[str] | None = None
        """A CSV input's column names (known once its header is read)."""
        self._raw: IO[bytes] | None = None
        self._finished = False

    @property
    def is_stdin(self) -> bool:
        """Whether this is standard input (which cannot be read twice, so cannot resume)."""
        return self.path is None and self.rows is None

    @property
    def size(self) -> int | None:
        """Bytes on disk (compressed size for gzip), ``None`` when unknown."""
        return self._size

    @property
    def bytes_read(self) -> int:
        """How far reading has got, in bytes on disk (compressed bytes for gzip)."""
        if self._finished:
            return self.size or 0
        raw = self._raw
        if raw is None or raw.closed:
            return 0
        try:
            return raw.tell()
        except (OSError, ValueError):
            return 0

    def fingerprint(self) -> str:
        """What identifies this input's content: name, size and a hash of both ends."""
        if self.rows is not None:
            return f"rows:{self.name}"
        if self.path is None:
            return "stdin"
        size = self.path.stat().st_size
        digest = hashlib.sha256()
        with self.path.open("rb") as file:
            digest.update(file.read(_FINGERPRINT_BYTES))
            if size > _FINGERPRINT_BYTES:
                file.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
                digest.update(file.read(_FINGERPRINT_BYTES))
        return f"{self.path.name}:{size}:{digest.hexdigest()[:16]}"

    def records(
        self, casts: Mapping[str, Callable[[str], Any]], *, list_separator: str = "|"
    ) -> Iterator[Record]:
        """Yield the input's rows as records, in order; closes the file at the end."""
        if self.rows is not None:
            yield from _rows(self.rows.rows)
            return
        raw: IO[bytes] = self.path.open("rb") if self.path is not None else sys.stdin.buffer
        self._raw = raw
        try:
            buffered: io.BufferedReader = (
                raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(Any, raw))
            )
            stream: IO[bytes] = buffered
            if buffered.peek(2)[:2] == _GZIP_MAGIC:
                stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
            fmt = self.fmt or self._guess_format(stream)
            self.detected_format = fmt
            if fmt == "csv":
                yield from _csv(self.name, stream, casts, list_separator, self._set_columns)
            else:
                yield from _jsonl(stream)
        except (OSError, EOFError, zlib.error) as error:
            # a truncated or corrupt gzip stream, a read error: the rest of this input is lost
            yield (-1, b"", None, (None, f"cannot read further: {error}"))
        finally:
            self._finished = True
            if self.path is not None:
                raw.close()

    def _set_columns(self, columns: list[str]) -> None:
        self.columns = columns

    def _guess_format(self, stream: IO[bytes]) -> str:
        name = self.name.lower()
        if name.endswith(".gz"):
            name = name[:-3]
        if name.endswith((".jsonl", ".ndjson", ".json")):
            return "jsonl"
        if name.endswith(".csv"):
            return "csv"
        head = _peek(stream, 64).lstrip(b"\xef\xbb\xbf \t\r\n")
        return "jsonl" if head.startswith(b"{") else "csv"


def _peek(stream: IO[bytes], count: int) -> bytes:
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return bytes(peek(count))[:count]
    return b""


def open_inputs(
    sources: Sequence[str | os.PathLike[str] | Rows], fmt: str | None = None
) -> list[Input]:
    """Check the inputs exist (before anything is sent) and wrap them as :class:`Input`."""
    if isinstance(sources, (str, os.PathLike, Rows)):
        raise ImportConfigError("sources must be a list of inputs, not a single one")
    inputs = [Input(source, fmt) for source in sources]
    if not inputs:
        raise ImportConfigError("no input given")
    if sum(1 for item in inputs if item.is_stdin) > 1:
        raise ImportConfigError("standard input ('-') can be read only once")
    return inputs


# -- JSON Lines -----------------------------------------------------------------------------


_BLOCK = 256 * 1024
"""Bytes of JSON Lines read at a time."""


def _lines(stream: IO[bytes]) -> Iterator[tuple[list[bytes], bool]]:
    """The lines of ``stream`` (without their ends, ``\\n`` or ``\\r\\n``), a block of
    whole lines at a time, and whether the block may hold an integer ``orjson`` would round
    (see :func:`fast_loads`): both checked for the block at once, which costs a fraction of
    checking each line."""
    rest = b""
    while True:
        block = stream.read(_BLOCK)
        if not block:
            if rest:
                yield [rest.rstrip(b"\r")], has_long_digit_run(rest)
            return
        if rest:
            block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:  # no line ends in it yet
            rest = block
            continue
        rest = block[cut:]
        whole = block[:cut]
        lines = whole.split(b"\n")
        lines.pop()  # (empty: what follows the last line end)
        if b"\r" in whole:  # (looked for in the block: once a line costs more)
            lines = [line.rstrip(b"\r") for line in lines]
        yield lines, has_long_digit_run(whole)


def _jsonl(stream: IO[bytes]) -> Iterator[Record]:
    number = 0
    for lines, long_digits in _lines(stream):
        loads = fast_loads if long_digits else loads_checked_block
        for raw in lines:
            number += 1
            try:  # the common case: one object, decoded by orjson
                data = loads(raw)
            except ValueError:
                pass
            else:
                if type(data) is dict:
                    yield (number, raw, data, None)
                    continue
            record = _jsonl_other(number, raw)
            if record is not None:
                yield record


def _jsonl_other(number: int, raw: bytes) -> Record | None:
    """The record of a line the quick decoder did not take as an object (``None`` for a
    blank line): a byte order mark, an error to describe, or a row only the standard
    library reads (integers beyond 64 bits, lone surrogates)."""
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw or raw.isspace():
        return None
    try:
        data = decode(raw)
    except UnicodeDecodeError as error:
        return (number, raw, None, (None, f"not UTF-8 text ({error.reason} at byte {error.start})"))
    except NonFiniteError as error:
        return (number, raw, None, (error.path, error.reason))
    except ValueError as error:
        return (number, raw, None, (None, f"malformed JSON: {_json_reason(error)}"))
    if type(data) is not dict:
        return (number, raw, None, (None, f"expected a JSON object, got {_kind(data)}"))
    return (number, raw, data, None)


def _json_reason(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    return str(error)


def _kind(value: object) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


# -- CSV --------------------------------------------------------------------------------------


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1", "t", "y"):
        return True
    if lowered in ("false", "no", "0", "f", "n"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false, yes/no, 1/0)")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _parse_json(text: str) -> Any:
    try:
        return decode_text(text)
    except NonFiniteError as error:
        raise ValueError(f"{text!r} is not JSON Tracardi accepts ({error})") from None
    except ValueError as error:
        raise ValueError(f"{text!r} is not JSON ({_json_reason(error)})") from None


def make_cast(name: str, list_separator: str = "|") -> Callable[[str], Any]:
    """The function reading a CSV cell as type ``name`` (see :data:`CAST_NAMES`)."""
    if name == "list":

        def parse_list(text: str) -> Any:
            stripped = text.strip()
            if stripped.startswith("["):
                return _parse_json(stripped)
            return [item.strip() for item in stripped.split(list_separator) if item.strip()]

        return parse_list
    casts: dict[str, Callable[[str], Any]] = {
        "str": str,
        "int": _parse_int,
        "float": _parse_float,
        "bool": _parse_bool,
        "json": _parse_json,
    }
    try:
        return casts[name]
    except KeyError:
        raise ImportConfigError(
            f"unknown column type {name!r}; choose one of {', '.join(CAST_NAMES)}"
        ) from None


CAST_NAMES = ("str", "int", "float", "bool", "json", "list")
"""Types a CSV column can be read as: in a header (``properties.price:float``) or a mapping."""


_Column = tuple[str, tuple[str, ...], "Callable[[str], Any] | None"]


def _compile_header(
    name: str,
    header: list[str],
    casts: Mapping[str, Callable[[str], Any]],
    list_separator: str,
) -> list[_Column]:
    columns: list[_Column] = []
    seen: dict[tuple[str, ...], str] = {}
    for index, title in enumerate(header):
        label = title.strip()
        if index == 0:
            label = label.lstrip("\ufeff")
        if not label:
            raise ImportConfigError(f"{name}: column {index + 1} of the header has no name")
        cast: Callable[[str], Any] | None = None
        base, colon, type_name = label.rpartition(":")
        if colon and type_name in CAST_NAMES and base:
            label = base
            cast = make_cast(type_name, list_separator)
        field = _CSV_ALIASES.get(label, label)
        if label in casts:
            cast = casts[label]
        elif field in casts:
            cast = casts[field]
        elif cast is None and field in _LIST_COLUMNS:
            cast = make_cast("list", list_separator)
        path = tuple(field.split("."))
        if any(not part for part in path):
            raise ImportConfigError(f"{name}: column {label!r} has an empty part in its name")
        for other_path, other in seen.items():
            shorter, longer = sorted((path, other_path), key=len)
            if longer[: len(shorter)] == shorter:
                raise ImportConfigError(
                    f"{name}: columns {other!r} and {label!r} overlap (one is inside the other)"
                )
        seen[path] = label
        columns.append((label, path, cast))
    return columns


def _csv(
    name: str,
    stream: IO[bytes],
    casts: Mapping[str, Callable[[str], Any]],
    list_separator: str,
    on_header: Callable[[list[str]], None] | None = None,
) -> Iterator[Record]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _csv_records(name, text, casts, list_separator, on_header)
    finally:
        with contextlib.suppress(ValueError):  # the caller closes (or keeps) the stream
            text.detach()


def _csv_records(
    name: str,
    text: IO[str],
    casts: Mapping[str, Callable[[str], Any]],
    list_separator: str,
    on_header: Callable[[list[str]], None] | None,
) -> Iterator[Record]:
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except (csv.Error, UnicodeDecodeError) as error:
        yield (1, b"", None, (None, f"unreadable CSV header: {error}"))
        return
    columns = _compile_header(name, header, casts, list_separator)
    if on_header is not None:
        on_header([".".join(path) for _, path, _ in columns])
    width = len(columns)
    previous = reader.line_num
    while True:
        start = previous + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            previous = reader.line_num
            yield (start, b"", None, (None, f"malformed CSV: {error}"))
            continue
        except UnicodeDecodeError as error:
            yield (
                start,
                b"",
                None,
                (None, f"not UTF-8 text ({error.reason}); rest of file skipped"),
            )
            return
        previous = reader.line_num
        if not cells:
            continue
        raw = "\x1f".join(cells).encode()
        if len(cells) != width:
            if len(cells) == 1 and not cells[0].strip():
                continue
            yield (start, raw, None, (None, f"expected {width} fields, got {len(cells)}"))
            continue
        row: dict[str, Any] = {}
        error_at: tuple[str | None, str] | None = None
        for (label, path, parse), cell in zip(columns, cells, strict=True):
            if cell == "":
                continue
            if parse is None:
                value: Any = cell
            else:
                try:
                    value = parse(cell)
                except ValueError as error:
                    error_at = (label, str(error))
                    break
            if len(path) == 1:
                row[path[0]] = value
            else:
                target = row
                for part in path[:-1]:
                    target = target.setdefault(part, {})
                target[path[-1]] = value
        if error_at is not None:
            yield (start, raw, None, error_at)
        else:
            yield (start, raw, row, None)


def csv_text(raw: bytes) -> str:
    """Turn the raw bytes of a CSV record back into one CSV line (for the reject file)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(raw.decode("utf-8", "replace").split("\x1f"))
    return out.getvalue()


# -- rows in memory ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``json.dumps``'s fallback for the values a database or a data frame hands over."""
    if isinstance(value, _dt.datetime):
        if value != value:  # pandas' NaT
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            return value.isoformat()  # no offset: refused later unless a time zone is given
        return format_utc(value.astimezone(_dt.timezone.utc))
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    as_dict = getattr(value, "asDict", None)  # a pyspark Row
    if callable(as_dict):
        return as_dict()
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item):
        plain = item()
        if isinstance(plain, (int, float, str, bool)):
            return plain
    raise TypeError(f"{type(value).__name__} values cannot be sent to Tracardi")


def _rows(rows: Iterable[Mapping[str, Any]]) -> Iterator[Record]:
    for number, row in enumerate(rows, 1):
        if not isinstance(row, Mapping):
            converted = _plain_row(row)
            if converted is None:
                yield (number, repr(row).encode(), None, (None, "expected a mapping (a dict)"))
                continue
            row = converted
        row = {key: value for key, value in row.items() if not _absent(value)}
        try:
            text = json.dumps(
                row,
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
                default=_plain,
            )
        except (TypeError, ValueError) as error:
            found = find_non_finite(row) if isinstance(error, ValueError) else None
            if found is not None:  # NaN and infinities inside a value (at the top: absent)
                problem = NonFiniteError(found[0], repr(found[1]))
                yield (number, repr(dict(row)).encode(), None, (problem.path, problem.reason))
            else:
                yield (number, repr(dict(row)).encode(), None, (None, str(error)))
            continue
        raw = text.encode()
        yield (number, raw, decode(raw), None)


def _absent(value: object) -> bool:
    """``None``, NaN and NaT: how data frames say a value is missing."""
    return value is None or (isinstance(value, (float, _dt.datetime)) and value != value)


def _plain_row(row: object) -> Mapping[str, Any] | None:
    as_dict = getattr(row, "asDict", None)
    if callable(as_dict):
        value = as_dict(recursive=True)
        return value if isinstance(value, Mapping) else None
    return None
