"""The emitters' default transport: the lean client, or ``requests`` where it must be.

:class:`DefaultTransport` sends through :class:`~tracardi_tracker._http.LeanTransport`
(about a sixth of ``requests``' CPU per request) unless ``requests`` would do something
for the URL that the lean client does not:

- a proxy applies: the environment's ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (and
  the system's settings, as the standard library's ``getproxies()`` reads them) name one
  for the URL's scheme and ``NO_PROXY`` (``proxy_bypass``) does not exempt its host.
  ``requests`` reads the same settings and bypasses at least where these rules do, so a
  URL sent lean is never one ``requests`` would have proxied;
- a ``.netrc`` file (``NETRC`` or ``~/.netrc``) has credentials for the host, which
  ``requests`` would send as basic auth.

The endpoint URL is only known per post, so the choice is made at the first post to
each URL and kept for the transport's life (settings changed later are not seen).
``verify`` needs no fallback: the lean client verifies as ``requests`` does (see
:func:`~tracardi_tracker._http.tls_context`). Redirects ``307``/``308`` (which keep the
method and body) are followed up to 30 times, as ``requests`` follows them; ``requests``
turns a redirected POST of other kinds into a GET, which Tracardi does not take, so
those are reported like any unexpected status. Cookies a server sets are not kept (a
``requests.Session`` would send them back).
"""

from __future__ import annotations

import netrc
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from ._http import LeanTransport
from ._transport import DEFAULT_TIMEOUT, HttpTransport, TrackResponse, Transport
from .exceptions import DeliveryError

if TYPE_CHECKING:
    import requests  # loaded only when a requests transport is made (~19 MB of memory)

__all__ = ["DefaultTransport", "default_transport", "needs_requests"]

_MAX_REDIRECTS = 30  # requests' limit
_MAX_ROUTES = 64


def default_transport(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    verify: bool | str = True,
    session: requests.Session | None = None,
) -> Transport:
    """The transport an emitter uses when given none: ``requests`` with the caller's
    ``session`` if there is one, else a :class:`DefaultTransport`."""
    if session is not None:
        return HttpTransport(timeout=timeout, verify=verify, session=session)
    return DefaultTransport(timeout=timeout, verify=verify)


def needs_requests(url: str) -> bool:
    """Whether ``requests`` would send to ``url`` differently than the lean client: through
    a proxy from the environment, or with ``.netrc`` credentials."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("http", "https") or not host:
        return True  # requests says what is wrong with it, as it always has
    if _may_proxy():
        import urllib.request  # only here: it loads http.client and ssl (~12 MB)

        proxies = urllib.request.getproxies()
        if (proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host):
            return True
    return _netrc_knows(host)


def _may_proxy() -> bool:
    """False when no proxy can apply: on Linux, ``urllib.request.getproxies()`` reads only
    ``*_proxy`` variables of the environment (elsewhere it also asks the system)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(name.lower().endswith("_proxy") for name in os.environ)


def _netrc_knows(host: str) -> bool:
    """Whether the ``.netrc`` file ``requests`` would read has credentials for ``host``."""
    named = os.environ.get("NETRC")
    for candidate in [named] if named else ["~/.netrc", "~/_netrc"]:
        path = os.path.expanduser(candidate)
        if os.path.exists(path):
            try:
                return netrc.netrc(path).authenticators(host) is not None
            except (netrc.NetrcParseError, OSError):
                return False  # requests ignores a file it cannot read
    return False


class DefaultTransport:
    """Posts through the lean client, or through ``requests`` for URLs that need it
    (:func:`needs_requests`); thread-safe, as both transports are.

    :meth:`reset` and :meth:`close` pass on to both; ``close`` is idempotent.
    """

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, verify: bool | str = True) -> None:
        self.timeout = timeout
        self.verify = verify
        self._lean = LeanTransport(timeout=timeout, verify=verify)
        self._requests: HttpTransport | None = None
        self._routes: dict[str, bool] = {}  # URL -> whether it goes through requests
        self._lock = threading.Lock()

    def post(
        self,
        url: str,
        body: bytes,
        *,
        event_ids: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> TrackResponse:
        """POST one encoded payload and return Tracardi's answer, or raise a
        :class:`~tracardi_tracker.exceptions.DeliveryError` subclass."""
        if self._through_requests(url):
            return self._fallback().post(url, body, event_ids=event_ids, headers=headers)
        try:
            answer = self._lean.exchange(url, body, headers)
            for _ in range(_MAX_REDIRECTS):
                if answer.status not in (307, 308) or not answer.location:
                    break
                url = urljoin(url, answer.location)
                if self._through_requests(url):
                    return self._fallback().post(url, body, event_ids=event_ids, headers=headers)
                answer = self._lean.exchange(url, body, headers)
        except DeliveryError as error:
            error.event_ids = tuple(event_ids)
            raise
        return answer.interpret(event_ids)

    def _through_requests(self, url: str) -> bool:
        route = self._routes.get(url)
        if route is None:
            route = needs_requests(url)
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            self._routes[url] = route
        return route

    def _fallback(self) -> HttpTransport:
        with self._lock:
            if self._requests is None:
                self._requests = HttpTransport(timeout=self.timeout, verify=self.verify)
            return self._requests

    def reset(self) -> None:
        """Forget the parent's connections (called in a forked child)."""
        self._lock = threading.Lock()
        self._lean.reset()
        if self._requests is not None:
            self._requests.reset()

    def close(self) -> None:
        """Release both transports' connections; idempotent."""
        self._lean.close()
        with self._lock:
            fallback = self._requests
        if fallback is not None:
            fallback.close()
