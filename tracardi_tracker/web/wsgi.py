"""WSGI middleware: each request tracked for its own visitor, ids kept in cookies.

::

    from tracardi_tracker import Tracker
    from tracardi_tracker.web.wsgi import TracardiMiddleware

    tracker = Tracker("https://tracardi.example:8686", "source-id")
    application = TracardiMiddleware(application, tracker)

Works with any WSGI server (gunicorn, uWSGI, waitress, mod_wsgi) and framework (Flask's
extension in :mod:`tracardi_tracker.web.flask` wraps this). Standard library only.
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..tracker import Tracker
from ._common import (
    RequestInfo,
    Visit,
    WebConfig,
    config_from,
    enter_visit,
    leave_visit,
    quote_path,
    track_page_view,
)

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["TracardiMiddleware", "request_from_environ"]


def request_from_environ(environ: WSGIEnvironment) -> RequestInfo:
    """The framework-neutral view of a WSGI request."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    host = headers.get("host") or environ.get("SERVER_NAME", "localhost")
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    if "host" not in headers:
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != {"http": "80", "https": "443"}.get(scheme):
            host = f"{host}:{port}"
    path = _wsgi_text(environ.get("SCRIPT_NAME", "")) + _wsgi_text(environ.get("PATH_INFO", ""))
    return RequestInfo(
        method=str(environ.get("REQUEST_METHOD", "GET")),
        scheme=scheme,
        host=str(host),
        path=path or "/",
        query=str(environ.get("QUERY_STRING", "")),
        remote_addr=environ.get("REMOTE_ADDR"),
        headers=headers,
    )


def _wsgi_text(value: object) -> str:
    """PEP 3333 paths are latin-1 decoded bytes: re-decode them as UTF-8, re-quote as URL."""
    text = str(value)
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        text = text.encode("latin-1").decode("utf-8")
    return quote_path(text)


class TracardiMiddleware:
    """Wraps a WSGI app so every request it handles is tracked for its own visitor.

    For each request not excluded by the :class:`~tracardi_tracker.web.WebConfig` rules,
    it reads the visitor's ids from the cookies, runs the app inside
    ``tracker.scope(subject)`` (so the app's ``tracker.track()`` calls are this visitor's),
    tracks a page view when the response starts, and appends ``Set-Cookie`` headers. The
    app and its response body run in a :mod:`contextvars` context of the request's own, so
    a streaming body tracks for the right visitor too and nothing outlives the request.

    Pass ``config=WebConfig(...)`` or its fields as keywords.
    """

    def __init__(
        self,
        app: WSGIApplication,
        /,
        tracker: Tracker,
        *,
        config: WebConfig | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.tracker = tracker
        self.config = config_from(config, options)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        visit = Visit.begin(request_from_environ(environ), self.config)
        if visit is None:
            return self.app(environ, start_response)
        tracker = self.tracker
        cleanup = contextlib.ExitStack()

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Any:
            try:
                code = int(status.split(" ", 1)[0])
            except ValueError:
                code = 500
            track_page_view(tracker, visit, code)
            cookies = [("Set-Cookie", cookie.header()) for cookie in visit.cookies(tracker)]
            return start_response(status, [*headers, *cookies], exc_info)

        def call() -> Iterable[bytes]:
            cleanup.enter_context(tracker.scope(visit.subject))
            cleanup.callback(leave_visit, enter_visit(visit))
            try:
                return self.app(environ, start)
            except BaseException:
                cleanup.close()
                raise

        # The request runs in a context of its own: its scope can never leak into the
        # server's thread, even when a server (or test client) never closes the response.
        context = contextvars.copy_context()
        return _ScopedIterable(context.run(call), context, cleanup)


class _ScopedIterable:
    """The app's response, iterated and closed inside the request's context.

    The scope is closed inside that context when the server closes the response, or when
    the response is dropped unclosed (as test clients do): never in another context.
    """

    __slots__ = ("__weakref__", "_context", "_finalizer", "_iterator", "_result")

    def __init__(
        self,
        result: Iterable[bytes],
        context: contextvars.Context,
        cleanup: contextlib.ExitStack,
    ) -> None:
        self._result = result
        self._context = context
        self._iterator: Iterator[bytes] | None = None
        self._finalizer = weakref.finalize(self, context.run, cleanup.close)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self._result)
        return self._context.run(next, self._iterator)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            self._finalizer()
