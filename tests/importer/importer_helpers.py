"""Helpers shared by the importer's tests: times, rows and files of the export format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tracardi_tracker._retry import RetryPolicy

SOURCE_ID = "import-source"
ENDPOINT = "http://tracardi.test:8686"
T0 = datetime(2023, 3, 1, 10, 0, tzinfo=timezone.utc)
FAST_RETRY = RetryPolicy(attempts=2, initial_wait=0.0, max_wait=0.0, max_elapsed=5.0)


def at(minutes: float) -> str:
    """The time ``minutes`` after :data:`T0`, as the export format writes it."""
    moment = T0 + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def row(
    event_type: str = "page-view",
    minutes: float = 0.0,
    profile: str | None = "p-1",
    **extra: Any,
) -> dict[str, Any]:
    """One row of the JSON Lines export format."""
    data: dict[str, Any] = {"type": event_type, "time": {"create": at(minutes)}}
    if profile is not None:
        data["profile"] = {"id": profile}
    data.update(extra)
    return data


def write_jsonl(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    """Write rows (dicts, or raw lines as they are) as JSON Lines."""
    with path.open("w", encoding="utf-8") as file:
        for item in rows:
            file.write((item if isinstance(item, str) else json.dumps(item)) + "\n")
    return path
