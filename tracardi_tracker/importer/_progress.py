"""Progress while importing: a bar on a terminal, plain periodic lines otherwise.

The bar is drawn by ``tqdm`` when it is installed (``pip install 'tracardi-tracker[progress]'``)
and the output is a terminal; otherwise, and in logs and CI, a line every ``interval``
seconds::

    import: 120,000 rows (45%), 118,950 sent, 12 rejected, 0 skipped, 41,200 events/s, ETA 0:01:10
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any, Protocol, TextIO

import attrs

__all__ = ["PROGRESS_MODES", "Progress", "ProgressState", "make_progress"]

PROGRESS_MODES = ("auto", "bar", "lines", "none")
"""``auto``: a bar on a terminal (with tqdm), lines otherwise."""


@attrs.frozen(kw_only=True)
class ProgressState:
    """Where the import is: counts so far, bytes read of the total, seconds elapsed."""

    rows: int
    sent: int
    rejected: int
    skipped: int
    bytes_read: int
    bytes_total: int | None
    elapsed: float

    @property
    def rate(self) -> float:
        """Events sent per second so far."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        """Share of the input read (by bytes on disk), when the size is known."""
        if not self.bytes_total:
            return None
        return min(1.0, self.bytes_read / self.bytes_total)

    @property
    def eta(self) -> float | None:
        """Seconds left, estimated from the bytes read so far."""
        fraction = self.fraction
        if fraction is None or fraction <= 0 or self.elapsed <= 0:
            return None
        return self.elapsed * (1 - fraction) / fraction


class Progress(Protocol):
    """Shows progress; ``update`` is called often, ``close`` once."""

    def update(self, state: ProgressState) -> None:
        """Show ``state`` (may do nothing when the last showing was recent)."""

    def close(self, state: ProgressState) -> None:
        """Show the final state and release the output."""


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def describe(state: ProgressState) -> str:
    """One line saying where the import is."""
    fraction = state.fraction
    share = f" ({fraction:.0%})" if fraction is not None else ""
    return (
        f"import: {state.rows:,} rows{share}, {state.sent:,} sent, {state.rejected:,} rejected, "
        f"{state.skipped:,} skipped, {state.rate:,.0f} events/s, ETA {_clock(state.eta)}"
    )


class NoProgress:
    """Shows nothing."""

    def update(self, state: ProgressState) -> None:
        """Do nothing."""

    def close(self, state: ProgressState) -> None:
        """Do nothing."""


class LineProgress:
    """A plain line every ``interval`` seconds (for logs, CI, pipes)."""

    def __init__(self, stream: TextIO, interval: float) -> None:
        self.stream = stream
        self.interval = interval
        self._next = time.monotonic() + interval

    def update(self, state: ProgressState) -> None:
        """Print a line if ``interval`` has passed since the last."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            self.stream.write(describe(state) + "\n")
            self.stream.flush()

    def close(self, state: ProgressState) -> None:
        """Nothing more: the summary follows."""


class BarProgress:
    """A ``tqdm`` bar over the bytes of the input, with rows, events/s and failures."""

    def __init__(self, tqdm: Any, stream: TextIO, total: int | None) -> None:
        self._bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=stream,
            desc="import",
            dynamic_ncols=True,
            mininterval=0.25,
            leave=True,
        )
        self._shown = 0
        self._next = 0.0

    def update(self, state: ProgressState) -> None:
        """Move the bar (at most four times a second)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 0.25
        self._advance(state)

    def _advance(self, state: ProgressState) -> None:
        step = state.bytes_read - self._shown
        if step > 0:
            self._bar.update(step)
            self._shown = state.bytes_read
        self._bar.set_postfix_str(
            f"rows={state.rows:,} sent={state.sent:,} rejected={state.rejected:,} "
            f"{state.rate:,.0f} ev/s",
            refresh=False,
        )

    def close(self, state: ProgressState) -> None:
        """Show the final state and end the bar."""
        self._advance(state)
        self._bar.close()


def _tqdm() -> Any:
    try:
        module = importlib.import_module("tqdm")
    except ImportError:
        return None
    return getattr(module, "tqdm", None)


def make_progress(
    mode: str, stream: TextIO | None = None, *, total: int | None, interval: float = 10.0
) -> Progress:
    """The progress display for ``mode`` (see :data:`PROGRESS_MODES`) on ``stream``."""
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)}, got {mode!r}")
    out = stream if stream is not None else sys.stderr
    if mode == "none":
        return NoProgress()
    tty = bool(getattr(out, "isatty", lambda: False)())
    if mode == "bar" or (mode == "auto" and tty):
        tqdm = _tqdm()
        if tqdm is not None:
            return BarProgress(tqdm, out, total)
        if mode == "bar":
            out.write("progress bar needs tqdm (pip install 'tracardi-tracker[progress]')\n")
    return LineProgress(out, interval)
