"""The ``tracardi-tracker`` command line (also ``python -m tracardi_tracker``).

Subcommands:

``collector``
    Run the local Tracardi collector in the foreground until Ctrl+C.
``events``
    Print what a collector stored, as a table (from its URL or its database file).
``demo SCRIPT``
    Start a collector on a free port, run ``SCRIPT`` against it (``TRACARDI_ENDPOINT``,
    ``TRACARDI_SOURCE_ID``), print what it stored, exit with the script's status.

Each subcommand is one ``_add_<name>`` function that registers its arguments and handler, so
another (``import``) is one more function in :data:`_COMMANDS`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from ._version import __version__

if TYPE_CHECKING:
    from .collector import BadRequest, Collector, StoredEvent

__all__ = ["DEMO_SOURCE_ID", "main"]

DEMO_SOURCE_ID = "demo-source"
"""The event source id ``demo`` configures and hands to the script."""

_DEFAULT_DB = "tracardi-collector.db"
_DEFAULT_URL = "http://127.0.0.1:8686"

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return handler(args)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracardi-tracker",
        description="Tools of the tracardi-tracker SDK for Tracardi.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in _COMMANDS:
        add(subparsers)
    return parser


def _width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


# -- collector -----------------------------------------------------------------------------


def _add_collector(subparsers: Any) -> None:
    from .collector import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_VERSION, VERSIONS

    parser = subparsers.add_parser(
        "collector",
        help="run a local Tracardi collector",
        description="Run a local collector that answers /track as Tracardi does and stores "
        "events in SQLite. Inspect them at http://HOST:PORT/ or with `tracardi-tracker events`.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (%(default)s)")
    parser.add_argument(
        "--db",
        default=_DEFAULT_DB,
        help="SQLite file for events (%(default)s); ':memory:' keeps nothing",
    )
    parser.add_argument(
        "--tracardi-version",
        choices=sorted(VERSIONS),
        default=DEFAULT_VERSION,
        help="Tracardi release line to imitate (%(default)s)",
    )
    parser.add_argument(
        "--source",
        action="append",
        dest="sources",
        metavar="ID",
        help="accept this event source id (repeatable); by default any id is accepted",
    )
    parser.add_argument(
        "--disabled-source",
        action="append",
        dest="disabled_sources",
        default=[],
        metavar="ID",
        help='a source that exists but is disabled ("Event source disabled.")',
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow listening on a non-loopback address (reachable from other hosts)",
    )
    parser.add_argument(
        "--static-profile-ids",
        action="store_true",
        help="keep every client profile id (a REST source with static profile ids)",
    )
    parser.add_argument(
        "--track-debug",
        action="store_true",
        help="TRACK_DEBUG=yes: with options.debugger the answer lists stored event ids",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    faults = parser.add_argument_group("faults (on /track; all off by default)")
    faults.add_argument("--latency", type=float, default=0.0, metavar="SECONDS")
    faults.add_argument(
        "--outage",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="answer --fail-status for this long after start",
    )
    faults.add_argument(
        "--fail-next",
        type=int,
        default=0,
        metavar="N",
        help="answer --fail-status to the first N requests",
    )
    faults.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="answer --fail-status to this fraction of requests",
    )
    faults.add_argument("--seed", type=int, default=None, help="seed for --fail-rate")
    faults.add_argument("--fail-status", type=int, default=503, metavar="STATUS")
    faults.add_argument(
        "--throttle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="answer 429 with Retry-After for this long after start",
    )
    faults.add_argument(
        "--throttle-next",
        type=int,
        default=0,
        metavar="N",
        help="answer 429 to the first N requests",
    )
    faults.add_argument("--retry-after", type=int, default=1, metavar="SECONDS")
    faults.add_argument(
        "--refuse",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="refuse connections for this long after start",
    )
    faults.add_argument(
        "--reset-next",
        type=int,
        default=0,
        metavar="N",
        help="reset the connection of the first N requests",
    )
    parser.set_defaults(handler=_run_collector)


def _faults_from(args: argparse.Namespace) -> Any:
    from .collector import Faults

    return Faults(
        latency_seconds=args.latency,
        outage_seconds=args.outage,
        fail_next=args.fail_next,
        fail_rate=args.fail_rate,
        seed=args.seed,
        status=args.fail_status,
        throttle_seconds=args.throttle,
        throttle_next=args.throttle_next,
        retry_after=args.retry_after,
        refuse_seconds=args.refuse,
        reset_next=args.reset_next,
    )


def _run_collector(args: argparse.Namespace) -> int:
    import logging

    from .collector import Collector, CollectorError

    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s")
    try:
        collector = Collector(
            host=args.host,
            port=args.port,
            db=None if args.db == ":memory:" else args.db,
            tracardi_version=args.tracardi_version,
            sources=args.sources,
            disabled_sources=args.disabled_sources,
            allow_remote=args.allow_remote,
            static_profile_ids=args.static_profile_ids,
            track_debug=args.track_debug,
            faults=_faults_from(args),
        )
        collector.start()
    except (CollectorError, ValueError) as error:
        print(f"tracardi-tracker collector: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:  # from here on, Ctrl-C (even at once, before the banner is out) stops it cleanly
        # This process only serves the collector: collect garbage less often (each request
        # makes thousands of short-lived containers) and leave start-up objects out of full
        # collections.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        _print_banner(collector, args.db)
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        summary = collector.summary()
        collector.stop()
    stored = f"{summary['good']} events stored, {summary['bad']} requests rejected"
    where = "" if args.db == ":memory:" else f" (in {args.db})"
    print(f"Collector stopped: {stored}{where}.", flush=True)
    return 0


def _print_banner(collector: Collector, db: str) -> None:
    config = collector.config
    version = collector.version
    if config.allow_remote and config.host not in ("127.0.0.1", "::1", "localhost"):
        reach = "reachable from other hosts"
    else:
        reach = "loopback only; --allow-remote to accept other hosts"
    sources = (
        "any event source id accepted (restrict with --source ID)"
        if config.sources is None
        else "event sources: " + ", ".join(sorted(config.sources))
    )
    lines = [
        f"Tracardi collector listening on {collector.url} ({reach})",
        f"  answers /track like Tracardi {version.name}: {version.covers}",
        f"  {sources}",
        f"  events: {collector.url}/ , {collector.url}/micro/good"
        + ("" if db == ":memory:" else f" , stored in {db}"),
    ]
    if config.faults.active:
        defaults = type(config.faults)().to_json()
        changed = {k: v for k, v in config.faults.to_json().items() if v != defaults[k]}
        lines.append(f"  faults: {json.dumps(changed)}")
    lines.append("Press Ctrl+C to stop.")
    print("\n".join(lines), flush=True)


# -- events --------------------------------------------------------------------------------


def _add_events(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "events",
        help="print the events a collector stored",
        description="Print the events a local collector stored, as a table.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help=f"a running collector's URL (default {_DEFAULT_URL})")
    where.add_argument("--db", help="a collector's SQLite file (the collector may be stopped)")
    parser.add_argument("--type", help="only events of this type")
    parser.add_argument("--profile", help="only events of this profile id")
    parser.add_argument("--session", help="only events of this session id")
    parser.add_argument("--limit", type=int, help="only the last N events")
    parser.add_argument("--bad", action="store_true", help="also list rejected requests")
    parser.add_argument("--full-ids", action="store_true", help="do not shorten ids")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead")
    parser.set_defaults(handler=_run_events)


def _run_events(args: argparse.Namespace) -> int:
    try:
        events, bad = _read_db(args) if args.db else _read_url(args)
    except (OSError, ValueError) as error:
        source = args.db or args.url or _DEFAULT_URL
        print(f"tracardi-tracker events: cannot read {source}: {error}", file=sys.stderr)
        return 1
    if args.limit is not None:
        events = events[-args.limit :] if args.limit > 0 else []
    _print_events(events, bad if args.bad else [], args.json, args.full_ids, sys.stdout)
    return 0


def _read_db(args: argparse.Namespace) -> tuple[list[StoredEvent], list[BadRequest]]:
    import sqlite3

    from .collector._engine import normalize_type
    from .collector._store import Store

    if not Path(args.db).is_file():
        raise OSError(f"no such file: {args.db}")
    try:
        store = Store(args.db, readonly=True)
        try:
            events = store.events(
                type=normalize_type(args.type) if args.type else None,
                profile=args.profile,
                session=args.session,
            )
            bad = store.bad() if args.bad else []
        finally:
            store.close()
    except sqlite3.Error as error:
        raise ValueError(f"not a collector database ({error})") from error
    return events, bad


def _read_url(args: argparse.Namespace) -> tuple[list[StoredEvent], list[BadRequest]]:
    from .collector import BadRequest, StoredEvent

    base = (args.url or _DEFAULT_URL).rstrip("/")
    filters = {
        key: value
        for key, value in (
            ("type", args.type),
            ("profile", args.profile),
            ("session", args.session),
        )
        if value
    }
    query = f"?{urllib.parse.urlencode(filters)}" if filters else ""
    events = [StoredEvent.from_json(item) for item in _get_json(f"{base}/micro/good{query}")]
    bad = (
        [BadRequest.from_json(item) for item in _get_json(f"{base}/micro/bad")] if args.bad else []
    )
    return events, bad


def _get_json(url: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(url, headers={"User-Agent": f"tracardi-tracker/{__version__}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        data = json.load(response)
    if not isinstance(data, list):
        raise ValueError(f"{url} did not answer a JSON list")
    return data


def _print_events(
    events: Sequence[StoredEvent],
    bad: Sequence[BadRequest],
    as_json: bool,
    full_ids: bool,
    out: TextIO,
) -> None:
    from .collector import format_bad, format_events

    if as_json:
        for event in events:
            out.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
        for item in bad:
            out.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
        return
    out.write(format_events(events, width=_width(), full_ids=full_ids) + "\n")
    if bad:
        count = len(bad)
        out.write(f"\n{count} rejected request{'s' if count != 1 else ''}:\n")
        out.write(format_bad(bad, width=_width()) + "\n")


# -- demo ----------------------------------------------------------------------------------


def _add_demo(subparsers: Any) -> None:
    from .collector import DEFAULT_VERSION, VERSIONS

    parser = subparsers.add_parser(
        "demo",
        help="run a script against a throw-away local collector",
        description="Start a collector on a free port, run SCRIPT with TRACARDI_ENDPOINT and "
        f"TRACARDI_SOURCE_ID={DEMO_SOURCE_ID} set, then print what it stored. Exits with the "
        "script's status, or 1 if nothing was stored.",
    )
    parser.add_argument("--tracardi-version", choices=sorted(VERSIONS), default=DEFAULT_VERSION)
    parser.add_argument("--db", help="keep the events in this SQLite file (default: temporary)")
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for SCRIPT")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .collector import Collector, CollectorError

    script = Path(args.script)
    if not script.is_file():
        print(f"tracardi-tracker demo: no such script: {script}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tracardi-demo-") as tmp:
        db = args.db or os.path.join(tmp, "demo.db")
        try:
            collector = Collector(
                db=db, tracardi_version=args.tracardi_version, sources=[DEMO_SOURCE_ID]
            ).start()
        except CollectorError as error:
            print(f"tracardi-tracker demo: {error}", file=sys.stderr)
            return 1
        try:
            print(
                f"Local Tracardi collector (like Tracardi {args.tracardi_version}) at "
                f"{collector.url}, source id {DEMO_SOURCE_ID!r}; running {script}\n",
                flush=True,
            )
            env = {
                **os.environ,
                "TRACARDI_ENDPOINT": collector.url,
                "TRACARDI_SOURCE_ID": DEMO_SOURCE_ID,
            }
            result = subprocess.run([sys.executable, str(script), *args.script_args], env=env)
            events, bad = collector.events(), collector.bad()
        finally:
            collector.stop()
    print(f"\nThe collector stored {len(events)} event{'s' if len(events) != 1 else ''}:")
    _print_events(events, bad, False, False, sys.stdout)
    sys.stdout.flush()
    if result.returncode != 0:
        print(f"{script} exited with status {result.returncode}", file=sys.stderr)
        return result.returncode
    if not events:
        print(f"{script} stored no events", file=sys.stderr)
        return 1
    return 0


def _add_import(subparsers: Any) -> None:
    from .importer._cli import add_parser

    add_parser(subparsers)


_COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_collector,
    _add_events,
    _add_demo,
    _add_import,
)
"""Every subcommand's registration function, in ``--help`` order."""
