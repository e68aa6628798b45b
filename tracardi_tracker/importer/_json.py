"""JSON in and out of the importer: ``orjson`` when installed, the standard library otherwise.

Decoding every row and encoding every payload is most of an import's CPU; ``orjson``
(``pip install 'tracardi-tracker[fast]'``) does both several times faster. The result is the
same either way: whatever ``orjson`` refuses or cannot represent (NaN, infinities, integers
beyond 64 bits, lone surrogates) goes through the standard library, whose rules and
messages are the importer's.

**No NaN or infinity ever reaches** :func:`encode` (``orjson`` would write it as ``null``,
the standard library would refuse the whole payload): every value of an event comes out
of :func:`decode` (JSON Lines, rows in memory after their own check) or a CSV cell reader
that refuses them too, and :func:`decode` refuses ``NaN``, ``Infinity`` and numbers too
large for a float (``1e400``) with a :class:`NonFiniteError` naming where they are, so the
row is rejected with its field.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable, Mapping
from typing import Any

from .._serialization import _ORJSON, dumps, has_long_digit_run

__all__ = [
    "ACCELERATED",
    "NonFiniteError",
    "decode",
    "decode_text",
    "encode",
    "fast_loads",
    "find_non_finite",
    "loads_checked_block",
    "quick_encoder",
]


class NonFiniteError(ValueError):
    """A NaN or infinite number in a row; ``path`` names where (``properties.price``,
    ``tags[2]``; ``None`` when unknown) and ``reason`` says what."""

    def __init__(self, path: str | None, shown: str) -> None:
        reason = f"{shown} is not a finite number (Tracardi cannot store NaN or infinities)"
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


class _Refused(ValueError):
    """Raised inside the standard decoder at a non-finite number (where is found after)."""


class _Marker:
    """Stands for a non-finite number while :func:`_locate` looks for it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _refuse_constant(name: str) -> Any:
    raise _Refused(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan; a literal cannot be nan itself
        raise _Refused(text)
    return value


def _mark_float(text: str) -> Any:
    value = float(text)
    return value if value - value == 0.0 else _Marker(text)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_LOCATOR = json.JSONDecoder(parse_constant=_Marker, parse_float=_mark_float)


def find_non_finite(value: Any, path: str = "") -> tuple[str, Any] | None:
    """The first NaN or infinite number in ``value`` (dicts, lists, tuples, sets), as
    ``(path, value)``; ``None`` when there is none. ``path`` is dotted with ``[index]``."""
    if type(value) is float:
        return None if value - value == 0.0 else (path, value)
    if isinstance(value, _Marker):
        return (path, value.text)
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = find_non_finite(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            found = find_non_finite(item, f"{path}[{index}]")
            if found is not None:
                return found
    elif isinstance(value, float):  # a float subclass (numpy.float64)
        return None if value - value == 0.0 else (path, value)
    elif isinstance(value, decimal.Decimal) and not value.is_finite():
        return (path, value)
    return None


def _locate(text: str) -> NonFiniteError:
    found = find_non_finite(_LOCATOR.decode(text))
    if found is None:  # pragma: no cover - the locator sees what the decoder refused
        return NonFiniteError(None, "a number")
    path, shown = found
    return NonFiniteError(path or None, str(shown))


_FAST: Any = _ORJSON  # the SDK's own look-up of the ``fast`` extra
ACCELERATED = _FAST is not None
"""Whether ``orjson`` is doing the work."""


def decode_text(text: str) -> Any:
    """Decode JSON text with the standard library's rules, NaN and infinities refused.

    :raises NonFiniteError: for ``NaN``, ``Infinity`` or a number beyond a float's range.
    :raises ValueError: for anything else that is not valid JSON.
    """
    try:
        return _DECODER.decode(text)
    except _Refused:
        raise _locate(text) from None


class _LongInteger(ValueError):
    """The document may hold an integer ``orjson`` would round."""


if _FAST is not None:
    _orjson_loads = _FAST.loads
    _FastError = _FAST.JSONDecodeError
    _long_digits = has_long_digit_run

    def decode(raw: bytes) -> Any:
        """Decode one JSON document from UTF-8 bytes.

        :raises NonFiniteError: for NaN, infinities and numbers beyond a float's range.
        :raises ValueError: (``UnicodeDecodeError`` for bad UTF-8) when it is not valid JSON.
        """
        if not _long_digits(raw):
            try:
                return _orjson_loads(raw)
            except _FastError:
                pass
        return decode_text(raw.decode())

    def _fast_loads(raw: bytes) -> Any:
        if _long_digits(raw):
            raise _LongInteger("a long run of digits: read by decode()")
        return _orjson_loads(raw)

    fast_loads: Callable[[bytes], Any] = _fast_loads
    """The quickest decoder, for the common case: raises ``ValueError`` for anything it
    does not read exactly (the caller then asks :func:`decode`, which says why, or reads
    it)."""

    loads_checked_block: Callable[[bytes], Any] = _orjson_loads
    """:func:`fast_loads` for a document already known to hold no run of 19 digits
    (``has_long_digit_run`` was false for a block of lines holding it)."""

else:

    def decode(raw: bytes) -> Any:
        """Decode one JSON document from UTF-8 bytes.

        :raises NonFiniteError: for NaN, infinities and numbers beyond a float's range.
        :raises ValueError: (``UnicodeDecodeError`` for bad UTF-8) when it is not valid JSON.
        """
        return decode_text(raw.decode())

    fast_loads = decode
    loads_checked_block = decode


encode: Callable[[Any], bytes] = dumps
"""Encode a payload as compact UTF-8 JSON: the SDK's own encoder, which uses ``orjson``
when installed (looked up at each call, so it can be swapped)."""


def quick_encoder() -> Callable[[Any], bytes]:
    """The cheapest call that does what :data:`encode` does now, for a loop that encodes
    every event: ``orjson.dumps`` itself when that is what :data:`encode` would call (the
    caller catches its ``TypeError`` and asks :data:`encode`, as :data:`encode` does
    inside), else :data:`encode`."""
    if encode is dumps and _FAST is not None:
        quick: Callable[[Any], bytes] = _FAST.dumps
        return quick
    return encode
