"""What an import did, for the caller, the summary printout and the exit code."""

from __future__ import annotations

import attrs

from ._errors import RowError

__all__ = [
    "EXIT_ABORTED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "ImportSummary",
]

EXIT_OK = 0
"""Every row was sent (or had been, in an earlier run)."""
EXIT_REJECTED = 1
"""The import finished, but some rows were rejected (see the reject file)."""
EXIT_USAGE = 2
"""Bad options, mapping, input file or checkpoint: nothing was sent."""
EXIT_ABORTED = 3
"""Tracardi refused the source or kept failing; run the same command again to resume."""
EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl+C, SIGTERM); run the same command again to resume."""


@attrs.frozen(kw_only=True)
class ImportSummary:
    """The account of one import run: every row read is sent, rejected or skipped.

    ``rows`` = ``events`` + ``rejected`` + ``skipped`` + ``other_shards`` (+ the rows still
    unsent when the run was interrupted or aborted). ``sent`` counts events Tracardi
    acknowledged in this run (``0`` in a dry run, where ``events`` counts what would go).
    """

    inputs: tuple[str, ...]
    rows: int = 0
    """Rows read (blank lines not counted)."""
    events: int = 0
    """Rows turned into events and handed over for sending (to be sent, in a dry run)."""
    sent: int = 0
    """Events Tracardi acknowledged."""
    rejected: int = 0
    """Rows that could not be sent: bad data, out of time order, refused by Tracardi."""
    skipped: int = 0
    """Rows done by an earlier run of the same import (per the checkpoint)."""
    other_shards: int = 0
    """Rows of profiles that belong to other shards."""
    sessions: int = 0
    """Sessions derived for rows without a session id."""
    requests: int = 0
    """HTTP requests made (retries included)."""
    retries: int = 0
    """Requests that were retries."""
    profiles_replaced: int = 0
    """Profile ids Tracardi answered with a different id for, in this run (0.8/1.0 do so
    for ids they do not know, unless the source keeps static ids)."""
    sessions_replaced: int = 0
    """Session ids Tracardi answered with a different id for (1.0's "shadow" sessions)."""
    forced_splits: int = 0
    """Profiles dropped from the session table while possibly still active: more than
    ``max_open_profiles`` profiles were active at once, so some sessions may be split."""
    duration: float = 0.0
    """Seconds the run took."""
    dry_run: bool = False
    interrupted: bool = False
    """Stopped by Ctrl+C, SIGTERM or the caller's stop event."""
    aborted: str | None = None
    """Why Tracardi stopped the import, when it did."""
    complete: bool = False
    """Every row of every input is done (a re-run will send nothing)."""
    already_complete: bool = False
    """The checkpoint said so before this run began: nothing was read."""
    checkpoint: str | None = None
    reject_file: str | None = None
    profile_map_file: str | None = None
    first_rejects: tuple[RowError, ...] = ()
    """The first rejected rows (all are in the reject file)."""
    warnings: tuple[str, ...] = ()
    """Things worth knowing that did not stop the import (unused CSV columns...)."""

    @property
    def events_per_second(self) -> float:
        """Events acknowledged per second of the run (events checked, in a dry run)."""
        count = self.events if self.dry_run else self.sent
        return count / self.duration if self.duration > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """The command's exit status for this outcome (see the ``EXIT_*`` constants)."""
        if self.aborted is not None:
            return EXIT_ABORTED
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.rejected:
            return EXIT_REJECTED
        return EXIT_OK

    def describe(self, *, show_rejects: int = 10) -> str:
        """The summary printed at the end of ``tracardi-tracker import``."""
        if self.already_complete:
            return (
                f"Nothing to do: checkpoint {self.checkpoint} says this import is complete. "
                "Pass --restart to send everything again."
            )
        title = "Dry run (nothing sent)" if self.dry_run else "Import"
        if self.aborted:
            state = "stopped by Tracardi"
        elif self.interrupted:
            state = "interrupted"
        elif self.dry_run:
            state = "checked"
        else:
            state = "complete" if self.complete else "finished"
        lines = [f"{title} {state} in {self.duration:.1f}s"]
        verb = "valid" if self.dry_run else "sent"
        count = self.events if self.dry_run else self.sent
        lines.append(
            f"  rows read {self.rows:,}; {verb} {count:,}; rejected {self.rejected:,}; "
            f"skipped {self.skipped:,} (done before)"
            + (f"; other shards {self.other_shards:,}" if self.other_shards else "")
        )
        lines.append(
            f"  {self.events_per_second:,.0f} events/s; {self.requests:,} requests"
            f" ({self.retries:,} retries); {self.sessions:,} sessions derived"
        )
        if self.profiles_replaced or self.sessions_replaced:
            lines.append(
                f"  Tracardi replaced {self.profiles_replaced:,} profile ids and "
                f"{self.sessions_replaced:,} session ids"
                + (f" (old -> new in {self.profile_map_file})" if self.profile_map_file else "")
            )
        if self.forced_splits:
            lines.append(
                f"  warning: {self.forced_splits:,} profiles were dropped from the session table "
                "while active (raise max_open_profiles); some sessions may be split"
            )
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        for error in self.first_rejects[:show_rejects]:
            lines.append(f"  rejected {error}")
        if self.rejected > min(show_rejects, len(self.first_rejects)):
            shown = min(show_rejects, len(self.first_rejects))
            lines.append(f"  ... {self.rejected - shown:,} more rejected rows")
        if self.rejected and self.reject_file:
            lines.append(f"  rejected rows are in {self.reject_file}")
        if self.aborted:
            lines.append(f"  stopped: {self.aborted}")
        if (self.aborted or self.interrupted) and self.checkpoint:
            lines.append(f"  progress saved in {self.checkpoint}: run the same command to resume")
        return "\n".join(lines)
