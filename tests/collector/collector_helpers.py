"""Shared helpers of the collector tests: sending requests and matching answers."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import requests

from tracardi_tracker.collector import Collector, StoredEvent

EXCHANGES = Path(__file__).parent / "exchanges"
SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
SESSION = "5d7c1a7e-0f7b-4b5e-9a43-2f7e1b1c9d01"
USER_AGENT = "acme-tracker-python/0.1"
VERSIONS = ("0.8", "0.9", "1.0")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?(Z|[+-]\d{2}:\d{2})")


def is_uuid4(value: object) -> bool:
    """Whether ``value`` is a lower-case uuid4 string."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def resolve(expected: Any, actual: Any, names: dict[str, Any] | None = None) -> Any:
    """``expected`` with its placeholders replaced by ``actual``'s values where they fit.

    Placeholders: ``<uuid>`` (a uuid4), ``<uuid-not:X>`` (a uuid4 other than X), ``<datetime>``
    (ISO 8601 with ``Z`` or an offset), ``<prefix>TEXT`` (a string starting with TEXT), and any
    key of ``names``. A test then asserts ``resolve(expected, actual) == actual``.
    """
    names = names or {}
    if isinstance(expected, str):
        if expected in names:
            return names[expected]
        if expected == "<uuid>":
            return actual if is_uuid4(actual) else expected
        if expected.startswith("<uuid-not:"):
            other = expected[len("<uuid-not:") : -1]
            return actual if is_uuid4(actual) and actual != other else expected
        if expected == "<datetime>":
            ok = isinstance(actual, str) and _DATETIME.fullmatch(actual) is not None
            return actual if ok else expected
        if expected.startswith("<prefix>"):
            prefix = expected[len("<prefix>") :]
            ok = isinstance(actual, str) and actual.startswith(prefix)
            return actual if ok else expected
        return expected
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {key: resolve(value, actual.get(key), names) for key, value in expected.items()}
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [resolve(e, a, names) for e, a in zip(expected, actual, strict=True)]
    return expected


def send(
    collector: Collector,
    body: Any = None,
    *,
    method: str = "POST",
    query: str = "",
    headers: dict[str, str] | None = None,
    raw: bytes | str | None = None,
    session: requests.Session | None = None,
) -> requests.Response:
    """Send one request to ``collector``'s ``/track`` (JSON ``body`` unless ``raw`` given)."""
    all_headers = {"User-Agent": USER_AGENT}
    all_headers.update(headers or {})
    data: bytes | str | None = raw
    if raw is None and body is not None:
        data = json.dumps(body)
        all_headers.setdefault("Content-Type", "application/json")
    url = collector.track_url + (f"?{query}" if query else "")
    client = session or requests
    return client.request(method, url, data=data, headers=all_headers, timeout=10)


def send_spec(
    collector: Collector, spec: dict[str, Any], session: requests.Session | None = None
) -> requests.Response:
    """Send a request described as in the exchange fixtures."""
    raw: bytes | str | None = spec.get("raw")
    if "gzip_json" in spec:
        raw = gzip.compress(json.dumps(spec["gzip_json"]).encode())
    return send(
        collector,
        spec.get("json"),
        method=spec.get("method", "POST"),
        query=spec.get("query", ""),
        headers=spec.get("headers"),
        raw=raw,
        session=session,
    )


def event(type_: str = "page-view", **fields: Any) -> dict[str, Any]:
    """An event payload."""
    return {"type": type_, **fields}


def payload(*events: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A tracker payload from our test source and session with these events."""
    body: dict[str, Any] = {"source": {"id": SOURCE}, "session": {"id": SESSION}}
    body.update(fields)
    body["events"] = list(events) if events else [event()]
    return body


def stored_summary(events: list[StoredEvent]) -> list[dict[str, Any]]:
    """What the exchange fixtures say about stored events."""
    return [
        {
            "id": item.id,
            "type": item.type,
            "profile_id": item.profile_id,
            "session_id": item.session_id,
            "source_id": item.source_id,
            "payload": item.payload,
        }
        for item in events
    ]
