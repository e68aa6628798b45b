"""Benchmark: the caller's cost of track() and end-to-end delivery to a local collector.

    python bench/tracker.py [--events 100000] [--visitors 100] [--url URL] [--spool]

Without ``--url`` it starts the project's collector in a separate process on a free
loopback port (so the collector does not share this process's GIL). The workload is
the one issue #4 names: page views alternating with a custom event with five
properties, spread over 100 visitors. Prints the figures and the command:

- ``track_us_mean``: wall time per ``track()`` call in the loop, the figure issue #4
  targets; it includes the moments the worker threads hold the GIL;
- ``track_caller_cpu_us``: the calling thread's own CPU per call;
- ``process_cpu_us_per_event``: all of this process's CPU (caller, worker, sender)
  from the first ``track()`` to the end of ``flush()``, per event: what the SDK costs
  an application in total.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracardi_tracker import BackgroundEmitter, Event, PageView, Subject, Tracker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def collector() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracardi_tracker",
                "collector",
                "--port",
                str(port),
                "--db",
                str(Path(tmp) / "bench.sqlite3"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"{url}/micro/info", timeout=1).read()
                    break
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def stored(url: str) -> int:
    with urllib.request.urlopen(f"{url}/micro/info", timeout=30) as answer:
        return int(json.loads(answer.read())["summary"]["good"])


def run(
    url: str, events: int, visitors: int, spool: str | None, batch_size: int = 500
) -> dict[str, float]:
    people = [Subject(user_id=f"visitor-{n}", useragent="Mozilla/5.0") for n in range(visitors)]
    workload = []
    for n in range(events):
        who = people[n % visitors]
        if n % 2 == 0:
            workload.append(
                PageView(f"https://shop.example/p/{n % 50}", "Product", event_subject=who)
            )
        else:
            workload.append(
                Event(
                    "Add To Cart",
                    {
                        "sku": f"A{n % 97}",
                        "price": 49.9,
                        "quantity": 2,
                        "gift": False,
                        "note": None,
                    },
                    event_subject=who,
                )
            )
    emitter = BackgroundEmitter(spool=spool, batch_size=batch_size)
    tracker = Tracker(url, "bench-source", emitter=emitter)
    before = stored(url)
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    track = tracker.track
    cpu_started = time.process_time()
    caller_started = time.thread_time()
    started = time.perf_counter()
    for event in workload:
        track(event)
    tracked = time.perf_counter()
    caller_cpu = time.thread_time() - caller_started
    unsent = tracker.flush(120)
    done = time.perf_counter()
    cpu = time.process_time() - cpu_started
    stats = emitter.stats()
    tracker.close()
    arrived = stored(url) - before
    return {
        "track_us_mean": (tracked - started) / events * 1e6,
        "track_caller_cpu_us": caller_cpu / events * 1e6,
        "process_cpu_us_per_event": cpu / events * 1e6,
        "delivered_per_s": arrived / (done - started),
        "arrived": arrived,
        "unsent": unsent,
        "dropped": stats.dropped,
        "failed": stats.failed,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--visitors", type=int, default=100)
    parser.add_argument("--url", help="a running Tracardi or collector; default: start one")
    parser.add_argument("--spool", action="store_true", help="also measure with a spool")
    parser.add_argument("--batch-size", type=int, default=500, help="the emitter's batch_size")
    args = parser.parse_args()
    print("command:", "python", " ".join(sys.argv))
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(collector())
        result = run(url, args.events, args.visitors, None, args.batch_size)
        print("memory queue:", json.dumps(result))
        if args.spool:
            with tempfile.TemporaryDirectory() as tmp:
                spooled = run(
                    url, args.events, args.visitors, str(Path(tmp) / "spool"), args.batch_size
                )
            print("with spool:  ", json.dumps(spooled))
            print(f"spool cost: {spooled['track_us_mean'] / result['track_us_mean']:.2f}x track()")


if __name__ == "__main__":
    main()
