"""The ``tracardi-tracker`` command routes each subcommand to its module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracardi_tracker.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_import_is_a_subcommand_and_its_dry_run_checks_the_sample_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "import",
            str(EXAMPLES / "data" / "history.jsonl"),
            "--endpoint",
            "http://127.0.0.1:9",  # a dry run sends nothing
            "--source",
            "demo-source",
            "--dry-run",
            "--progress",
            "none",
            "--checkpoint",
            str(tmp_path / "checkpoint"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "rows read 8; valid 8; rejected 0" in out.out + out.err
