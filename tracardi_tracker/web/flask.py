"""Flask extension: each request tracked for its own visitor, ids kept in cookies.

::

    from flask import Flask
    from tracardi_tracker import Tracker
    from tracardi_tracker.web.flask import Tracardi

    app = Flask(__name__)
    tracardi = Tracardi(app, Tracker("https://tracardi.example:8686", "source-id"))

    @app.post("/cart")
    def add_to_cart():
        tracardi.tracker.track(Event("Add To Cart", {"sku": "A1"}))  # this visitor's
        ...

With the application-factory pattern, ``tracardi = Tracardi()`` and later
``tracardi.init_app(app, tracker)``; without a tracker, one is made from
``app.config["TRACARDI_ENDPOINT"]`` and ``app.config["TRACARDI_SOURCE_ID"]``.
``app.config["TRACARDI_WEB"]`` may hold :class:`~tracardi_tracker.web.WebConfig` options.

It wraps ``app.wsgi_app`` in :class:`tracardi_tracker.web.wsgi.TracardiMiddleware`. Needs
the ``flask`` extra.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from ..exceptions import ConfigurationError
from ..tracker import Tracker
from ._common import WebConfig, config_from
from .wsgi import TracardiMiddleware

__all__ = ["Tracardi"]

_KEY = "tracardi"


class Tracardi:
    """The Flask extension; :attr:`tracker` is the current app's tracker."""

    def __init__(
        self,
        app: Flask | None = None,
        tracker: Tracker | None = None,
        *,
        config: WebConfig | None = None,
        **options: Any,
    ) -> None:
        self._tracker = tracker
        self._config = config_from(config, options) if config is not None or options else None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, tracker: Tracker | None = None) -> None:
        """Wrap ``app`` so its requests are tracked with ``tracker`` (or the one given to
        the constructor, or one made from the app's config)."""
        if tracker is None:
            tracker = self._tracker if self._tracker is not None else _tracker_from_config(app)
        config = self._config
        if config is None:
            config = config_from(None, dict(app.config.get("TRACARDI_WEB") or {}))
        app.wsgi_app = TracardiMiddleware(app.wsgi_app, tracker, config=config)  # type: ignore[method-assign]
        app.extensions[_KEY] = tracker
        if self._tracker is None:
            self._tracker = tracker

    @property
    def tracker(self) -> Tracker:
        """The tracker of the app handling the request (outside one: the last one set up)."""
        try:
            found = current_app.extensions.get(_KEY)
        except RuntimeError:  # no application context
            found = None
        tracker = found if isinstance(found, Tracker) else self._tracker
        if tracker is None:
            raise ConfigurationError("Tracardi extension used before init_app()")
        return tracker


def _tracker_from_config(app: Flask) -> Tracker:
    endpoint = app.config.get("TRACARDI_ENDPOINT")
    source_id = app.config.get("TRACARDI_SOURCE_ID")
    if not endpoint or not source_id:
        raise ConfigurationError(
            "give Tracardi a tracker, or set TRACARDI_ENDPOINT and TRACARDI_SOURCE_ID in app.config"
        )
    return Tracker(endpoint, source_id)
