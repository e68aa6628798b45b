"""The README's quickstart: track a page view and a custom event for one visitor.

Run it against the embedded local collector with ``make demo``, or against your
Tracardi with ``TRACARDI_ENDPOINT`` and ``TRACARDI_SOURCE_ID`` set.
"""

import os

from tracardi_tracker import Event, PageView, Subject, Tracker

endpoint = os.environ.get("TRACARDI_ENDPOINT", "http://127.0.0.1:8686")
source_id = os.environ.get("TRACARDI_SOURCE_ID", "demo-source")

with Tracker(endpoint, source_id, app_id="quickstart") as tracker:
    tracker.track(
        PageView("https://shop.example/shoes", "Shoes", "https://search.example/?q=shoes")
    )
    tracker.track(Event("Add To Cart", {"sku": "A1", "price": 49.9, "quantity": 1}))

    # Many visitors in one backend: name the visitor in the event's subject.
    visitor = Subject(user_id="crm:42", useragent="Mozilla/5.0", lang="en-GB")
    tracker.track(PageView("https://shop.example/", "Home", event_subject=visitor))
    tracker.flush(timeout=5)  # wait for Tracardi's answers, to show the ids it gave
    print("own visitor:", tracker.profile_id, tracker.session_id)
    print("crm:42     :", tracker.identity(visitor))
