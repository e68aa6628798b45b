"""Side by side with the peers: the same workload through our tracker, Snowplow's,
Segment's and PostHog's, each against a do-nothing loopback sink that counts events.

    python bench/peers.py [--events 100000] [--visitors 100] [--sdk tracardi-tracker ...]

The peers' SDKs are installed in their own virtual environment (``.bench-peers/``, made on
first use from PyPI: snowplow-tracker 1.1.0, segment-analytics-python 2.4.0, posthog 7.9.1),
so they never mix with the project's. ``tracardi-tracker-5k`` is ours with
``BackgroundEmitter(max_queue=5_000)``: memory bounded, ``track()`` blocking in a burst
the sink cannot keep up with. Every SDK builds its events inside the timed loop.
Prints one JSON line per SDK: the caller's microseconds per event (building it included),
events delivered per second, events that arrived, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import venv
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / ".bench-peers"
SDKS = ("tracardi-tracker", "tracardi-tracker-5k", "snowplow", "segment", "posthog")
PINS = ["snowplow-tracker==1.1.0", "segment-analytics-python==2.4.0", "posthog==7.9.1"]


class _Sink(BaseHTTPRequestHandler):
    """Counts the events of any SDK's batch body; answers in one write (no Nagle stall)."""

    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def _answer(self, body: bytes) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        self.wfile.write(head.encode() + b"\r\n\r\n" + body)

    def do_GET(self) -> None:
        if self.path.startswith("/count"):
            self._answer(json.dumps({"count": _Sink.count}).encode())
            return
        with _Sink.lock:
            _Sink.count += 1
        self._answer(b"{}")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        data = json.loads(body)
        events = data.get("data") or data.get("batch") or data.get("events") or []
        with _Sink.lock:
            _Sink.count += len(events)
        profile = (data.get("profile") or {}).get("id") or "p-1"
        session = (data.get("session") or {}).get("id")
        self._answer(json.dumps({"profile": {"id": profile}, "session": {"id": session}}).encode())

    def log_message(self, *args: object) -> None:
        pass


WORKLOAD = r"""
import json, resource, sys, time, urllib.request
which, port, N, V = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
url = f"http://127.0.0.1:{port}"
def count():
    return json.loads(urllib.request.urlopen(url + "/count").read())["count"]
def props(n):
    return {"sku": f"A{n % 97}", "price": 49.9, "quantity": 2, "gift": False, "note": None}
before = count()
if which.startswith("tracardi-tracker"):
    from tracardi_tracker import BackgroundEmitter, Event, PageView, Subject, Tracker
    people = [Subject(user_id=f"v{n}", useragent="Mozilla/5.0") for n in range(V)]
    bounded = which.endswith("-5k")  # at most 5,000 events held; a burst blocks track()
    tracker = Tracker(url, "src", emitter=BackgroundEmitter(max_queue=5_000) if bounded else None)
    started = time.perf_counter()
    for n in range(N):
        who = people[n % V]
        if n % 2 == 0:
            page = f"https://shop.example/p/{n % 50}"
            tracker.track(PageView(page, "Product", event_subject=who))
        else:
            tracker.track(Event("Add To Cart", props(n), event_subject=who))
    tracked = time.perf_counter(); tracker.flush(120); done = time.perf_counter(); tracker.close()
elif which == "snowplow":
    from snowplow_tracker import Emitter, PageView, StructuredEvent, Subject, Tracker
    tracker = Tracker(namespace="ns", emitters=Emitter(f"127.0.0.1:{port}", protocol="http",
                                                       method="post", batch_size=500))
    people = [Subject().set_user_id(f"v{n}") for n in range(V)]
    started = time.perf_counter()
    for n in range(N):
        who = people[n % V]
        if n % 2 == 0:
            tracker.track(PageView(page_url=f"https://shop.example/p/{n % 50}",
                                   page_title="Product", event_subject=who))
        else:
            tracker.track(StructuredEvent(category="shop", action="add-to-cart", label="x",
                                          property_="sku", value=49.9, event_subject=who))
    tracked = time.perf_counter(); tracker.flush(); done = time.perf_counter()
elif which == "segment":
    import segment.analytics as analytics
    analytics.write_key, analytics.host = "k", url
    analytics.max_queue_size, analytics.upload_size = 100000, 500
    started = time.perf_counter()
    for n in range(N):
        if n % 2 == 0:
            analytics.page(f"v{n % V}", name="Product",
                           properties={"url": f"https://shop.example/p/{n % 50}"})
        else:
            analytics.track(f"v{n % V}", "Add To Cart", props(n))
    tracked = time.perf_counter(); analytics.flush(); done = time.perf_counter()
else:
    from posthog import Posthog
    client = Posthog("k", host=url, flush_at=500, max_queue_size=10000)
    started = time.perf_counter()
    for n in range(N):
        client.capture("pageview" if n % 2 == 0 else "add-to-cart", distinct_id=f"v{n % V}",
                       properties=props(n))
    tracked = time.perf_counter(); client.flush(); done = time.perf_counter(); client.shutdown()
time.sleep(0.5)
arrived = count() - before
print(json.dumps({"sdk": which, "caller_us_per_event": round((tracked - started) / N * 1e6, 2),
                  "delivered_per_s": int(arrived / (done - started)), "arrived": arrived,
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                        1)}))
"""


def peers_python() -> str:
    python = PEERS / "bin" / "python"
    if not python.exists():
        venv.create(PEERS, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PINS], check=True)
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--visitors", type=int, default=100)
    parser.add_argument(
        "--sdk",
        action="append",
        choices=SDKS,
        help="measure only this SDK (repeatable); default: all four",
    )
    args = parser.parse_args()
    print("command:", "python", " ".join(sys.argv))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    chosen = args.sdk or list(SDKS)
    ours = {"tracardi-tracker", "tracardi-tracker-5k"}
    peers = peers_python() if set(chosen) - ours else sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for sdk in chosen:
            python = sys.executable if sdk in ours else peers
            argv = [python, "-c", WORKLOAD, sdk, str(port), str(args.events), str(args.visitors)]
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
            print(result.stdout.strip() or f"{sdk}: failed: {result.stderr.strip()[-500:]}")
            time.sleep(0.5)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
