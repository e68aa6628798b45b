"""A FastAPI service tracked in Tracardi, without ever blocking the event loop.

``TracardiMiddleware`` reads the visitor's ids from the ``tracardi-session-id`` /
``tracardi-profile-id`` cookies and scopes ``tracker.track()`` to them in each request's
task. The default background emitter makes ``track()`` a queue append, so ``async def``
handlers call it directly; the lifespan handler flushes and closes the tracker with
``await tracker.aclose()`` when the server stops.

Run it against the local collector (``python -m tracardi_tracker collector`` in another
terminal), then open http://127.0.0.1:8000/::

    python examples/fastapi_app.py --port 8000

(or ``uvicorn --app-dir examples fastapi_app:app``). ``TRACARDI_ENDPOINT`` and
``TRACARDI_SOURCE_ID`` say where events go.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tracardi_tracker import Event, Tracker
from tracardi_tracker.web import DEFAULT_EXCLUDE, current_visit
from tracardi_tracker.web.starlette import TracardiMiddleware

ENDPOINT = os.environ.get("TRACARDI_ENDPOINT", "http://127.0.0.1:8686")
SOURCE_ID = os.environ.get("TRACARDI_SOURCE_ID", "demo-source")

tracker = Tracker(ENDPOINT, SOURCE_ID, app_id="fastapi-example")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    unsent = await tracker.aclose(timeout=5.0)  # flushes in a thread: the loop keeps serving
    if unsent:
        print(f"{unsent} event(s) could not be delivered")


app = FastAPI(lifespan=lifespan)
app.add_middleware(
    TracardiMiddleware,
    tracker=tracker,
    exclude=[*DEFAULT_EXCLUDE, "/docs", "/docs/*", "/redoc", "/openapi.json"],
)


@app.get("/", response_class=HTMLResponse)
async def home() -> str:
    return '<h1>Store</h1><a href="/products/A1">Shoes</a>'


@app.get("/products/{sku}")
async def product(sku: str) -> dict[str, str]:
    return {"sku": sku}


@app.post("/cart")
async def add_to_cart(sku: str = "A1") -> dict[str, str]:
    # No visitor ids here: the middleware scoped this request's task to its visitor.
    tracker.track(Event("Add To Cart", {"sku": sku, "quantity": 1}))
    return {"added": sku}


@app.get("/report")
def report() -> dict[str, str]:
    # A sync handler runs in Starlette's thread pool, which copies the request's scope.
    tracker.track(Event("Report Downloaded", {"format": "pdf"}))
    return {"report": "ok"}


@app.get("/me")
async def me() -> dict[str, str | None]:
    """The ids of this visitor, as the tracker knows them now."""
    visit = current_visit()
    assert visit is not None
    identity = tracker.identity(visit.subject)
    return {"session_id": identity.session_id, "profile_id": identity.profile_id}


@app.post("/flush")
async def flush() -> dict[str, int]:
    """Send what is queued now (e.g. before a deploy), without blocking the loop."""
    return {"unsent": await tracker.aflush(timeout=5.0)}


@app.get("/healthz")
async def healthz() -> str:
    return "ok"  # excluded by default: no cookies, no event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
