"""The checkpoint: low-water mark plus done set, journal, identity, profile map."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tracardi_tracker.importer import CheckpointMismatchError
from tracardi_tracker.importer._checkpoint import (
    Checkpoint,
    decode_positions,
    encode_positions,
    position,
)

IDENTITY = {"inputs": ["events.jsonl:10:abc"], "source": "s"}


def test_positions_round_trip_as_ranges() -> None:
    values = {1, 2, 3, 7, 9, 10, position(1, 1), position(1, 2)}

    text = encode_positions(values)

    assert text.startswith("1-3,7,9-10,")
    assert decode_positions(text) == values
    assert encode_positions([]) == ""


def test_out_of_order_acknowledgements_leave_an_exact_low_water_mark_and_done_set(
    tmp_path: Path,
) -> None:
    path = tmp_path / "import.checkpoint"
    state = Checkpoint(path, IDENTITY, restart=False)
    batches = {1: [1, 2, 3], 4: [4, 6, 7], 5: [5, 8], 9: [9, 10]}  # by first row, in order
    for first in batches:
        state.hold(first)
    for first in (1, 5, 9):  # the batch of row 4 is still on its way
        state.journal(batches[first])
        state.release(batches[first])

    mark = state.snapshot(head=11)
    state.close()

    assert mark == 4
    again = Checkpoint(path, IDENTITY, restart=False)
    done = [where for where in range(1, 12) if again.is_done(where)]
    assert done == [1, 2, 3, 5, 8, 9, 10]
    assert again.resumed
    again.close()


def test_a_batch_done_in_parts_holds_the_mark_until_it_is_released() -> None:
    state = Checkpoint(None, IDENTITY, restart=False)
    state.hold(1)  # rows 1, 2, 3: split by the sender, acknowledged in two parts
    state.resolve([1, 2])

    assert state.snapshot(head=4) == 1

    state.resolve([3])
    state.release([1, 2, 3])

    assert state.snapshot(head=4) == 4
    state.close()


def test_memory_holds_only_batches_on_their_way_and_done_rows_above_them(
    tmp_path: Path,
) -> None:
    state = Checkpoint(tmp_path / "c", IDENTITY, restart=False)
    firsts = range(1, 300_001, 100)  # 3,000 batches of 100 rows
    for first in firsts:
        state.hold(first)

    for first in firsts[:2_900]:  # acknowledged in order
        state.journal(list(range(first, first + 100)))
        state.release(range(first, first + 100))
    state.journal(list(range(295_001, 295_101)))  # ahead of batches still on their way
    state.release(range(295_001, 295_101))
    state.resolve(list(range(1, 70_001)))  # rejected rows (not of a batch on its way)

    assert len(state._holds) == 99
    assert sorted(state._resolved) == list(range(295_001, 295_101))
    assert state.snapshot(head=300_001) == 290_001
    state.close()


def test_acknowledgements_survive_a_crash_before_any_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "import.checkpoint"
    state = Checkpoint(path, IDENTITY, restart=False)
    state.hold(4)  # rows 4, 5, 6
    state.resolve([6, 4])
    # no snapshot, no close: what a SIGKILL leaves behind

    again = Checkpoint(path, IDENTITY, restart=False)

    assert [where for where in range(1, 8) if again.is_done(where)] == [4, 6]
    again.close()
    state.close()


def test_a_journal_of_text_ranges_left_by_an_earlier_version_is_still_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "import.checkpoint"
    state = Checkpoint(path, IDENTITY, restart=False)
    state.resolve([7])
    state.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO journal (positions) VALUES ('2-4,9')")
    db.close()

    again = Checkpoint(path, IDENTITY, restart=False)

    assert [where for where in range(1, 11) if again.is_done(where)] == [2, 3, 4, 7, 9]
    again.close()


def test_with_nothing_on_its_way_every_row_before_the_head_is_done(tmp_path: Path) -> None:
    state = Checkpoint(tmp_path / "c", IDENTITY, restart=False)

    assert state.snapshot(head=position(0, 500)) == position(0, 500)
    state.close()


def test_a_resumed_mark_never_goes_back_while_the_replay_catches_up(tmp_path: Path) -> None:
    path = tmp_path / "c"
    state = Checkpoint(path, IDENTITY, restart=False)
    state.snapshot(head=100)
    state.close()
    again = Checkpoint(path, IDENTITY, restart=False)

    assert again.snapshot(head=3) == 100
    again.close()


def test_a_checkpoint_of_another_import_is_refused_with_the_difference(tmp_path: Path) -> None:
    path = tmp_path / "c"
    Checkpoint(path, IDENTITY, restart=False).close()

    with pytest.raises(CheckpointMismatchError, match=r"inputs: was \['events.jsonl:10:abc'\]"):
        Checkpoint(path, {**IDENTITY, "inputs": ["events.jsonl:11:def"]}, restart=False)

    fresh = Checkpoint(path, {**IDENTITY, "inputs": ["x"]}, restart=True)
    assert not fresh.resumed
    fresh.close()


def test_replaced_profile_ids_are_kept_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "c"
    state = Checkpoint(path, IDENTITY, restart=False)
    assert state.profile("p-1") is None
    assert state.replace_profile("p-1", "new-1")
    assert not state.replace_profile("p-1", "new-1")
    state.close()

    again = Checkpoint(path, IDENTITY, restart=False)

    assert again.profile("p-1") == "new-1"
    assert again.replaced_profiles == 1
    again.close()


def test_completion_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "c"
    state = Checkpoint(path, IDENTITY, restart=False)
    state.mark_complete()
    state.close()

    assert Checkpoint(path, IDENTITY, restart=False).complete


def test_a_temporary_checkpoint_leaves_no_file(tmp_path: Path) -> None:
    state = Checkpoint(None, IDENTITY, restart=False)
    made = state.path
    state.resolve([1])
    state.snapshot(head=2)
    state.close()
    state.close()

    assert not made.exists()


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(Exception, match="not readable"):
        Checkpoint(path, IDENTITY, restart=False)
    assert sqlite3.sqlite_version
