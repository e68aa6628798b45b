"""ASGI middleware: each request tracked for its own visitor, ids kept in cookies.

::

    from tracardi_tracker import Tracker
    from tracardi_tracker.web.asgi import TracardiMiddleware

    tracker = Tracker("https://tracardi.example:8686", "source-id")
    app = TracardiMiddleware(app, tracker)

It is a plain ASGI 3 middleware, so Starlette and FastAPI take it as it is
(``app.add_middleware(TracardiMiddleware, tracker=tracker)``). Standard library only.

Nothing here blocks the event loop: with the default background emitter ``track()`` only
queues; with any other emitter the page view is tracked in a worker thread. The app's own
``tracker.track()`` calls in ``async def`` handlers should use the background emitter for
the same reason. Close the tracker in the app's lifespan with ``await tracker.aclose()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ..tracker import Tracker
from ._common import (
    RequestInfo,
    Visit,
    WebConfig,
    atrack_page_view,
    config_from,
    enter_visit,
    leave_visit,
    quote_path,
)

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "TracardiMiddleware",
    "request_from_scope",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        value = value_bytes.decode("latin-1")
        if name in headers:
            value = headers[name] + ("; " if name == "cookie" else ", ") + value
        headers[name] = value
    return headers


def request_from_scope(scope: Scope) -> RequestInfo:
    """The framework-neutral view of an ASGI ``http`` request."""
    headers = _headers(scope.get("headers") or ())
    scheme = str(scope.get("scheme") or "http")
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    raw_path = scope.get("raw_path")
    if raw_path:
        path = bytes(raw_path).decode("latin-1")
    else:
        path = quote_path(str(scope.get("path") or "/"))
    root_path = str(scope.get("root_path") or "")
    if root_path and not path.startswith(root_path):
        path = root_path + path
    client = scope.get("client")
    return RequestInfo(
        method=str(scope.get("method") or "GET"),
        scheme=scheme,
        host=host,
        path=path or "/",
        query=bytes(scope.get("query_string") or b"").decode("latin-1"),
        remote_addr=str(client[0]) if client else None,
        headers=headers,
    )


class TracardiMiddleware:
    """Wraps an ASGI app so every HTTP request it handles is tracked for its own visitor.

    For each ``http`` request not excluded by the :class:`~tracardi_tracker.web.WebConfig`
    rules, it reads the visitor's ids from the cookies, runs the app inside
    ``tracker.scope(subject)`` (a :mod:`contextvars` scope: each task sees its own, and
    Starlette's thread pool copies it to sync handlers), tracks a page view when the
    response starts, and appends ``Set-Cookie`` headers. Websocket and lifespan messages
    pass through untouched.

    Pass ``config=WebConfig(...)`` or its fields as keywords.
    """

    def __init__(
        self,
        app: ASGIApp,
        /,
        tracker: Tracker,
        *,
        config: WebConfig | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.tracker = tracker
        self.config = config_from(config, options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        visit = Visit.begin(request_from_scope(scope), self.config)
        if visit is None:
            await self.app(scope, receive, send)
            return
        tracker = self.tracker

        async def send_with_cookies(message: Message) -> None:
            if message.get("type") == "http.response.start":
                await atrack_page_view(tracker, visit, int(message.get("status", 200)))
                cookies = [
                    (b"set-cookie", cookie.header().encode("latin-1"))
                    for cookie in visit.cookies(tracker)
                ]
                message = {**message, "headers": [*message.get("headers", ()), *cookies]}
            await send(message)

        with tracker.scope(visit.subject):
            token = enter_visit(visit)
            try:
                await self.app(scope, receive, send_with_cookies)
            finally:
                leave_visit(token)
