"""How many events per second the local collector takes, in batches, over keep-alive HTTP.

Starts ``tracardi-tracker collector`` in its own process (SQLite file in a temporary
directory, WAL), then posts pre-built ``/track`` payloads of ``--batch`` events each from this
process over ``--connections`` keep-alive connections, and prints events/s, the collector's CPU
time per event (its user + system time over the run, read from ``/proc``: steadier than events/s
on a busy machine; Linux only) and the command that produced them. Every batch must be answered
200 and every event must be stored, or the run fails. ``--in-process`` runs the collector on a
thread of this process instead (the client then shares its interpreter, and no CPU time is
shown).

    python bench/collector.py --events 200000 --batch 500
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracardi_tracker.collector import Collector


def _payload(batch: int, seed: int) -> bytes:
    session = str(uuid.UUID(int=seed + 1))
    events = [
        {
            "id": str(uuid.uuid4()),
            "type": "page-view",
            "time": {"create": "2024-06-24T10:00:00.123Z"},
            "properties": {
                "url": f"https://shop.example/products/{index}",
                "title": f"Product {index}",
                "referrer": "https://search.example/?q=shoes",
                "position": index,
            },
            "context": {"page": {"url": f"https://shop.example/products/{index}"}},
            "tags": ["bench"],
            "options": {},
        }
        for index in range(batch)
    ]
    return json.dumps(
        {
            "source": {"id": "bench-source"},
            "session": {"id": session},
            "profile": {"id": str(uuid.UUID(int=seed + 1000))},
            "context": {"app": {"name": "bench", "version": "1"}},
            "options": {},
            "events": events,
        }
    ).encode()


def _process_cpu(pid: int | None) -> float | None:
    """Seconds of CPU (user + system) process ``pid`` used so far; ``None`` if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client(
    url: str, batches: int, batch: int, connections: int, pid: int | None = None
) -> dict[str, Any]:
    """Post ``batches`` payloads; return the elapsed seconds, failures and ``pid``'s CPU."""
    host, port = url.removeprefix("http://").split(":")
    # one body per request, built before the timing: the collector keeps one event per
    # id (as Tracardi does), so bodies must not repeat ids
    bodies = [_payload(batch, seed % 8) for seed in range(batches + 1)]
    headers = {"Content-Type": "application/json", "User-Agent": "tracardi-bench/1.0"}
    per_connection = [batches // connections] * connections
    per_connection[0] += batches - sum(per_connection)
    failures: list[str] = []

    def run(count: int, first: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        for index in range(first, first + count):
            conn.request("POST", "/track", bodies[index], headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
        conn.close()

    # warm up one request per connection, outside the timing
    warm = http.client.HTTPConnection(host, int(port), timeout=60)
    warm.request("POST", "/track", bodies[batches], headers)
    warm.getresponse().read()
    warm.close()
    firsts = [sum(per_connection[:n]) for n in range(connections)]
    threads = [
        threading.Thread(target=run, args=(count, first))
        for first, count in zip(firsts, per_connection, strict=True)
    ]
    cpu_before = _process_cpu(pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after = _process_cpu(pid)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {"elapsed": elapsed, "failures": failures[:5], "failed": len(failures), "cpu": cpu}


def _start_collector(db: str, version: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``tracardi-tracker collector`` in its own process; return it and its URL."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "tracardi_tracker", "collector", "--port", "0", "--db", db,
               "--tracardi-version", version]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    banner = process.stdout.readline()
    if " listening on " not in banner:
        process.kill()
        raise RuntimeError(f"collector did not start: {banner!r}")
    return process, banner.split(" listening on ")[1].split()[0]


def _stored(url: str) -> int:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/micro/all")
    count = int(json.loads(conn.getresponse().read())["good"])
    conn.close()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to send")
    parser.add_argument("--batch", type=int, default=500, help="events per request")
    parser.add_argument("--connections", type=int, default=1, help="keep-alive connections")
    parser.add_argument("--tracardi-version", default="0.9")
    parser.add_argument("--memory", action="store_true", help="SQLite in memory, not a file")
    parser.add_argument(
        "--in-process", action="store_true", help="run the collector in this process (a thread)"
    )
    args = parser.parse_args()
    batches = max(args.events // args.batch, 1)
    command = (
        f"python bench/collector.py --events {args.events} --batch {args.batch} "
        f"--connections {args.connections} --tracardi-version {args.tracardi_version}"
        + (" --memory" if args.memory else "")
        + (" --in-process" if args.in_process else "")
    )
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        db = ":memory:" if args.memory else os.path.join(tmp, "bench.db")
        pid: int | None = None
        if args.in_process:
            collector = Collector(
                db=None if args.memory else db, tracardi_version=args.tracardi_version
            ).start()
            url, stop = collector.url, collector.stop
        else:
            process, url = _start_collector(db, args.tracardi_version)
            pid = process.pid

            def stop() -> None:
                process.send_signal(signal.SIGINT)
                process.communicate(timeout=30)

        try:
            result = _client(url, batches, args.batch, args.connections, pid)
            stored = _stored(url)
        finally:
            stop()
    sent = batches * args.batch
    expected = sent + args.batch  # plus the warm-up request
    if result["failed"] or stored != expected:
        print(f"FAILED: {result['failed']} failed requests {result['failures']}; "
              f"stored {stored} of {expected} events", file=sys.stderr)  # fmt: skip
        return 1
    rate = sent / result["elapsed"]
    where = "in this process" if args.in_process else "in its own process"
    print(
        f"collector: {rate:,.0f} events/s ({sent:,} events in {batches} batches of "
        f"{args.batch} over {args.connections} keep-alive connection(s), collector {where}, "
        f"{'in-memory' if args.memory else 'WAL file'} SQLite, {result['elapsed']:.2f} s)"
    )
    if result["cpu"] is not None:
        print(f"collector CPU: {result['cpu'] / sent * 1e6:.2f} µs/event (user + system time)")
    print(f"command: {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
