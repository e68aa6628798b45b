"""Stored events as a plain-text table for a terminal (``events`` and ``demo`` commands)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ._store import BadRequest, StoredEvent

__all__ = ["describe", "format_bad", "format_events", "page_url"]

_FRACTION = re.compile(r"\.\d+")
_HEADERS = ("TIME", "TYPE", "PROFILE", "SESSION", "PROPERTIES")


def _short_id(value: str | None, full: bool) -> str:
    if value is None:
        return "-"
    return value if full or len(value) <= 8 else value[:8]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def page_url(event: StoredEvent) -> str | None:
    """``context.page.url`` of the event, where trackers put a page view's address."""
    context = event.context
    page = context.get("page") if isinstance(context, dict) else None
    url = page.get("url") if isinstance(page, dict) else None
    return url if isinstance(url, str) else None


def describe(event: StoredEvent) -> str:
    """The event's properties as compact JSON, then its page URL if it has one."""
    properties = event.properties
    text = json.dumps(properties, ensure_ascii=False, sort_keys=True) if properties else ""
    url = page_url(event)
    if url:
        text = f"{text} page={url}" if text else f"page={url}"
    return text or "{}"


def format_events(
    events: Sequence[StoredEvent], *, width: int = 120, full_ids: bool = False
) -> str:
    """A table of ``events`` (time, type, profile, session, properties), ``width`` wide.

    The time is the event's ``create`` time, else its ``insert`` time. The last column shows
    the properties, followed by ``page=URL`` when the event names a page (page views).

    Ids are cut to their first 8 characters unless ``full_ids``; the properties column takes
    what is left of the width.
    """
    if not events:
        return "No events stored."
    rows = []
    for event in events:
        time = event.time
        when = (time.get("create") or time.get("insert") or "").replace("T", " ")
        when = _FRACTION.sub("", when)
        rows.append(
            (
                when,
                event.type,
                _short_id(event.profile_id, full_ids),
                _short_id(event.session_id, full_ids),
                describe(event),
            )
        )
    widths = [max(len(row[index]) for row in [_HEADERS, *rows]) for index in range(4)]
    used = sum(widths) + 2 * 4
    last = max(width - used, 20)
    lines = []
    for row in [_HEADERS, *rows]:
        cells = [cell.ljust(widths[index]) for index, cell in enumerate(row[:4])]
        lines.append("  ".join([*cells, _clip(row[4], last)]).rstrip())
    count = len(events)
    lines.append(f"{count} event{'s' if count != 1 else ''}")
    return "\n".join(lines)


def format_bad(bad: Sequence[BadRequest], *, width: int = 120) -> str:
    """One line per rejected request: status, request and reason."""
    lines = []
    for item in bad:
        line = f"{item.status}  {item.method} {item.path}  {item.reason}"
        lines.append(_clip(line.replace("\n", " "), width))
    return "\n".join(lines)
