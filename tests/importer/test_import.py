"""import_events over a capturing transport: batching, order, ids, rejects, resume, shards."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from importer_helpers import FAST_RETRY, SOURCE_ID, at, row

from tracardi_tracker import Time
from tracardi_tracker._capture import CapturingTransport, tracardi_like
from tracardi_tracker.importer import (
    EVENT_NAMESPACE,
    ImportAbortedError,
    ImportConfigError,
    ImportSummary,
    Rows,
    Shard,
)

Run = Callable[..., ImportSummary]
Files = Callable[..., Path]


def many_rows(profiles: int, per_profile: int, step: float = 1.0) -> list[dict[str, Any]]:
    """Rows in time order over all profiles (each profile's events ``step`` minutes apart)."""
    rows = [
        row("view", index * step + number / 100, f"p-{number}", properties={"n": index})
        for index in range(per_profile)
        for number in range(profiles)
    ]
    rows.sort(key=lambda item: item["time"]["create"])
    return rows


def sent_ids(capture: CapturingTransport) -> list[str]:
    return [event["id"] for event in capture.events]


def test_every_row_is_sent_once_in_payloads_of_one_session_and_profile(
    run: Run, jsonl: Files, capture: CapturingTransport
) -> None:
    path = jsonl(many_rows(profiles=7, per_profile=30))

    summary = run([path], batch_size=8, concurrency=3)

    ids = sent_ids(capture)
    assert len(ids) == len(set(ids)) == 210
    assert (summary.rows, summary.events, summary.sent, summary.rejected) == (210, 210, 210, 0)
    assert summary.exit_code == 0
    assert summary.complete
    for payload in capture.payloads:
        assert payload["source"] == {"id": SOURCE_ID}
        assert 1 <= len(payload["events"]) <= 8
        assert set(payload) >= {"session", "profile", "events", "options"}


def test_each_profiles_events_arrive_in_time_order_with_requests_in_flight(
    jsonl: Files, run: Run
) -> None:
    rng = random.Random(3)

    def slow(payload: dict[str, Any]) -> tuple[int, Any]:
        time.sleep(rng.random() / 500)
        return tracardi_like(payload)

    capture = CapturingTransport(slow)
    path = jsonl(many_rows(profiles=12, per_profile=40, step=40))  # every event a new session

    run([path], concurrency=4, batch_size=5, transport_factory=lambda: capture)

    by_profile: dict[str, list[str]] = defaultdict(list)
    for payload in capture.payloads:
        for event in payload["events"]:
            by_profile[payload["profile"]["id"]].append(event["time"]["create"])
    assert len(by_profile) == 12
    for times in by_profile.values():
        assert times == sorted(times)
        assert len(times) == 40


def test_event_ids_are_the_same_on_every_run_and_derive_from_the_row(
    jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    rows = [row("view", minute) for minute in range(5)]
    path = jsonl(rows)

    run([path])
    first = sent_ids(capture)
    run([path])
    second = sent_ids(capture)[len(first) :]

    assert first == second
    expected = str(uuid.uuid5(EVENT_NAMESPACE, f"{SOURCE_ID}\n{json.dumps(rows[0])}"))
    assert first[0] == expected


def test_sessions_are_cut_at_gaps_and_carry_their_first_event_times(
    jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    path = jsonl([row("view", minute) for minute in (0, 10, 35, 70, 71)])

    summary = run([path])

    sessions = [(payload["session"], len(payload["events"])) for payload in capture.payloads]
    assert [count for _session, count in sessions] == [3, 2]
    assert Time(**sessions[0][0]["metadata"]) == Time(create=at(0), insert=at(0))
    assert Time(**sessions[1][0]["metadata"]) == Time(create=at(70), insert=at(70))
    assert sessions[0][0]["id"] != sessions[1][0]["id"]
    assert summary.sessions == 2


def test_the_session_gap_is_settable(jsonl: Files, run: Run, capture: CapturingTransport) -> None:
    path = jsonl([row("view", minute) for minute in (0, 10, 35, 70, 71)])

    run([path], session_gap=5 * 60)

    assert [len(payload["events"]) for payload in capture.payloads] == [1, 1, 1, 2]


def test_times_and_identities_go_out_exactly_as_in_the_file(
    jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    path = jsonl(
        [
            {
                "type": "Purchase",
                "time": {"create": "2023-03-01T10:02:11.250Z", "insert": "2023-03-01T10:05:00Z"},
                "profile": {
                    "id": "p-1",
                    "ids": ["crm:1"],
                    "metadata": {"create": "2021-06-01T00:00:00Z"},
                },
                "session": {"id": "s-1", "metadata": {"create": "2023-03-01T10:00:00Z"}},
                "properties": {"value": 9.5},
                "tags": ["backfill"],
            },
            {
                "type": "Purchase",
                "time": {"create": "2023-03-01T12:03:00+02:00"},
                "profile": {"id": "p-1", "ids": ["email:a@b.c"]},
                "session": {"id": "s-1"},
            },
        ]
    )

    run([path])

    (payload,) = capture.payloads
    assert payload["session"] == {"id": "s-1", "metadata": {"create": "2023-03-01T10:00:00Z"}}
    assert payload["profile"] == {
        "id": "p-1",
        "ids": ["crm:1", "email:a@b.c"],
        "metadata": {"create": "2021-06-01T00:00:00Z"},
    }
    first, second = payload["events"]
    assert first["time"] == {"create": "2023-03-01T10:02:11.250Z", "insert": "2023-03-01T10:05:00Z"}
    assert second["time"] == {"create": "2023-03-01T10:03:00Z"}  # no insert: none was given
    assert first["type"] == "purchase"
    assert first["tags"] == ["backfill"]


def test_profile_metadata_defaults_to_the_first_event_of_the_payload(
    jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    path = jsonl([row("view", 5, session={"id": "s"}), row("view", 6, session={"id": "s"})])

    run([path])

    (payload,) = capture.payloads
    assert Time(**payload["profile"]["metadata"]) == Time(create=at(5), insert=at(5))
    assert Time(**payload["session"]["metadata"]) == Time(create=at(5), insert=at(5))


def test_bad_rows_are_rejected_with_file_line_field_and_the_rest_is_sent(
    jsonl: Files, run: Run, capture: CapturingTransport, tmp_path: Path
) -> None:
    path = jsonl(
        [
            row("view", 1),
            '{"type": "view", "time": ',
            {"time": {"create": at(2)}, "profile": {"id": "p-1"}},
            row("view", 3, time={"create": "2023-03-01"}),
            row("view", 4, time={"create": "2023-03-01T10:00:00"}),
            row("view", 5),
            row("view", 4.5),
        ]
    )
    rejects = tmp_path / "rejects.jsonl"

    summary = run([path], rejects=rejects)

    assert len(capture.events) == 2
    assert (summary.rows, summary.sent, summary.rejected) == (7, 2, 5)
    assert summary.exit_code == 1
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(item["line"], item["field"]) for item in lines] == [
        (2, None),
        (3, "type"),
        (4, "time.create"),
        (5, "time.create"),
        (7, "time.create"),
    ]
    assert all(item["file"] == str(path) for item in lines)
    assert lines[0]["row"] == '{"type": "view", "time": '
    assert "date without a time" in lines[2]["reason"]
    assert "earlier than the previous event" in lines[4]["reason"]
    assert str(summary.first_rejects[1]) == f"{path}:3: type: is missing"


def test_a_dry_run_checks_every_row_and_sends_nothing(
    jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    path = jsonl([row("view", 1), {"type": "x"}, row("view", 2)])

    summary = run([path], dry_run=True, checkpoint=path.with_suffix(".ck"))

    assert capture.payloads == []
    assert (summary.events, summary.rejected, summary.sent) == (2, 1, 0)
    assert summary.dry_run
    assert not path.with_suffix(".ck").exists()
    assert "Dry run" in summary.describe()


def test_a_payload_tracardi_rejects_is_split_until_the_bad_event_is_alone(
    jsonl: Files, run: Run, tmp_path: Path
) -> None:
    def picky(payload: dict[str, Any]) -> tuple[int, Any]:
        if any(event["properties"].get("bad") for event in payload["events"]):
            return 422, {"detail": [{"loc": ["body", "properties"], "msg": "not like this"}]}
        return tracardi_like(payload)

    capture = CapturingTransport(picky)
    rows = [row("view", minute, properties={"bad": minute in (3, 6)}) for minute in range(10)]
    rejects = tmp_path / "rejects.jsonl"

    summary = run([jsonl(rows)], transport_factory=lambda: capture, rejects=rejects)

    delivered = [event["properties"]["bad"] for event in capture.events]
    # the accepted payloads hold the 8 good events once each
    accepted = [
        event
        for request in capture.requests
        if not any(event["properties"]["bad"] for event in request.payload["events"])
        for event in request.payload["events"]
    ]
    assert len(accepted) == 8
    assert len({event["id"] for event in accepted}) == 8
    assert True in delivered  # the bad ones were tried
    assert summary.sent == 8
    assert summary.rejected == 2
    reasons = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [item["line"] for item in reasons] == [4, 7]
    assert "Tracardi rejected it (422): properties: not like this" in reasons[0]["reason"]


def test_a_refused_source_stops_the_import(jsonl: Files, run: Run) -> None:
    capture = CapturingTransport(lambda payload: (406, {"detail": "Event source disabled."}))

    with pytest.raises(ImportAbortedError, match="Event source disabled") as caught:
        run(
            [jsonl([row("view", minute) for minute in range(3)])], transport_factory=lambda: capture
        )

    summary = caught.value.summary
    assert summary.exit_code == 3
    assert summary.sent == 0
    assert len(capture.requests) == 1


def test_after_a_server_outage_stops_the_import_a_rerun_sends_only_the_rest(
    jsonl: Files, run: Run, tmp_path: Path
) -> None:
    answers = {"fail": False, "calls": 0}

    def flaky(payload: dict[str, Any]) -> tuple[int, Any]:
        answers["calls"] += 1
        if answers["calls"] > 3:
            answers["fail"] = True
        if answers["fail"]:
            return 503, {"detail": "down"}
        return tracardi_like(payload)

    capture = CapturingTransport(flaky)
    path = jsonl(many_rows(profiles=10, per_profile=5, step=60))
    checkpoint = tmp_path / "import.checkpoint"

    with pytest.raises(ImportAbortedError, match="503") as caught:
        run([path], checkpoint=checkpoint, concurrency=1, transport_factory=lambda: capture)
    first = caught.value.summary
    assert first.sent == 3
    assert "run the same command to resume" in first.describe()

    good = CapturingTransport()
    second = run([path], checkpoint=checkpoint, concurrency=2, transport_factory=lambda: good)

    delivered_first = [
        event["id"] for request in capture.requests[:3] for event in request.payload["events"]
    ]
    delivered_second = sent_ids(good)
    assert not set(delivered_first) & set(delivered_second)
    assert len(delivered_first) + len(delivered_second) == 50
    assert second.skipped == 3
    assert second.complete
    third = run([path], checkpoint=checkpoint, transport_factory=lambda: good)
    assert third.already_complete
    assert len(good.payloads) == 47
    assert "Nothing to do" in third.describe()


def test_stopping_midway_and_resuming_sends_every_event_exactly_once(
    jsonl: Files, run: Run, tmp_path: Path
) -> None:
    stop = threading.Event()
    count = {"n": 0}

    def stopper(payload: dict[str, Any]) -> tuple[int, Any]:
        count["n"] += 1
        if count["n"] == 20:
            stop.set()
        return tracardi_like(payload)

    capture = CapturingTransport(stopper)
    path = jsonl(many_rows(profiles=20, per_profile=20, step=45))
    checkpoint = tmp_path / "c"

    first = run(
        [path],
        checkpoint=checkpoint,
        stop=stop,
        concurrency=4,
        batch_size=3,
        transport_factory=lambda: capture,
    )
    assert first.interrupted
    assert first.exit_code == 130
    assert 0 < first.sent < 400

    rest = CapturingTransport()
    second = run([path], checkpoint=checkpoint, concurrency=3, transport_factory=lambda: rest)

    ids = sent_ids(capture) + sent_ids(rest)
    assert len(ids) == len(set(ids)) == 400
    assert second.skipped == first.sent
    assert second.complete


def test_a_changed_file_cannot_resume_an_old_checkpoint(
    jsonl: Files, run: Run, tmp_path: Path
) -> None:
    from tracardi_tracker.importer import CheckpointMismatchError

    path = jsonl([row("view", 1)])
    checkpoint = tmp_path / "c"
    run([path], checkpoint=checkpoint)
    jsonl([row("view", 1), row("view", 2)])

    with pytest.raises(CheckpointMismatchError, match="inputs"):
        run([path], checkpoint=checkpoint)
    assert run([path], checkpoint=checkpoint, restart=True).sent == 2


def test_profile_ids_tracardi_replaces_are_adopted_counted_and_written(
    jsonl: Files, run: Run, tmp_path: Path
) -> None:
    known: set[str] = set()

    def like_one_oh(payload: dict[str, Any]) -> tuple[int, Any]:
        status, body = tracardi_like(payload)
        sent = payload["profile"]["id"]
        if sent not in known:
            sent = f"new-{sent}"
            known.add(sent)
        body["profile"]["id"] = sent
        return status, body

    capture = CapturingTransport(like_one_oh)
    path = jsonl(many_rows(profiles=3, per_profile=4, step=60))  # 4 sessions per profile
    profile_map = tmp_path / "profiles.jsonl"

    summary = run([path], transport_factory=lambda: capture, profile_map=profile_map, concurrency=2)

    assert summary.profiles_replaced == 3
    firsts: dict[str, dict[str, Any]] = {}
    later: list[dict[str, Any]] = []
    for payload in capture.payloads:
        profile = payload["profile"]
        if profile["id"].startswith("p-"):
            firsts[profile["id"]] = profile
        else:
            later.append(profile)
    assert sorted(firsts) == ["p-0", "p-1", "p-2"]
    assert len(later) == 9
    assert all(profile["ids"] == [profile["id"][4:]] for profile in later)
    mapping = [json.loads(line) for line in profile_map.read_text().splitlines()]
    assert sorted((item["old"], item["new"]) for item in mapping) == [
        ("p-0", "new-p-0"),
        ("p-1", "new-p-1"),
        ("p-2", "new-p-2"),
    ]
    assert "Tracardi replaced 3 profile ids" in summary.describe()


def test_shards_split_the_profiles_without_overlap_and_cover_everything(
    jsonl: Files, run: Run
) -> None:
    path = jsonl(many_rows(profiles=30, per_profile=3))
    seen: list[set[str]] = []
    for number in (1, 2, 3):
        capture = CapturingTransport()
        summary = run(
            [path], shard=f"{number}/3", transport_factory=lambda capture=capture: capture
        )
        assert summary.sent + summary.other_shards == 90
        seen.append({payload["profile"]["id"] for payload in capture.payloads})

    assert set.union(*seen) == {f"p-{number}" for number in range(30)}
    assert sum(len(profiles) for profiles in seen) == 30
    assert all(profiles for profiles in seen)


def test_a_shard_is_k_of_n() -> None:
    assert str(Shard.parse("2/4")) == "2/4"
    for bad in ("0/4", "5/4", "2", "a/b", "1/0"):
        with pytest.raises(ImportConfigError):
            Shard.parse(bad)


def test_the_rate_limit_spreads_events_over_time(
    jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    path = jsonl([row("view", minute / 10) for minute in range(300)])

    started = time.monotonic()
    summary = run([path], rate=1000, batch_size=100)
    elapsed = time.monotonic() - started

    assert summary.sent == 300
    assert elapsed >= 0.19  # the first 100 go at once, the next 200 need 0.2 s


def test_few_open_rows_still_send_everything_in_order(
    jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    path = jsonl(many_rows(profiles=50, per_profile=4))

    summary = run([path], max_open_rows=7, concurrency=2)

    assert summary.sent == 200
    assert len(set(sent_ids(capture))) == 200


def test_rows_in_memory_are_an_input(run: Run, capture: CapturingTransport) -> None:
    rows = [row("view", minute) for minute in range(4)]

    summary = run([Rows("partition-7", iter(rows))])

    assert summary.sent == 4
    assert summary.inputs == ("partition-7",)


def test_several_files_are_one_stream_and_sessions_continue_across_them(
    jsonl: Files, run: Run, capture: CapturingTransport
) -> None:
    first = jsonl([row("view", 0), row("view", 5)], name="day1.jsonl")
    second = jsonl([row("view", 10), row("view", 100)], name="day2.jsonl")

    run([first, second])

    sessions = [payload["session"]["id"] for payload in capture.payloads]
    assert [len(payload["events"]) for payload in capture.payloads] == [3, 1]
    assert len(set(sessions)) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"session_gap": -1}, "session_gap"),
        ({"source_id": " "}, "source_id"),
        ({"endpoint": "ftp://x"}, "http"),
        ({"rate": 0}, "rate"),
    ],
)
def test_bad_options_are_refused_before_anything_is_read(
    jsonl: Files, run: Run, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run([jsonl([row()])], **options)


def test_fast_retry_is_what_the_tests_use() -> None:
    assert FAST_RETRY.attempts == 2


def test_csv_columns_the_mapping_does_not_read_are_reported(
    run: Run, capture: CapturingTransport, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text("type,time,profile_id,colour\nview,2023-03-01T10:00:00Z,p-1,red\n")

    summary = run([path])

    assert summary.sent == 1
    assert capture.events[0]["properties"] == {}
    (warning,) = summary.warnings
    assert "colour" in warning
    assert "warning: " in summary.describe()


def test_a_row_read_when_a_snapshot_falls_due_is_sent_not_counted_as_done(
    jsonl: Files,
    run: Run,
    capture: CapturingTransport,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tracardi_tracker.importer._checkpoint import Checkpoint
    from tracardi_tracker.importer._importer import _TICK

    monkeypatch.setattr(Checkpoint, "due", lambda self, interval=1.0: True)
    # the loop looks at the clock (snapshot) every _TICK rows, before handling that row;
    # nothing is on its way then, since every earlier row was rejected
    path = jsonl(["{not json"] * (_TICK - 1) + [row("view", 1)])

    summary = run([path], checkpoint=tmp_path / "c")

    assert (summary.sent, summary.skipped, summary.rejected) == (1, 0, _TICK - 1)
    assert len(capture.events) == 1
