"""The importer's exceptions, under the SDK's one root :class:`~tracardi_tracker.TrackerError`.

The tree::

    TrackerError
    └── ImporterError                       the import cannot start or go on
        ├── ImportConfigError (ValueError)  a bad option, mapping file, time zone or input
        ├── CheckpointMismatchError         the checkpoint belongs to another import
        └── ImportAbortedError              Tracardi stopped the import (source refused,
                                            server failing after the retries); the
                                            checkpoint is saved, ``summary`` says how far
                                            it got

A bad *row* is not an exception the caller sees: it becomes a :class:`RowError`, written to
the reject file, and the import goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ..exceptions import TrackerError

if TYPE_CHECKING:
    from ._summary import ImportSummary

__all__ = [
    "CheckpointMismatchError",
    "ImportAbortedError",
    "ImportConfigError",
    "ImporterError",
    "RowError",
]


class ImporterError(TrackerError):
    """Root of the errors that stop an import (not raised for a bad row)."""


class ImportConfigError(ImporterError, ValueError):
    """An option, a mapping file, a time zone or an input file the importer cannot use."""


class CheckpointMismatchError(ImporterError):
    """The checkpoint file was written by a different import (other files, source or
    mapping); start over with ``restart=True`` (``--restart``) or use another checkpoint."""


class ImportAbortedError(ImporterError):
    """Tracardi refused the event source or kept failing; the import stopped.

    Everything acknowledged so far is in the checkpoint: running the same import again
    continues from there. ``summary`` holds the counts up to the stop.
    """

    def __init__(self, message: str, summary: ImportSummary) -> None:
        super().__init__(message)
        self.summary = summary


@attrs.frozen(kw_only=True)
class RowError:
    """Why one input row was not sent: where it is, which field, what is wrong, the row.

    ``str()`` gives ``events.jsonl:17: time.create: '2023-01-01' is a date without a time``.
    """

    file: str
    """The input's name as given (``-`` for standard input)."""
    line: int
    """The 1-based line the row starts on."""
    field: str | None
    """The event field at fault (``time.create``, ``type``...), ``None`` for a whole row."""
    reason: str
    """What is wrong, in words."""
    row: str
    """The row as it was read (a JSON line, or a CSV record)."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        """The object written to the reject file."""
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "row": self.row,
        }
