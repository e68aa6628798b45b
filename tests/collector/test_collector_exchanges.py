"""The contract's sample exchanges (S1-S6), replayed against every Tracardi version.

Each file in ``exchanges/`` holds one request, the answer each version gives and the events
that must be stored afterwards (see ``collector_helpers.resolve`` for the placeholders).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import EXCHANGES, VERSIONS, resolve, send_spec, stored_summary

from tracardi_tracker.collector import Collector

CASES = [
    pytest.param(path, version, id=f"{path.stem}-{version}")
    for path in sorted(EXCHANGES.glob("*.json"))
    for version in VERSIONS
]


def _for_version(table: dict[str, Any], version: str) -> Any:
    return table[version] if version in table else table["*"]


@pytest.mark.parametrize(("path", "version"), CASES)
def test_exchange_is_answered_and_stored_as_tracardi_does(
    path: Path, version: str, tracardi_collector_factory: Any
) -> None:
    spec = json.loads(path.read_text())
    collector: Collector = tracardi_collector_factory(
        tracardi_version=version, **spec.get("collector", {})
    )
    for profile in spec.get("profiles", []):
        collector.add_profile(profile["id"], profile.get("ids", []))
    for request in spec.get("setup", []):
        assert send_spec(collector, request).status_code == 200

    response = send_spec(collector, spec["request"])

    expected = _for_version(spec["expect"], version)
    body = response.json()
    assert (expected["status"], resolve(expected["json"], body)) == (response.status_code, body)
    names = {}
    if isinstance(body, dict) and "profile" in body:
        names = {
            "<answer.profile>": body["profile"]["id"],
            "<answer.session>": body["session"]["id"],
        }
    stored = stored_summary(collector.events())
    assert resolve(_for_version(spec["stored"], version), stored, names) == stored
