"""``tracardi-tracker import``: the command line over :func:`import_events`.

``add_parser(subparsers)`` registers the subcommand (its handler is :func:`run`);
``python -m tracardi_tracker.importer`` runs the same command on its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from .._retry import RetryPolicy
from ..exceptions import TrackerError
from ._errors import ImportAbortedError, ImporterError
from ._importer import DEFAULT_RETRY, Shard, import_events
from ._mapping import TARGETS, FieldMapping
from ._progress import PROGRESS_MODES
from ._readers import CAST_NAMES, FORMATS
from ._summary import EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["add_parser", "build_parser", "configure", "main", "run"]

PROG = "tracardi-tracker import"
CHECKPOINT_DIR = ".tracardi-import"
"""Where checkpoints and reject files go by default (in the current directory)."""

_DESCRIPTION = """\
Import historical events from JSON Lines or CSV files (gzip too; '-' for standard input)
into Tracardi, with their original times. Streaming, idempotent (event ids are derived
from the rows) and resumable: after a crash or Ctrl+C, run the same command again and it
continues where it stopped.
"""
_EPILOG = f"""\
mapping targets: {", ".join(TARGETS)}, properties.KEY, context.KEY
column types: {", ".join(CAST_NAMES)}

exit status: 0 all sent; 1 some rows rejected (see the reject file); 2 bad options or
input; 3 stopped by Tracardi (source refused, server failing); 130 interrupted.
See docs/importer.md for the input format and examples.
"""


def add_parser(subparsers: Any) -> None:
    """Register ``import`` on the ``tracardi-tracker`` command's subparsers."""
    parser = subparsers.add_parser(
        "import",
        help="import historical events from JSON Lines or CSV files",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure(parser)


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for the command (``python -m tracardi_tracker.importer``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    return run(args)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to ``parser`` and make :func:`run` its handler."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="input files; '-' is stdin")
    target = parser.add_argument_group("where to")
    target.add_argument(
        "--endpoint",
        default=os.environ.get("TRACARDI_ENDPOINT"),
        metavar="URL",
        help="Tracardi's API URL, e.g. http://localhost:8686 (default: $TRACARDI_ENDPOINT)",
    )
    target.add_argument(
        "--source",
        default=os.environ.get("TRACARDI_SOURCE_ID"),
        metavar="ID",
        help="the event source id (a REST source) (default: $TRACARDI_SOURCE_ID)",
    )
    reading = parser.add_argument_group("reading the rows")
    reading.add_argument("--format", choices=FORMATS, help="input format (default: by name)")
    reading.add_argument("--mapping", metavar="FILE", help="a TOML or JSON mapping file")
    reading.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=SOURCE",
        help="read event FIELD from the row's SOURCE path or CSV column "
        "(e.g. --map type=event --map profile.id=user_id); repeatable",
    )
    reading.add_argument(
        "--cast",
        action="append",
        default=[],
        metavar="COLUMN=TYPE",
        help=f"read a CSV column as TYPE ({', '.join(CAST_NAMES)}); repeatable",
    )
    reading.add_argument(
        "--timezone",
        metavar="ZONE",
        help="where times without an offset were recorded (Europe/Warsaw, UTC, +02:00); "
        "without it such times are rejected, never guessed",
    )
    reading.add_argument(
        "--list-separator", metavar="SEP", help="separator of CSV list cells (default '|')"
    )
    reading.add_argument(
        "--session-gap",
        type=float,
        default=30.0,
        metavar="MINUTES",
        help="a profile's rows without a session start a new one after this gap (30)",
    )
    sending = parser.add_argument_group("sending")
    sending.add_argument("--batch-size", type=int, default=500, metavar="N", help="(500)")
    sending.add_argument(
        "--concurrency", type=int, default=16, metavar="N", help="requests in flight (16)"
    )
    sending.add_argument("--rate", type=float, metavar="EVENTS_PER_S", help="at most this rate")
    sending.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="(30)")
    sending.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRY.attempts,
        metavar="N",
        help=f"tries per payload on 5xx/network errors ({DEFAULT_RETRY.attempts})",
    )
    sending.add_argument(
        "--shard",
        metavar="K/N",
        help="import only shard K of N (by profile), e.g. 1/4 ... 4/4 on four machines",
    )
    sending.add_argument(
        "--dry-run", action="store_true", help="check every row, report problems, send nothing"
    )
    state = parser.add_argument_group("resuming and reports")
    state.add_argument(
        "--checkpoint",
        metavar="FILE",
        help=f"checkpoint file (default: one per import in ./{CHECKPOINT_DIR}/)",
    )
    state.add_argument(
        "--no-checkpoint", action="store_true", help="do not record progress (cannot resume)"
    )
    state.add_argument(
        "--restart", action="store_true", help="forget the checkpoint and send everything"
    )
    state.add_argument(
        "--rejects",
        metavar="FILE",
        help="JSON Lines file for rows that cannot be sent (default: next to the checkpoint)",
    )
    state.add_argument(
        "--profile-map",
        metavar="FILE",
        help="write the profile ids Tracardi replaced, as JSON Lines {old, new}",
    )
    state.add_argument(
        "--progress", choices=PROGRESS_MODES, default="auto", help="(auto: a bar on a terminal)"
    )
    state.add_argument(
        "--progress-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress lines when not on a terminal (10)",
    )
    parser.set_defaults(handler=run)


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, equals, source = value.partition("=")
        if not equals or not name.strip() or not source.strip():
            raise ImporterError(f"{option} expects NAME=VALUE, got {value!r}")
        pairs[name.strip()] = source.strip()
    return pairs


def default_checkpoint(files: Sequence[str], endpoint: str, source: str, shard: str | None) -> Path:
    """The checkpoint path of an import: one per (files, endpoint, source, shard)."""
    names = [str(Path(name).resolve()) if name != "-" else "-" for name in files]
    key = json.dumps([names, endpoint.rstrip("/"), source, shard])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    stem = Path(files[0]).name.split(".")[0] if files[0] != "-" else "stdin"
    suffix = f"-shard{shard.replace('/', 'of')}" if shard else ""
    return Path(CHECKPOINT_DIR) / f"{stem or 'import'}{suffix}-{digest}.checkpoint"


def _mapping(args: argparse.Namespace) -> FieldMapping:
    base = FieldMapping.from_file(args.mapping) if args.mapping else FieldMapping()
    return base.with_overrides(
        fields=_pairs(args.map, "--map"),
        types=_pairs(args.cast, "--cast"),
        timezone=args.timezone,
        list_separator=args.list_separator,
        format=args.format,
    )


@contextmanager
def _graceful(stop: threading.Event) -> Iterator[None]:
    """First Ctrl+C (or SIGTERM) stops the import cleanly; a second one aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        sys.stderr.write("\nstopping: waiting for the requests in flight (Ctrl+C again to quit)\n")

    previous = {number: signal.signal(number, on_signal) for number in _signals()}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _signals() -> list[int]:
    return [signal.SIGINT, signal.SIGTERM] if hasattr(signal, "SIGTERM") else [signal.SIGINT]


def run(args: argparse.Namespace) -> int:
    """Run the import the parsed ``args`` describe; print progress and the summary."""
    out, err = sys.stdout, sys.stderr
    try:
        if not args.endpoint:
            raise ImporterError("--endpoint is required (or set TRACARDI_ENDPOINT)")
        if not args.source:
            raise ImporterError("--source is required (or set TRACARDI_SOURCE_ID)")
        mapping = _mapping(args)
        shard = Shard.parse(args.shard) if args.shard else None
        stdin = "-" in args.files
        checkpoint: Path | None = None
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
        elif not (args.no_checkpoint or args.dry_run or stdin):
            checkpoint = default_checkpoint(
                args.files, args.endpoint, args.source, str(shard) if shard else None
            )
        rejects: Path | None = Path(args.rejects) if args.rejects else None
        if rejects is None and not args.dry_run:
            rejects = (
                checkpoint.with_suffix(".rejects.jsonl")
                if checkpoint is not None
                else Path(CHECKPOINT_DIR) / "rejects.jsonl"
            )
        if args.retries < 1:
            raise ImporterError(f"--retries must be at least 1, got {args.retries}")
        retry = RetryPolicy(
            attempts=args.retries,
            initial_wait=DEFAULT_RETRY.initial_wait,
            max_wait=DEFAULT_RETRY.max_wait,
            max_elapsed=DEFAULT_RETRY.max_elapsed,
        )
        if stdin and checkpoint is None and not args.dry_run:
            err.write("note: reading standard input without --checkpoint: cannot resume\n")
        if checkpoint is not None and not args.dry_run:
            err.write(f"checkpoint: {checkpoint} (run the same command to resume)\n")
        stop = threading.Event()
        with _graceful(stop):
            summary = import_events(
                args.files,
                endpoint=args.endpoint,
                source_id=args.source,
                mapping=mapping,
                session_gap=args.session_gap * 60,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                rate=args.rate,
                shard=shard,
                checkpoint=checkpoint,
                restart=args.restart,
                rejects=rejects,
                profile_map=args.profile_map,
                dry_run=args.dry_run,
                retry=retry,
                timeout=args.timeout,
                progress=args.progress,
                progress_stream=err,
                progress_interval=args.progress_interval,
                stop=stop,
            )
    except ImportAbortedError as error:
        out.write(error.summary.describe() + "\n")
        out.flush()
        return error.summary.exit_code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except (TrackerError, ValueError, OSError) as error:
        err.write(f"{PROG}: error: {error}\n")
        return EXIT_USAGE
    out.write(summary.describe() + "\n")
    out.flush()
    return summary.exit_code
