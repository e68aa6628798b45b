"""A background worker that tracks from a job queue: each job for its own customer.

Worker threads take jobs from a queue and handle each inside
``tracker.scope(Subject(user_id=...))``: the code deep inside that calls ``tracker.track()``
never sees a customer id, yet every event lands on the right customer's profile, even with
the threads running side by side.

Run it against the local collector (``python -m tracardi_tracker collector`` in another
terminal)::

    python examples/worker.py --jobs 30 --threads 4

``TRACARDI_ENDPOINT`` and ``TRACARDI_SOURCE_ID`` say where events go.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import threading
import time

import attrs

from tracardi_tracker import Event, Subject, Tracker

ENDPOINT = os.environ.get("TRACARDI_ENDPOINT", "http://127.0.0.1:8686")
SOURCE_ID = os.environ.get("TRACARDI_SOURCE_ID", "demo-source")

CUSTOMERS = ("crm:1001", "crm:1002", "crm:1003")


@attrs.frozen
class Job:
    """One order to fulfil."""

    order_id: int
    customer_id: str
    amount: float


def fulfil(tracker: Tracker, job: Job) -> None:
    """Business code: knows the order, not who the tracker should file it under."""
    time.sleep(random.uniform(0, 0.01))  # pretend to work, so the threads interleave
    tracker.track(Event("Order Shipped", {"order_id": job.order_id, "amount": job.amount}))


def work(tracker: Tracker, jobs: queue.Queue[Job | None]) -> None:
    """A worker thread: handle jobs until the ``None`` sentinel."""
    while (job := jobs.get()) is not None:
        with tracker.scope(Subject(user_id=job.customer_id)):
            fulfil(tracker, job)
        jobs.task_done()
    jobs.task_done()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    jobs: queue.Queue[Job | None] = queue.Queue()
    with Tracker(ENDPOINT, SOURCE_ID, app_id="worker-example") as tracker:
        threads = [
            threading.Thread(target=work, args=(tracker, jobs), name=f"worker-{n}")
            for n in range(args.threads)
        ]
        for thread in threads:
            thread.start()
        for order_id in range(1, args.jobs + 1):
            customer = CUSTOMERS[order_id % len(CUSTOMERS)]
            jobs.put(Job(order_id, customer, round(random.uniform(5, 500), 2)))
        for _ in threads:
            jobs.put(None)
        for thread in threads:
            thread.join()
        unsent = tracker.flush(timeout=10.0)
        for customer in CUSTOMERS:
            print(f"{customer}: profile {tracker.identity(Subject(user_id=customer)).profile_id}")
    print(f"{args.jobs} job(s) tracked, {unsent} event(s) unsent")
    raise SystemExit(1 if unsent else 0)


if __name__ == "__main__":
    main()
