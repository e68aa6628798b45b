"""End to end against the local collector: kill and resume, re-runs, bad rows, times, sessions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from importer_helpers import SOURCE_ID, at, row

import tracardi_tracker
from tracardi_tracker.collector import Collector
from tracardi_tracker.importer import import_events
from tracardi_tracker.importer._mapping import MappedRow

pytestmark = pytest.mark.e2e

Files = Callable[..., Path]
PACKAGE_ROOT = str(Path(tracardi_tracker.__file__).resolve().parents[1])


def instant(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def history(profiles: int, per_profile: int) -> list[dict[str, Any]]:
    """Each profile visits every 2 hours, 3 events a visit; rows sorted by time."""
    rows = []
    for number in range(profiles):
        for index in range(per_profile):
            minutes = (index // 3) * 120 + index % 3 + number / 1000
            profile = f"p-{number}"
            rows.append(row("view", minutes, profile, properties={"i": index, "who": profile}))
    rows.sort(key=lambda item: str(item["time"]["create"]))
    return rows


def expected_ids(path: Path) -> set[str]:
    from tracardi_tracker.importer import FieldMapping
    from tracardi_tracker.importer._mapping import Mapper

    mapper = Mapper(FieldMapping(), SOURCE_ID)
    found: set[str] = set()
    with path.open("rb") as file:
        for line in file:
            raw = line.rstrip(b"\n")
            mapped: MappedRow = mapper.map(raw, json.loads(raw))
            found.add(mapped.event["id"])
    return found


def cli(collector: Collector, path: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tracardi_tracker.importer",
        str(path),
        "--endpoint",
        collector.url,
        "--source",
        SOURCE_ID,
        "--checkpoint",
        str(checkpoint),
        "--progress",
        "none",
        *extra,
    ]


def test_an_import_killed_midway_and_resumed_delivers_every_event(
    collector: Collector, jsonl: Files, tmp_path: Path
) -> None:
    path = jsonl(history(profiles=60, per_profile=100))  # 6,000 events
    checkpoint = tmp_path / "import.checkpoint"
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    slow = cli(collector, path, checkpoint, "--rate", "3000", "--batch-size", "50")

    process = subprocess.Popen(slow, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while len(collector.events()) < 1500 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    before = len(collector.events())
    assert 1500 <= before < 6000, "the import was not killed midway"

    resumed = subprocess.run(
        cli(collector, path, checkpoint, "--batch-size", "50"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    stored = Counter(event.id for event in collector.events())
    assert set(stored) == expected_ids(path)
    assert set(stored.values()) == {1}  # one document per id, as Tracardi keeps
    assert "skipped" in resumed.stdout
    skipped = int(resumed.stdout.split("skipped ")[1].split(" ")[0].replace(",", ""))
    # only payloads on the wire at the kill (4 workers x 50) may be sent again
    assert skipped >= before - 4 * 50


def test_a_rerun_of_a_finished_import_adds_nothing(
    collector: Collector, jsonl: Files, tmp_path: Path
) -> None:
    path = jsonl(history(profiles=5, per_profile=9))
    options = {
        "endpoint": collector.url,
        "source_id": SOURCE_ID,
        "checkpoint": tmp_path / "c",
    }

    first = import_events([str(path)], **options)  # type: ignore[arg-type]
    again = import_events([str(path)], **options)  # type: ignore[arg-type]

    assert first.sent == 45
    assert again.already_complete
    assert again.sent == 0
    assert len(collector.events()) == 45


def test_a_file_with_bad_rows_delivers_all_good_rows_and_lists_each_bad_one(
    collector: Collector, jsonl: Files, tmp_path: Path
) -> None:
    good = [row("view", minute, f"p-{minute % 3}") for minute in range(12)]
    bad = [
        "{not json",
        json.dumps({"type": "view", "profile": {"id": "p-0"}}),
        json.dumps(row("view", 50, time={"create": "2023-03-01"})),
        json.dumps(row("", 51)),
        json.dumps(row("view", 52, tags="not-a-list-but-fine", properties=[1])),
    ]
    lines: list[dict[str, object] | str] = []
    for index, item in enumerate(good):
        lines.append(item)
        if index < len(bad):
            lines.append(bad[index])
    rejects = tmp_path / "rejects.jsonl"

    summary = import_events(
        [str(jsonl(lines))], endpoint=collector.url, source_id=SOURCE_ID, rejects=rejects
    )

    assert summary.sent == 12
    assert summary.rejected == 5
    assert len(collector.events()) == 12
    listed = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [item["line"] for item in listed] == [2, 4, 6, 8, 10]
    assert [item["row"] for item in listed] == bad
    assert all(item["reason"] for item in listed)


def test_times_arrive_exactly_as_in_the_file(
    collector: Collector, jsonl: Files, tmp_path: Path
) -> None:
    rows = [
        row("a", 0, time={"create": "2023-03-01T10:02:11.250Z", "insert": "2023-03-02T00:00:00Z"}),
        row("b", 0, time={"create": "2023-03-01T12:03:00.123456+02:00"}),
        row("c", 0, time={"create": 1677665000}),
        row("d", 0, time={"create": "2023-03-01T10:30:00.5Z"}),
    ]

    import_events([str(jsonl(rows))], endpoint=collector.url, source_id=SOURCE_ID)

    stored = {event.type: event.time for event in collector.events()}
    assert instant(stored["a"]["create"]) == instant("2023-03-01T10:02:11.250Z")
    assert instant(stored["a"]["insert"]) == instant("2023-03-02T00:00:00Z")
    assert instant(stored["b"]["create"]) == instant("2023-03-01T10:03:00.123456Z")
    assert instant(stored["c"]["create"]) == instant("2023-03-01T10:03:20Z")
    assert instant(stored["d"]["create"]) == instant("2023-03-01T10:30:00.5Z")


def test_sessions_are_cut_where_the_gaps_are(collector: Collector, jsonl: Files) -> None:
    minutes = {"p-1": [0, 10, 29, 61, 62, 200], "p-2": [1, 40, 41]}
    rows = [row("view", value, profile) for profile, values in minutes.items() for value in values]
    rows.sort(key=lambda item: str(item["time"]["create"]))

    import_events([str(jsonl(rows))], endpoint=collector.url, source_id=SOURCE_ID)

    by_profile: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for event in sorted(collector.events(), key=lambda item: str(item.time["create"])):
        assert event.profile_id is not None
        by_profile[event.profile_id].append((str(event.time["create"]), event.session_id))
    one = [session for _time, session in by_profile["p-1"]]
    two = [session for _time, session in by_profile["p-2"]]
    assert one[0] == one[1] == one[2] != one[3] == one[4] != one[5]
    assert len(set(one)) == 3
    assert two[0] != two[1] == two[2]
    session = collector.session(str(one[3]))
    assert session is not None
    assert instant(session.metadata["create"]) == instant(at(61))  # type: ignore[index]


@pytest.mark.parametrize("version", ["1.0"])
def test_on_tracardi_1_0_replaced_profile_ids_are_reported_and_one_profile_stays_one(
    jsonl: Files, tmp_path: Path, version: str
) -> None:
    path = jsonl(history(profiles=4, per_profile=9))  # 3 visits per profile
    profile_map = tmp_path / "profiles.jsonl"

    with Collector(tracardi_version=version, sources=[SOURCE_ID]) as collector:
        summary = import_events(
            [str(path)],
            endpoint=collector.url,
            source_id=SOURCE_ID,
            profile_map=profile_map,
            checkpoint=tmp_path / "c",
        )
        events = collector.events()

    assert summary.profiles_replaced == 4
    mapping = {
        item["old"]: item["new"]
        for item in (json.loads(line) for line in profile_map.read_text().splitlines())
    }
    assert sorted(mapping) == ["p-0", "p-1", "p-2", "p-3"]
    landed: dict[str, set[str | None]] = defaultdict(set)
    for event in events:
        landed[event.properties["who"]].add(event.profile_id)
    assert landed == {old: {new} for old, new in mapping.items()}
    assert len(events) == 36


def test_the_example_imports_the_sample_files(tracardi_demo: Collector) -> None:
    example = Path(PACKAGE_ROOT) / "examples" / "import_history.py"
    env = {
        **os.environ,
        "PYTHONPATH": PACKAGE_ROOT,
        "TRACARDI_ENDPOINT": tracardi_demo.url,
        "TRACARDI_SOURCE_ID": "demo-source",
    }

    result = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Import complete" in result.stdout
    events = tracardi_demo.events()
    assert len(events) == 11
    assert len({event.session_id for event in events}) == 4


@pytest.fixture
def tracardi_demo() -> Iterator[Collector]:
    with Collector(sources=["demo-source"]) as running:
        yield running
