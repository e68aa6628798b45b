"""Web integrations: every request tracked for its own visitor, ids kept in cookies.

Pick the adapter of your stack; each imports its framework only when imported itself:

- :mod:`tracardi_tracker.web.wsgi` - ``TracardiMiddleware`` for any WSGI app;
- :mod:`tracardi_tracker.web.asgi` - ``TracardiMiddleware`` for any ASGI app;
- :mod:`tracardi_tracker.web.flask` - the ``Tracardi`` extension;
- :mod:`tracardi_tracker.web.django` - ``TracardiMiddleware`` for ``MIDDLEWARE``;
- :mod:`tracardi_tracker.web.starlette` - the ASGI middleware for Starlette and FastAPI.

All share :class:`WebConfig` (cookie names and flags, trusted proxies, which paths get
page views) and the visitor model in :class:`Visit`. See ``docs/web.md``.
"""

from ._common import (
    DEFAULT_EXCLUDE,
    PROFILE_COOKIE,
    SESSION_COOKIE,
    RequestInfo,
    SetCookie,
    Visit,
    WebConfig,
    current_visit,
)

__all__ = [
    "DEFAULT_EXCLUDE",
    "PROFILE_COOKIE",
    "SESSION_COOKIE",
    "RequestInfo",
    "SetCookie",
    "Visit",
    "WebConfig",
    "current_visit",
]
