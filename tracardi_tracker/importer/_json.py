"""JSON in and out of the importer: ``orjson`` when installed, the standard library otherwise.

Decoding every row and encoding every payload is most of an import's CPU; ``orjson``
(``pip install 'tracardi-tracker[fast]'``) does both several times faster. The result is the
same either way: whatever ``orjson`` refuses or cannot represent (NaN, integers beyond 64
bits, lone surrogates) goes through the standard library, whose rules and messages are the
importer's (NaN and infinities refused; payloads encoded by the SDK's own
:func:`~tracardi_tracker._serialization.dumps`).
"""

from __future__ import annotations

import json
from typing import Any

from .._serialization import _ORJSON, dumps

__all__ = ["ACCELERATED", "decode", "encode"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (Tracardi refuses NaN and infinities)")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


_FAST: Any = _ORJSON  # the SDK's own look-up of the ``fast`` extra
ACCELERATED = _FAST is not None
"""Whether ``orjson`` is doing the work."""


def decode_text(text: str) -> Any:
    """Decode JSON text with the standard library's rules (NaN and infinities refused).

    :raises ValueError: for anything that is not valid JSON.
    """
    return _DECODER.decode(text)


if _FAST is not None:
    _fast_loads = _FAST.loads
    _FastError = _FAST.JSONDecodeError

    def decode(raw: bytes) -> Any:
        """Decode one JSON document from UTF-8 bytes.

        :raises ValueError: (``UnicodeDecodeError`` for bad UTF-8) when it is not valid JSON.
        """
        try:
            return _fast_loads(raw)
        except _FastError:
            return _DECODER.decode(raw.decode())

else:

    def decode(raw: bytes) -> Any:
        """Decode one JSON document from UTF-8 bytes.

        :raises ValueError: (``UnicodeDecodeError`` for bad UTF-8) when it is not valid JSON.
        """
        return _DECODER.decode(raw.decode())


encode = dumps
"""Encode a payload as compact UTF-8 JSON: the SDK's own encoder, which uses ``orjson``
when installed."""
