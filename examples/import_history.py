"""Import a small shop's history into Tracardi with the importer's library function.

Reads ``examples/data/history.jsonl`` (the export format: one Tracardi-like event per line)
and ``examples/data/history.csv`` (flat columns), derives the visits (a new session after
30 minutes without an event), and sends each event with its original time. Run it against
a Tracardi (or the local collector)::

    TRACARDI_ENDPOINT=http://127.0.0.1:8686 TRACARDI_SOURCE_ID=demo-source \\
        python examples/import_history.py

    # or let the SDK start a throw-away collector and show what arrived:
    python -m tracardi_tracker demo examples/import_history.py

The same import from the command line::

    tracardi-tracker import examples/data/history.jsonl examples/data/history.csv \\
        --endpoint http://127.0.0.1:8686 --source demo-source
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout as is

from tracardi_tracker.importer import ImporterError, import_events

DATA = Path(__file__).resolve().parent / "data"


def main() -> int:
    endpoint = os.environ.get("TRACARDI_ENDPOINT", "http://127.0.0.1:8686")
    source_id = os.environ.get("TRACARDI_SOURCE_ID", "demo-source")
    with tempfile.TemporaryDirectory(prefix="import-history-") as work:
        try:
            summary = import_events(
                [DATA / "history.jsonl", DATA / "history.csv"],
                endpoint=endpoint,
                source_id=source_id,
                checkpoint=Path(work) / "history.checkpoint",  # re-run to resume after a crash
                rejects=Path(work) / "history.rejects.jsonl",
                progress="auto",
            )
        except ImporterError as error:
            print(f"import failed: {error}", file=sys.stderr)
            return 1
    print(summary.describe())
    return summary.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
