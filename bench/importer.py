"""How fast ``tracardi-tracker import`` replays history, and whether its memory stays flat.

Generates a JSON Lines export of ``--events`` events (default 1,000,000: profiles visiting
a shop, ``--visit`` events a visit on average, rows sorted by time as a real export is),
then runs the importer in a child process against

- ``collector``: the local collector (``python -m tracardi_tracker collector --db FILE``,
  another process), checking that every event was stored;
- ``sink``: a do-nothing HTTP server (asyncio, another process) that answers 200 as soon
  as a request's body is in, which shows the importer's own ceiling.

For each it prints events/s, the importer's CPU time per event (user + system, the
measure that holds on a shared machine), the server's CPU time per event (read from
``/proc``, Linux only; each collector run starts a new collector on a new database), how
many commits the collector's requests shared, the peak memory (max RSS) of the importer, and
the command that does the same. ``--runs N`` repeats each import (medians are shown too).
With ``--memory-check`` it also imports a tenth of the file and compares peak memory: flat
means the same within a few MB.

    python bench/importer.py                       # 1,000,000 events, both targets
    python bench/importer.py --events 200000 --target sink --runs 3
    python bench/importer.py --target collector --history /tmp/history.jsonl  # kept
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCE_ID = "bench-source"
START = datetime(2023, 1, 1, tzinfo=timezone.utc).timestamp()


def _visits(profile: int, rng: random.Random, mean: float) -> Iterator[tuple[float, int, int]]:
    """One profile's events in time order: (time, profile, sequence)."""
    moment = START + rng.random() * 86400 * 60
    sequence = 0
    for _ in range(rng.randint(1, 5)):
        for _ in range(max(1, round(rng.expovariate(1 / mean)))):
            moment += rng.uniform(5, 120)
            sequence += 1
            yield moment, profile, sequence
        moment += rng.uniform(3600, 86400 * 7)


def generate(path: Path, events: int, visit: float, seed: int = 7) -> int:
    """Write ``events`` rows sorted by time, merging profiles lazily; returns profiles used."""
    rng = random.Random(seed)
    average_per_profile = visit * 3
    profiles = max(1, round(events / average_per_profile * 1.1))
    streams = [_visits(number, random.Random(rng.random()), visit) for number in range(profiles)]
    written = 0
    with path.open("w", encoding="utf-8") as file:
        for moment, profile, sequence in heapq.merge(*streams):
            stamp = datetime.fromtimestamp(moment, timezone.utc)
            created = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
            product = (profile * 31 + sequence) % 5000
            file.write(
                json.dumps(
                    {
                        "type": "page-view" if sequence % 7 else "add-to-cart",
                        "time": {"create": created},
                        "profile": {"id": f"customer-{profile:07d}"},
                        "properties": {"sku": f"SKU-{product:05d}", "price": product / 100},
                        "context": {"page": {"url": f"https://shop.example/p/{product}"}},
                        "tags": ["history"],
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
            written += 1
            if written >= events:
                break
    return profiles


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s")


_SINK = r"""
import asyncio, re, sys
BODY = (b'{"task":"t","ux":[],"response":{},"events":[],"profile":{"id":null},'
        b'"session":{"id":null},"errors":[],"warnings":[]}')
ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
          + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)

class Sink(asyncio.Protocol):
    # answers 200 to every request as soon as its body is in; parses nothing else
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = LENGTH.search(self.buffer, 0, end)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.transport.write(ANSWER)

async def main():
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""


def _child(args: argparse.Namespace) -> int:
    """Run one import in this process and print its account, CPU time and peak memory."""
    from tracardi_tracker.importer import import_events

    started = resource.getrusage(resource.RUSAGE_SELF)
    summary = import_events(
        [args.child],
        endpoint=args.endpoint,
        source_id=SOURCE_ID,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        checkpoint=args.checkpoint,
        restart=True,
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - started.ru_utime - started.ru_stime
    peak_kb = usage.ru_maxrss
    print(
        json.dumps(
            {
                "rows": summary.rows,
                "sent": summary.sent,
                "rejected": summary.rejected,
                "requests": summary.requests,
                "sessions": summary.sessions,
                "duration": summary.duration,
                "events_per_second": summary.events_per_second,
                "cpu_us_per_event": cpu / max(1, summary.sent) * 1e6,
                "peak_rss_mb": peak_kb / 1024,
            }
        )
    )
    return 0


def _run_import(
    path: Path, endpoint: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        str(path),
        "--endpoint",
        endpoint,
        "--concurrency",
        str(args.concurrency),
        "--batch-size",
        str(args.batch_size),
        "--checkpoint",
        str(workdir / f"{path.stem}.checkpoint"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the import failed:\n{result.stdout}\n{result.stderr}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _process_cpu(pid: int) -> float | None:
    """Seconds of CPU (user + system, all threads) process ``pid`` used so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _collector_commits(url: str) -> int:
    with urllib.request.urlopen(f"{url}/micro/info", timeout=30) as response:
        return int(json.load(response).get("commits", 0))


def _collector_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/micro/all", timeout=30) as response:
        return int(json.load(response)["good"])


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=30)


def _target(name: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a sink, or a collector on a new database file (each run a fresh import: into
    a database emptied by ``/micro/reset`` SQLite reuses freed pages, which costs more, and
    a second import of the same file would only overwrite its events)."""
    for stale in workdir.glob("collector.db*"):
        stale.unlink()
    port = _free_port()
    if name == "collector":
        command = [
            sys.executable,
            "-m",
            "tracardi_tracker",
            "collector",
            "--port",
            str(port),
            "--db",
            str(workdir / "collector.db"),
            "--source",
            SOURCE_ID,
        ]
    else:
        command = [sys.executable, "-c", _SINK, str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_listening(port, process)
    return process, f"http://127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--visit", type=float, default=40.0, help="mean events per visit")
    parser.add_argument("--target", choices=["collector", "sink", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1, help="imports per target (noisy hosts)")
    parser.add_argument("--memory-check", action="store_true", help="also import a tenth")
    parser.add_argument(
        "--history",
        type=Path,
        help="the JSON Lines file to import: generated there if missing, else reused as is "
        "(it must have been generated with the same --events and --visit)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)

    with tempfile.TemporaryDirectory(prefix="tracardi-import-bench-") as tmp:
        workdir = Path(tmp)
        path = args.history or workdir / "history.jsonl"
        if path.exists():
            print(f"reusing {path} ({path.stat().st_size / 2**20:,.0f} MB)")
        else:
            started = time.perf_counter()
            profiles = generate(path, args.events, args.visit)
            size_mb = path.stat().st_size / 2**20
            print(
                f"generated {args.events:,} events of {profiles:,} profiles "
                f"({size_mb:,.0f} MB) in {time.perf_counter() - started:.1f}s"
            )
        small = None
        if args.memory_check:
            small = workdir / "history-tenth.jsonl"
            with path.open("rb") as source, small.open("wb") as target:
                for index, line in enumerate(source):
                    if index >= args.events // 10:
                        break
                    target.write(line)
        targets = ["sink", "collector"] if args.target == "both" else [args.target]
        for name in targets:
            server, url = _target(name, workdir)
            try:
                results = []
                for run in range(max(1, args.runs)):
                    if name == "collector" and run > 0:  # a new collector and database
                        _stop(server)
                        server, url = _target(name, workdir)
                    commits_before = _collector_commits(url) if name == "collector" else 0
                    server_before = _process_cpu(server.pid)
                    result = _run_import(path, url, args, workdir)
                    server_after = _process_cpu(server.pid)
                    if name == "collector":
                        result["commits"] = _collector_commits(url) - commits_before
                    if server_before is not None and server_after is not None:
                        result["server_cpu_us_per_event"] = (
                            (server_after - server_before) / max(1, result["sent"]) * 1e6
                        )
                    results.append(result)
                    stored = _collector_count(url) if name == "collector" else None
                    print(
                        f"[{name}] {result['sent']:,} events in {result['duration']:.1f}s = "
                        f"{result['events_per_second']:,.0f} events/s, "
                        f"{result['cpu_us_per_event']:.1f} µs CPU/event, "
                        + (
                            f"{name} {result['server_cpu_us_per_event']:.1f} µs CPU/event, "
                            if "server_cpu_us_per_event" in result
                            else ""
                        )
                        + f"{result['requests']:,} requests, "
                        f"peak memory {result['peak_rss_mb']:.0f} MB"
                        + (f"; collector stored {stored:,}" if stored is not None else "")
                        + (f" in {result['commits']:,} commits" if "commits" in result else "")
                    )
                    if stored is not None and stored != result["sent"]:
                        print(f"[{name}] MISMATCH: sent {result['sent']:,}, stored {stored:,}")
                        return 1
                tenth = None
                if small is not None:
                    if name == "collector":
                        _stop(server)
                        server, url = _target(name, workdir)
                    tenth = _run_import(small, url, args, workdir)
            finally:
                _stop(server)
            if len(results) > 1:
                rates = [item["events_per_second"] for item in results]
                cpus = [item["cpu_us_per_event"] for item in results]
                print(
                    f"[{name}] median of {len(results)}: {statistics.median(rates):,.0f} "
                    f"events/s, {statistics.median(cpus):.1f} µs CPU/event"
                )
            if tenth is not None:
                whole = max(item["peak_rss_mb"] for item in results)
                print(
                    f"[{name}] a tenth of the file: peak memory {tenth['peak_rss_mb']:.0f} MB "
                    f"(whole file {whole:.0f} MB)"
                )
        print(
            "command: tracardi-tracker import history.jsonl --endpoint URL "
            f"--source {SOURCE_ID} --concurrency {args.concurrency} "
            f"--batch-size {args.batch_size}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
