"""Django middleware: each request tracked for its own visitor, ids kept in cookies.

In ``settings.py``::

    MIDDLEWARE = [
        ...,
        "tracardi_tracker.web.django.TracardiMiddleware",
    ]
    TRACARDI_TRACKER = "myproject.tracking.tracker"   # a Tracker, or a dotted path to one
    TRACARDI_WEB = {"exclude": ["/static/*", "/admin/*"]}  # WebConfig options (optional)

``TRACARDI_TRACKER`` may also name a function that returns the tracker. Without it the
middleware makes one (once per process) from ``TRACARDI_ENDPOINT`` and
``TRACARDI_SOURCE_ID``. It runs
under WSGI and ASGI alike (sync and async capable); under ASGI the page view is tracked
without blocking the event loop.

Needs the ``django`` extra.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import (  # type: ignore[import-untyped]
    DisallowedHost,
    ImproperlyConfigured,
)
from django.utils.module_loading import import_string  # type: ignore[import-untyped]

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
    track_page_view,
)

__all__ = ["TracardiMiddleware", "request_info", "tracker_from_settings"]

Request = Any  # django.http.HttpRequest (Django ships no type hints)
Response = Any  # django.http.HttpResponseBase


def tracker_from_settings() -> Tracker:
    """The tracker ``settings.TRACARDI_TRACKER`` names, or one made from
    ``TRACARDI_ENDPOINT`` and ``TRACARDI_SOURCE_ID``."""
    named = getattr(settings, "TRACARDI_TRACKER", None)
    if named is None:
        endpoint = getattr(settings, "TRACARDI_ENDPOINT", None)
        source_id = getattr(settings, "TRACARDI_SOURCE_ID", None)
        if not endpoint or not source_id:
            raise ImproperlyConfigured(
                "set TRACARDI_TRACKER, or TRACARDI_ENDPOINT and TRACARDI_SOURCE_ID"
            )
        return _shared_tracker(str(endpoint), str(source_id))
    found = import_string(named) if isinstance(named, str) else named
    if not isinstance(found, Tracker) and callable(found):
        found = found()
    if not isinstance(found, Tracker):
        raise ImproperlyConfigured(
            f"TRACARDI_TRACKER must name a Tracker, got {type(found).__name__}"
        )
    return found


@functools.cache
def _shared_tracker(endpoint: str, source_id: str) -> Tracker:
    """One tracker per endpoint and source, however many handlers Django builds."""
    return Tracker(endpoint, source_id)


def request_info(request: Request) -> RequestInfo:
    """The framework-neutral view of a Django request (``request.scheme`` honours
    ``SECURE_PROXY_SSL_HEADER``)."""
    meta = request.META
    try:
        host = request.get_host()
    except DisallowedHost:
        host = str(meta.get("SERVER_NAME", "localhost"))
    headers = {str(name).lower(): str(value) for name, value in request.headers.items()}
    return RequestInfo(
        method=str(request.method or "GET"),
        scheme=str(request.scheme or "http"),
        host=host,
        path=quote_path(str(request.path)),
        query=str(meta.get("QUERY_STRING", "")),
        remote_addr=meta.get("REMOTE_ADDR"),
        headers=headers,
    )


class TracardiMiddleware:
    """Django middleware that tracks every request it handles for its own visitor.

    Reads the visitor's ids from the cookies, runs the rest of the middleware chain and
    the view inside ``tracker.scope(subject)``, tracks a page view, and sets the cookies
    on the response (see :class:`~tracardi_tracker.web.WebConfig`, given as the
    ``TRACARDI_WEB`` setting). Put it after ``AuthenticationMiddleware`` if views add
    the user's id to their events.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[Request], Any],
        *,
        tracker: Tracker | None = None,
        config: WebConfig | None = None,
    ) -> None:
        self.get_response = get_response
        self.tracker = tracker if tracker is not None else tracker_from_settings()
        if config is None:
            config = config_from(None, dict(getattr(settings, "TRACARDI_WEB", None) or {}))
        self.config = config
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        if self._async:
            return self._acall(request)
        visit = Visit.begin(request_info(request), self.config)
        if visit is None:
            return self.get_response(request)
        with self.tracker.scope(visit.subject):
            token = enter_visit(visit)
            try:
                response = self.get_response(request)
                track_page_view(self.tracker, visit, int(response.status_code))
            finally:
                leave_visit(token)
        self._set_cookies(visit, response)
        return response

    async def _acall(self, request: Request) -> Response:
        visit = Visit.begin(request_info(request), self.config)
        if visit is None:
            return await self.get_response(request)
        tracker = self.tracker
        with tracker.scope(visit.subject):
            token = enter_visit(visit)
            try:
                response = await self.get_response(request)
                await atrack_page_view(tracker, visit, int(response.status_code))
            finally:
                leave_visit(token)
        self._set_cookies(visit, response)
        return response

    def _set_cookies(self, visit: Visit, response: Response) -> None:
        for cookie in visit.cookies(self.tracker):
            response.set_cookie(
                cookie.name,
                cookie.value,
                max_age=cookie.max_age,
                path=cookie.path,
                domain=cookie.domain,
                secure=cookie.secure,
                httponly=cookie.httponly,
                samesite=cookie.samesite,
            )
