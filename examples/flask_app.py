"""A Flask shop tracked in Tracardi: a page view per page, events from the views.

Every request is its visitor's: the ``Tracardi`` extension reads the visitor's ids from the
``tracardi-session-id`` / ``tracardi-profile-id`` cookies and scopes ``tracker.track()`` to
them, so views track without passing ids around.

Run it against the local collector (``python -m tracardi_tracker collector`` in another
terminal), then open http://127.0.0.1:5000/::

    python examples/flask_app.py --port 5000

In production, under gunicorn (the tracker survives ``--preload``'s fork)::

    gunicorn --preload -w 4 --chdir examples flask_app:app

``TRACARDI_ENDPOINT`` and ``TRACARDI_SOURCE_ID`` say where events go.
"""

from __future__ import annotations

import argparse
import os

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from tracardi_tracker import Event, Tracker
from tracardi_tracker.web import current_visit
from tracardi_tracker.web.flask import Tracardi

ENDPOINT = os.environ.get("TRACARDI_ENDPOINT", "http://127.0.0.1:8686")
SOURCE_ID = os.environ.get("TRACARDI_SOURCE_ID", "demo-source")

app = Flask(__name__)
tracardi = Tracardi(app, Tracker(ENDPOINT, SOURCE_ID, app_id="flask-example"))

PRODUCTS = {"A1": "Running shoes", "B2": "Rain jacket"}


@app.get("/")
def home() -> ResponseReturnValue:
    links = "".join(
        f'<li><a href="/products/{sku}">{name}</a></li>' for sku, name in PRODUCTS.items()
    )
    return f"<h1>Shop</h1><ul>{links}</ul>"


@app.get("/products/<sku>")
def product(sku: str) -> ResponseReturnValue:
    if sku not in PRODUCTS:
        return "no such product", 404  # a 404 gets no page view
    return (
        f"<h1>{PRODUCTS[sku]}</h1>"
        f'<form method="post" action="/cart"><input type="hidden" name="sku" value="{sku}">'
        "<button>Add to cart</button></form>"
    )


@app.post("/cart")
def add_to_cart() -> ResponseReturnValue:
    sku = request.form.get("sku", "A1")
    # No visitor ids here: the extension scoped this request to its visitor.
    tracardi.tracker.track(Event("Add To Cart", {"sku": sku, "quantity": 1}))
    return jsonify(added=sku)


@app.get("/me")
def me() -> ResponseReturnValue:
    """The ids of this visitor, as the tracker knows them now."""
    visit = current_visit()
    assert visit is not None
    identity = tracardi.tracker.identity(visit.subject)
    return jsonify(session_id=identity.session_id, profile_id=identity.profile_id)


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return "ok"  # excluded by default: no cookies, no event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
