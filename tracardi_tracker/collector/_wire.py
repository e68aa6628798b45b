"""JSON on the wire: FastAPI's compact encoding, and the error answers Tracardi gives."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ._datetimes import format_datetime

__all__ = ["InjectedMetadata", "InjectedTime", "Rejection", "dumps", "error_body"]


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
