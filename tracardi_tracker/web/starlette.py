"""Starlette and FastAPI: the ASGI middleware, as ``add_middleware`` takes it.

::

    from contextlib import asynccontextmanager
    from fastapi import FastAPI
    from tracardi_tracker import Tracker
    from tracardi_tracker.web.starlette import TracardiMiddleware

    tracker = Tracker("https://tracardi.example:8686", "source-id")

    @asynccontextmanager
    async def lifespan(app):
        yield
        await tracker.aclose()          # flush what is queued, without blocking the loop

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(TracardiMiddleware, tracker=tracker, exclude=["/docs", "/openapi.json"])

In a handler, ``tracker.track(...)`` is for the request's visitor (sync handlers too:
Starlette's thread pool copies the request's context). Needs the ``starlette`` or
``fastapi`` extra.
"""

from __future__ import annotations

import starlette  # noqa: F401 - fail early, with the extra's name, when it is missing

from .asgi import TracardiMiddleware

__all__ = ["TracardiMiddleware"]
