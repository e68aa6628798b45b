"""Progress: a tqdm bar on a terminal when installed, plain periodic lines otherwise."""

from __future__ import annotations

import io

import pytest

from tracardi_tracker.importer import _progress
from tracardi_tracker.importer._progress import (
    BarProgress,
    LineProgress,
    NoProgress,
    ProgressState,
    describe,
    make_progress,
)

STATE = ProgressState(
    rows=120_000,
    sent=118_950,
    rejected=12,
    skipped=3,
    bytes_read=450,
    bytes_total=1000,
    elapsed=10.0,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_line_says_rows_share_sent_failures_rate_and_eta() -> None:
    assert describe(STATE) == (
        "import: 120,000 rows (45%), 118,950 sent, 12 rejected, 3 skipped, "
        "11,895 events/s, ETA 0:00:12"
    )


def test_lines_are_written_at_most_once_per_interval() -> None:
    out = io.StringIO()
    progress = LineProgress(out, interval=0.0)

    progress.update(STATE)
    progress.update(STATE)
    slow = LineProgress(out, interval=3600)
    slow.update(STATE)

    assert out.getvalue().count("import: ") == 2


def test_auto_is_lines_when_not_on_a_terminal() -> None:
    assert isinstance(make_progress("auto", io.StringIO(), total=10), LineProgress)
    assert isinstance(make_progress("none", io.StringIO(), total=10), NoProgress)


def test_without_tqdm_a_terminal_gets_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "_tqdm", lambda: None)
    out = Terminal()

    assert isinstance(make_progress("auto", out, total=10), LineProgress)
    assert isinstance(make_progress("bar", out, total=10), LineProgress)
    assert "needs tqdm" in out.getvalue()


def test_with_tqdm_a_terminal_gets_a_bar() -> None:
    pytest.importorskip("tqdm")
    out = Terminal()

    progress = make_progress("auto", out, total=1000)
    progress.update(STATE)
    progress.close(STATE)

    assert isinstance(progress, BarProgress)
    assert "rows=120,000" in out.getvalue()


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="progress must be one of"):
        make_progress("fancy", io.StringIO(), total=None)
