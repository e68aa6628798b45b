"""A one-file Django site tracked in Tracardi: a page view per page, events from the views.

``tracardi_tracker.web.django.TracardiMiddleware`` reads the visitor's ids from the
``tracardi-session-id`` / ``tracardi-profile-id`` cookies and scopes ``tracker.track()`` to
them, so views track without passing ids around.

Run it against the local collector (``python -m tracardi_tracker collector`` in another
terminal), then open http://127.0.0.1:8000/::

    python examples/django_app.py runserver 127.0.0.1:8000 --noreload

``TRACARDI_ENDPOINT`` and ``TRACARDI_SOURCE_ID`` say where events go. In a real project the
settings below go into ``settings.py`` and ``TRACARDI_TRACKER`` is a dotted path to the
module-level tracker (``"myproject.tracking.tracker"``).
"""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST

from tracardi_tracker import Event, Tracker
from tracardi_tracker.web import current_visit

ENDPOINT = os.environ.get("TRACARDI_ENDPOINT", "http://127.0.0.1:8686")
SOURCE_ID = os.environ.get("TRACARDI_SOURCE_ID", "demo-source")

tracker = Tracker(ENDPOINT, SOURCE_ID, app_id="django-example")

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["tracardi_tracker.web.django.TracardiMiddleware"],
    TRACARDI_TRACKER=tracker,  # or a dotted path to it
    TRACARDI_WEB={"exclude": ["/static/*", "/healthz"]},
)


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse('<h1>Blog</h1><a href="/articles/hello">Hello</a>')


def article(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse(f"<h1>{slug}</h1><form method='post' action='/like/{slug}'></form>")


@require_POST
def like(request: HttpRequest, slug: str) -> HttpResponse:
    # No visitor ids here: the middleware scoped this request to its visitor.
    tracker.track(Event("Article Liked", {"slug": slug}))
    return JsonResponse({"liked": slug})


def me(request: HttpRequest) -> HttpResponse:
    """The ids of this visitor, as the tracker knows them now."""
    visit = current_visit()
    assert visit is not None
    identity = tracker.identity(visit.subject)
    return JsonResponse({"session_id": identity.session_id, "profile_id": identity.profile_id})


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("", home),
    path("articles/<slug:slug>", article),
    path("like/<slug:slug>", like),
    path("me", me),
    path("healthz", healthz),
]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
