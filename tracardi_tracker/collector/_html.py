"""The page at ``/``: what arrived, for a person to read (every value HTML-escaped)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from ._store import BadRequest, StoredEvent
from ._table import page_url

__all__ = ["render_page"]

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin-bottom: 0.2em; }
p.note { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin-bottom: 2em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.id { font-family: ui-monospace, monospace; font-size: 12px; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font-size: 12px; }
form { margin: 1em 0; }
.status { font-weight: bold; color: #a00; }
"""


def _cell(value: object, css: str | None = None) -> str:
    text = "" if value is None else str(value)
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{escape(text)}</td>"


def _when(event: StoredEvent) -> str:
    time = event.time
    value = time.get("create") or time.get("insert") or ""
    return value.replace("T", " ")


def _event_row(event: StoredEvent) -> str:
    properties = json.dumps(event.properties, indent=2, ensure_ascii=False, sort_keys=True)
    tags = ", ".join(str(tag) for tag in event.tags or [])
    return (
        "<tr>"
        + _cell(_when(event))
        + _cell(event.type)
        + _cell(event.profile_id, "id")
        + _cell(event.session_id, "id")
        + _cell(page_url(event))
        + f"<td><pre>{escape(properties)}</pre></td>"
        + _cell(tags)
        + _cell(event.received_at.replace("T", " "))
        + "</tr>"
    )


def _bad_row(item: BadRequest) -> str:
    return (
        "<tr>"
        + _cell(item.received_at.replace("T", " "))
        + _cell(f"{item.method} {item.path}")
        + _cell(item.status, "status")
        + _cell(item.reason)
        + _cell(item.user_agent)
        + "</tr>"
    )


def render_page(
    *,
    events: Sequence[StoredEvent],
    bad: Sequence[BadRequest],
    summary: Mapping[str, int],
    info: Mapping[str, Any],
    type_filter: str | None,
    profile_filter: str | None,
    limit: int,
) -> str:
    """The whole HTML page: newest events first, then the rejected requests."""
    filters = (("type", type_filter), ("profile", profile_filter))
    active = {key: value for key, value in filters if value}
    api = "/micro/good" + (f"?{urlencode(active)}" if active else "")
    event_rows = "".join(_event_row(event) for event in events) or (
        '<tr><td colspan="8">No events stored yet.</td></tr>'
    )
    bad_rows = "".join(_bad_row(item) for item in bad) or (
        '<tr><td colspan="5">No rejected requests.</td></tr>'
    )
    sources = info.get("sources")
    source_note = "any source id" if sources is None else ", ".join(sources) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Tracardi collector</title><style>{_STYLE}</style></head>
<body>
<h1>Local Tracardi collector</h1>
<p class="note">Answers like Tracardi {escape(str(info.get("tracardi_version")))}
({escape(str(info.get("imitates")))}); accepts {escape(source_note)}.
{summary.get("good", 0)} events stored, {summary.get("bad", 0)} requests rejected.
JSON: <a href="{escape(api)}">{escape(api)}</a>, <a href="/micro/bad">/micro/bad</a>,
<a href="/micro/all">/micro/all</a>.</p>
<form method="get" action="/">
<label>Type <input name="type" value="{escape(type_filter or "")}"></label>
<label>Profile <input name="profile" value="{escape(profile_filter or "")}"></label>
<button type="submit">Filter</button> <a href="/">Clear</a>
</form>
<h2>Events, newest first ({len(events)} shown, at most {limit})</h2>
<table>
<tr><th>Time</th><th>Type</th><th>Profile</th><th>Session</th><th>Page</th><th>Properties</th>
<th>Tags</th><th>Received</th></tr>
{event_rows}
</table>
<h2>Rejected requests</h2>
<table>
<tr><th>Received</th><th>Request</th><th>Status</th><th>Reason</th><th>User agent</th></tr>
{bad_rows}
</table>
</body></html>
"""
