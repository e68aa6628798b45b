"""JSON on the wire: FastAPI's compact encoding, and the error answers Tracardi gives.

Request bodies and stored events go through ``orjson`` when it is installed (the ``fast``
extra), several times faster than the standard library, with the same meaning. ``orjson``
refuses what it does not read as the standard library does (``NaN``, lone surrogates, a BOM,
UTF-16...), which the standard library then reads, except for two things it accepts:
integers beyond 64 bits, which it reads as floats, and nesting deeper than the standard
library allows (which answers 400). Where that could show, :class:`Inexact` is raised before
anything is stored and the request is read again by the standard library, whose reading is
the one that counts: :func:`encode_events` notices such floats among the events it stores and
nesting ``orjson`` will not write back, :func:`check_writable` does the same for the rest of
a body, and an error answer is always made from the standard library's reading.
"""

from __future__ import annotations

import json
import json.encoder
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from .._serialization import _ORJSON, has_long_digit_run
from ._datetimes import format_datetime

__all__ = [
    "ACCELERATED",
    "Inexact",
    "InjectedMetadata",
    "InjectedTime",
    "Rejection",
    "check_writable",
    "dumps",
    "encode_events",
    "error_body",
    "parse_body",
]


ACCELERATED = _ORJSON is not None
"""Whether ``orjson`` parses bodies and encodes stored events."""

"""19 digits in a row: an integer literal this long may not fit in 64 bits, where ``orjson``
turns it into a float and the standard library keeps it exact."""
_BIG_FLOAT = re.compile(rb"[0-9]e\+(?:1[89]|[2-9][0-9]|[0-9]{3})(?![0-9])").search
"""A float of at least 1e18 as ``orjson`` writes it: what an integer beyond 64 bits became."""
_EXPONENT_MARK: bytes | None = (
    b"e+" if _ORJSON is not None and _ORJSON.dumps(1e20) == b"1e+20" else None
)
"""What every such float contains, when this ``orjson`` writes them as expected; otherwise
each body is checked for long digit runs before ``orjson`` reads it."""


class Inexact(Exception):
    """``orjson`` may have read a request differently from the standard library.

    Raised before anything is stored; the caller reads the request again with
    ``parse_body(..., fast=False)``.
    """


class InjectedTime:
    """A ``Time(insert=now)`` object the server put into the payload before validating it.

    Shown in a validation error's ``input`` the way FastAPI encodes a pydantic model.
    """

    __slots__ = ("insert",)

    def __init__(self, insert: datetime) -> None:
        self.insert = insert

    def to_json(self) -> dict[str, Any]:
        """The model as FastAPI's ``jsonable_encoder`` writes it."""
        return {"insert": format_datetime(self.insert), "create": None, "update": None}


class InjectedMetadata:
    """The ``EventPayloadMetadata`` Tracardi always puts into a tracker payload."""

    __slots__ = ("time",)

    def __init__(self, insert: datetime) -> None:
        self.time = InjectedTime(insert)

    def to_json(self) -> dict[str, Any]:
        """The model as FastAPI's ``jsonable_encoder`` writes it."""
        return {"time": self.time.to_json(), "ip": None, "status": None}


def _default(value: object) -> Any:
    if isinstance(value, (InjectedTime, InjectedMetadata)):
        return value.to_json()
    if isinstance(value, datetime):
        return value.isoformat()  # a bare datetime: jsonable_encoder uses isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: object) -> bytes:
    """Encode ``value`` as Starlette's ``JSONResponse`` does (compact, UTF-8, no NaN)."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default
    ).encode("utf-8")


def error_body(detail: object) -> bytes:
    """The ``{"detail": ...}`` body of every error answer."""
    return dumps({"detail": detail})


class Rejection(Exception):
    """An answer other than success, decided while handling ``/track``.

    ``detail`` is what goes under ``"detail"`` in the body (a string or FastAPI's error list);
    ``reason`` is a one-line summary kept with the rejected request for inspection.
    """

    def __init__(self, status: int, detail: object, reason: str | None = None) -> None:
        super().__init__(reason or str(detail))
        self.status = status
        self.detail = detail
        self.reason = reason or (detail if isinstance(detail, str) else f"HTTP {status}")

    def body(self) -> bytes:
        """The JSON body to answer with."""
        return error_body(self.detail)


def _stdlib_event_encoder() -> Callable[[object], str]:
    """A compact JSON encoder for stored events, reusing CPython's C encoder when present."""
    fallback = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return fallback
    chunks = make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def encode(value: object) -> str:
        return "".join(chunks(value, 0))

    return encode if encode({"a": [1, "é"]}) == fallback({"a": [1, "é"]}) else fallback


_encode_stdlib = _stdlib_event_encoder()


def parse_body(body: bytes, *, fast: bool = ACCELERATED) -> tuple[Any, bool]:
    """Parse a JSON request body as ``json.loads`` does (FastAPI's parser).

    With ``fast``, ``orjson`` reads it when it can: the same value, except that integers
    beyond 64 bits become floats (see the module docstring).

    :returns: the value, and whether ``orjson`` read it (then every string in it is valid
        Unicode and every number finite, so :func:`encode_events` may use ``orjson`` too).
    :raises json.JSONDecodeError: (and ``UnicodeDecodeError``, ``RecursionError``...) as
        ``json.loads`` raises them: whatever ``orjson`` refuses is read again by the standard
        library, which accepts it (``NaN``, UTF-16, a BOM) or words the error.
    """
    if fast and _ORJSON is not None:
        try:
            value = _ORJSON.loads(body)
        except _ORJSON.JSONDecodeError:
            pass
        else:
            if _EXPONENT_MARK is not None or not has_long_digit_run(body):
                return value, True
    return json.loads(body), False


def check_writable(value: object, by_orjson: bool) -> None:
    """Check that ``orjson`` writes ``value`` back, if it read it.

    :raises Inexact: when it cannot: nesting deeper than it writes (255 levels) may be deeper
        than the standard library reads (about 1,000 levels, less what the stack holds).
    """
    if by_orjson and _ORJSON is not None:
        try:
            _ORJSON.dumps(value)
        except _ORJSON.JSONEncodeError:
            raise Inexact("nesting deeper than orjson writes") from None


def encode_events(payloads: Sequence[dict[str, Any]], by_orjson: bool) -> list[str]:
    """Stored events as compact JSON text, one per payload.

    ``by_orjson`` says the payloads came from :func:`parse_body` with ``orjson`` (plus plain
    strings and ``None``): ``orjson`` encodes them too, with the same meaning as the standard
    library.

    :raises Inexact: when ``orjson`` read a body differently, or cannot write it (nesting
        deeper than it allows); the caller then reads the body again with
        ``parse_body(..., fast=False)``, and these payloads are the standard library's.
    """
    if not payloads:
        return []
    if by_orjson and _ORJSON is not None:
        try:
            encoded = list(map(_ORJSON.dumps, payloads))
        except _ORJSON.JSONEncodeError:
            raise Inexact("orjson cannot write an event") from None
        if (
            _EXPONENT_MARK is not None
            and b"+" in b"".join(encoded)  # rare: a quick look first
            and any(_BIG_FLOAT(text) for text in encoded if _EXPONENT_MARK in text)
        ):
            raise Inexact("an integer beyond 64 bits, or a float from 1e18")
        return list(map(bytes.decode, encoded))
    return list(map(_encode_stdlib, payloads))
