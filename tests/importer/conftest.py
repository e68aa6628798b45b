"""Fixtures for the importer's tests: input files, a capturing transport, a local collector."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from importer_helpers import ENDPOINT, FAST_RETRY, SOURCE_ID, write_jsonl

from tracardi_tracker._capture import CapturingTransport
from tracardi_tracker.collector import Collector
from tracardi_tracker.importer import ImportSummary, import_events


@pytest.fixture
def jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write a JSON Lines file in the test's directory: ``jsonl(rows, name="events.jsonl")``."""

    def make(rows: Sequence[dict[str, Any] | str], name: str = "events.jsonl") -> Path:
        return write_jsonl(tmp_path / name, rows)

    return make


@pytest.fixture
def capture() -> CapturingTransport:
    """A transport that records payloads and answers like Tracardi 0.9."""
    return CapturingTransport()


@pytest.fixture
def run(capture: CapturingTransport) -> Callable[..., ImportSummary]:
    """``run(files, **options)``: import through the capturing transport."""

    def run_import(files: Sequence[Any], **options: Any) -> ImportSummary:
        options.setdefault("endpoint", ENDPOINT)
        options.setdefault("source_id", SOURCE_ID)
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("transport_factory", lambda: capture)
        return import_events(
            [str(item) if isinstance(item, Path) else item for item in files], **options
        )

    return run_import


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A local collector imitating Tracardi 0.9 on 127.0.0.1 (events in memory)."""
    with Collector(tracardi_version="0.9", sources=[SOURCE_ID]) as running:
        yield running
