"""``tracardi-tracker import`` against a local collector: output, files, exit codes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from importer_helpers import SOURCE_ID, row

from tracardi_tracker.collector import Collector
from tracardi_tracker.importer._cli import add_parser, default_checkpoint, main, run

pytestmark = pytest.mark.e2e

Files = Callable[..., Path]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRACARDI_ENDPOINT", raising=False)
    monkeypatch.delenv("TRACARDI_SOURCE_ID", raising=False)


def command(collector: Collector, *args: str) -> list[str]:
    return [*args, "--endpoint", collector.url, "--source", SOURCE_ID, "--progress", "none"]


def test_an_import_prints_a_summary_and_exits_0(
    collector: Collector, jsonl: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl([row("view", minute) for minute in range(5)])

    code = main(command(collector, str(path)))

    out, err = capsys.readouterr()
    assert code == 0
    assert len(collector.events()) == 5
    assert "Import complete" in out
    assert "rows read 5; sent 5; rejected 0" in out
    assert "checkpoint: .tracardi-import/events-" in err
    assert list(Path(".tracardi-import").glob("events-*.checkpoint"))


def test_bad_rows_are_listed_with_file_line_and_field_and_exit_1(
    collector: Collector, jsonl: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl([row("view", 1), {"time": {"create": "2023-03-01T10:00:00Z"}}, row("view", 2)])

    code = main(command(collector, str(path)))

    out, err = capsys.readouterr()
    assert code == 1
    assert len(collector.events()) == 2
    assert f"rejected {path}:2: type: is missing" in out
    assert "Traceback" not in out + err
    (rejects,) = Path(".tracardi-import").glob("events-*.rejects.jsonl")
    (entry,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert (entry["line"], entry["field"]) == (2, "type")


def test_a_csv_file_with_a_mapping_a_cast_and_a_timezone(
    collector: Collector, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "event,when,customer,sku,price\n"
        "Purchase,2023-07-01 12:00:00,c-1,A-1,9.50\n"
        "Purchase,2023-07-01 12:05:00,c-1,A-2,3\n"
    )

    code = main(
        command(
            collector,
            str(path),
            "--map",
            "type=event",
            "--map",
            "time.create=when",
            "--map",
            "profile.id=customer",
            "--map",
            "properties.sku=sku",
            "--map",
            "properties.price=price",
            "--cast",
            "price=float",
            "--timezone",
            "Europe/Warsaw",
        )
    )

    assert code == 0
    events = collector.events()
    assert [event.properties for event in events] == [
        {"sku": "A-1", "price": 9.5},
        {"sku": "A-2", "price": 3.0},
    ]
    assert events[0].time["create"] is not None
    assert events[0].time["create"].startswith("2023-07-01T10:00:00")
    assert {event.profile_id for event in events} == {"c-1"}


def test_a_dry_run_sends_nothing_and_reports(
    collector: Collector, jsonl: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl([row("view", 1), row("view", 2, time={"create": "2023-03-01"})])

    code = main(command(collector, str(path), "--dry-run"))

    out, _err = capsys.readouterr()
    assert code == 1
    assert collector.events() == []
    assert "Dry run (nothing sent) checked" in out
    assert "valid 1; rejected 1" in out
    assert not Path(".tracardi-import").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file"),
        (["{file}", "--map", "colour=c"], "not an event field"),
        (["{file}", "--map", "type"], "--map expects NAME=VALUE"),
        (["{file}", "--shard", "5/4"], "shard must be K/N"),
        (["{file}", "--timezone", "Mars/Base"], "unknown time zone"),
        (["{file}", "--batch-size", "0"], "batch_size must be a positive"),
        (["{file}", "--mapping", "nope.toml"], "cannot read mapping file"),
    ],
)
def test_bad_options_exit_2_with_a_message_and_no_traceback(
    collector: Collector,
    jsonl: Files,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    path = jsonl([row()])

    code = main(command(collector, *[arg.replace("{file}", str(path)) for arg in args]))

    _out, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert collector.events() == []


def test_endpoint_and_source_are_required_unless_in_the_environment(
    jsonl: Files, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = jsonl([row()])

    assert main([str(path), "--source", "s"]) == 2
    assert "--endpoint is required" in capsys.readouterr().err
    monkeypatch.setenv("TRACARDI_ENDPOINT", "http://127.0.0.1:9")
    assert main([str(path)]) == 2
    assert "--source is required" in capsys.readouterr().err


def test_an_unknown_source_stops_the_import_with_exit_3(
    collector: Collector, jsonl: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl([row("view", minute) for minute in range(3)])

    code = main([str(path), "--endpoint", collector.url, "--source", "nope", "--progress", "none"])

    out, _err = capsys.readouterr()
    assert code == 3
    assert "stopped by Tracardi" in out
    assert "Invalid event source" in out
    assert "run the same command to resume" in out


def test_progress_lines_are_printed_when_not_on_a_terminal(
    collector: Collector, jsonl: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl([row("view", minute / 100) for minute in range(3000)])

    args = command(collector, str(path))
    args[args.index("none")] = "lines"
    code = main([*args, "--progress-interval", "0"])

    _out, err = capsys.readouterr()
    assert code == 0
    assert "import: " in err
    assert "events/s, ETA" in err


def test_the_command_plugs_into_a_parent_parser(collector: Collector, jsonl: Files) -> None:
    parser = argparse.ArgumentParser(prog="tracardi-tracker")
    add_parser(parser.add_subparsers())
    path = jsonl([row()])

    args = parser.parse_args(["import", *command(collector, str(path))])

    assert args.handler is run
    assert args.handler(args) == 0
    assert len(collector.events()) == 1


def test_the_default_checkpoint_depends_on_files_endpoint_source_and_shard() -> None:
    one = default_checkpoint(["a.jsonl"], "http://x", "s", None)

    assert one == default_checkpoint(["a.jsonl"], "http://x/", "s", None)
    assert one != default_checkpoint(["a.jsonl"], "http://x", "t", None)
    assert one != default_checkpoint(["a.jsonl"], "http://x", "s", "1/2")
    assert default_checkpoint(["a.jsonl"], "http://x", "s", "1/2").name.startswith("a-shard1of2-")
