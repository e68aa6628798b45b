"""Historical import: replay old events into Tracardi with their original times.

::

    from tracardi_tracker.importer import import_events

    summary = import_events(
        ["events-2023.jsonl.gz"],
        endpoint="http://localhost:8686",
        source_id="my-source",
        checkpoint="events-2023.checkpoint",
        rejects="events-2023.rejects.jsonl",
    )
    print(summary.describe())

Streaming (constant memory), idempotent (event and session ids derived from the rows),
resumable (a checkpoint of acknowledged rows), with sessions derived where the data has
none, several requests in flight, an optional rate limit, sharding by profile, a dry run
and a reject file. The command line is ``tracardi-tracker import``; ``docs/importer.md``
describes the input format, the mapping and every option.
"""

from ._errors import (
    CheckpointMismatchError,
    ImportAbortedError,
    ImportConfigError,
    ImporterError,
    RowError,
)
from ._importer import DEFAULT_RETRY, Shard, import_events
from ._mapping import EVENT_NAMESPACE, SESSION_NAMESPACE, TARGETS, FieldMapping
from ._readers import Rows
from ._summary import ImportSummary

__all__ = [
    "DEFAULT_RETRY",
    "EVENT_NAMESPACE",
    "SESSION_NAMESPACE",
    "TARGETS",
    "CheckpointMismatchError",
    "FieldMapping",
    "ImportAbortedError",
    "ImportConfigError",
    "ImportSummary",
    "ImporterError",
    "RowError",
    "Rows",
    "Shard",
    "import_events",
]
