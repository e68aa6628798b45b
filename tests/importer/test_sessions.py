"""Sessionisation: cut at gaps, deterministic ids, order checks, bounded table."""

from __future__ import annotations

import uuid

import pytest
from importer_helpers import at, row

from tracardi_tracker import Time
from tracardi_tracker._serialization import time_to_wire
from tracardi_tracker.importer import SESSION_NAMESPACE, FieldMapping
from tracardi_tracker.importer._mapping import MappedRow, Mapper
from tracardi_tracker.importer._sessions import OutOfOrderError, Sessioniser

GAP = 30 * 60.0


def mapped(minutes: float, profile: str = "p-1", **extra: object) -> MappedRow:
    return Mapper(FieldMapping(), "src").map(b"", row("view", minutes, profile, **extra))


def sessions_of(minutes: list[float], profile: str = "p-1") -> list[str]:
    sessioniser = Sessioniser(source_id="src", gap=GAP)
    return [
        sessioniser.place(profile, mapped(value, profile), line)[0]
        for line, value in enumerate(minutes, 1)
    ]


def test_a_new_session_starts_after_a_gap_longer_than_thirty_minutes() -> None:
    found = sessions_of([0, 10, 40, 70.5, 71, 200])

    assert found[0] == found[1] == found[2]
    assert found[3] == found[4]
    assert len({found[0], found[3], found[5]}) == 3


def test_the_session_id_is_uuid5_of_source_profile_and_first_event_time() -> None:
    (first,) = sessions_of([15])

    start = mapped(15).t
    expected = uuid.uuid5(SESSION_NAMESPACE, f"src\np-1\n{round(start * 1e6)}")
    assert first == str(expected)


def test_the_same_rows_get_the_same_sessions_every_time() -> None:
    assert sessions_of([0, 5, 100, 101]) == sessions_of([0, 5, 100, 101])


def test_a_derived_session_carries_its_first_event_times() -> None:
    sessioniser = Sessioniser(source_id="src", gap=GAP)

    _, meta = sessioniser.place("p-1", mapped(3), 1)
    _, later = sessioniser.place("p-1", mapped(4), 2)

    assert meta == later == time_to_wire(Time(create=at(3), insert=at(3)))


def test_a_row_with_its_own_session_keeps_it() -> None:
    sessioniser = Sessioniser(source_id="src", gap=GAP)

    placed = sessioniser.place("p-1", mapped(0, session={"id": "given"}), 1)

    assert placed == ("given", None)


def test_a_row_earlier_than_its_profiles_previous_event_is_refused() -> None:
    sessioniser = Sessioniser(source_id="src", gap=GAP)
    sessioniser.place("p-1", mapped(10), 7)

    with pytest.raises(OutOfOrderError, match=r"earlier than the previous event.*line 7"):
        sessioniser.place("p-1", mapped(9), 8)
    sessioniser.place("p-2", mapped(1, "p-2"), 9)  # other profiles are not concerned


def test_profiles_leave_the_table_once_time_has_moved_past_their_gap() -> None:
    closed: list[str] = []
    sessioniser = Sessioniser(source_id="src", gap=GAP, on_close=closed.append)
    sessioniser.place("p-1", mapped(0, "p-1"), 1)
    sessioniser.place("p-2", mapped(20, "p-2"), 2)
    sessioniser.place("p-3", mapped(45, "p-3"), 3)

    assert closed == ["p-1"]
    assert len(sessioniser) == 2

    sessioniser.close_all()
    assert closed == ["p-1", "p-2", "p-3"]


def test_the_table_never_holds_more_than_max_profiles_and_counts_forced_drops() -> None:
    sessioniser = Sessioniser(source_id="src", gap=GAP, max_profiles=2)

    for index in range(5):
        sessioniser.place(f"p-{index}", mapped(index, f"p-{index}"), index + 1)

    assert len(sessioniser) == 2
    assert sessioniser.forced == 3
