"""What every web integration shares: settings, cookies, trusted proxies, the request's visit.

A request the integration handles becomes a :class:`Visit`: the visitor's ids read from
the cookies (a uuid4 session id minted when there is none), and a :class:`Subject` made
from the request (user agent, language, client IP). The adapters open
``tracker.scope(visit.subject)`` around the application, track a page view when the
response starts, and write back the cookies :meth:`Visit.cookies` lists.

The first visit: the session cookie is set on the first response (the id is ours, so it
is known at once). The profile id is Tracardi's: it is written on the first response
whose process already has Tracardi's answer, read with ``tracker.identity()`` - at once
with a :class:`~tracardi_tracker.SyncEmitter`, on a later request with the background
emitter. Nothing here depends on a web framework.
"""

from __future__ import annotations

import asyncio
import contextvars
import fnmatch
import ipaddress
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from http.cookies import Morsel
from typing import Any, Literal
from urllib.parse import quote

import attrs

from .._worker import BackgroundEmitter
from ..events import PageView
from ..exceptions import ConfigurationError, TrackerError
from ..models import Subject
from ..tracker import Tracker

__all__ = [
    "DEFAULT_EXCLUDE",
    "PROFILE_COOKIE",
    "SESSION_COOKIE",
    "RequestInfo",
    "SetCookie",
    "Visit",
    "WebConfig",
    "atrack_page_view",
    "current_visit",
    "track_page_view",
]

logger = logging.getLogger("tracardi_tracker.web")

SESSION_COOKIE = "tracardi-session-id"
"""The session cookie of Tracardi's JS tracker."""

PROFILE_COOKIE = "tracardi-profile-id"
"""The profile id's name in Tracardi's JS tracker (it keeps it in localStorage too)."""

DEFAULT_EXCLUDE: tuple[str, ...] = (
    "/static/*",
    "/assets/*",
    "/favicon.ico",
    "/robots.txt",
    "/sitemap.xml",
    "/health",
    "/healthz",
    "/health/*",
    "/livez",
    "/readyz",
    "/ping",
    "/metrics",
    "*.css",
    "*.js",
    "*.map",
    "*.png",
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.svg",
    "*.ico",
    "*.webp",
    "*.woff",
    "*.woff2",
    "*.ttf",
)
"""Paths the integrations leave alone by default: static files and health checks."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SameSite = Literal["Lax", "Strict", "None"]

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 6265 cookie-name
_LANGUAGE = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
_MAX_HEADER = 4096
_BOT = re.compile(
    r"bot|crawl|spider|slurp|archiver|facebookexternalhit|embedly|scraper|indexer|pingdom"
    r"|statuscake|uptimerobot|headless|python-urllib|^java/|wget",
    re.IGNORECASE,
)

_current: contextvars.ContextVar[Visit | None] = contextvars.ContextVar(
    "tracardi_tracker_web_visit", default=None
)


def current_visit() -> Visit | None:
    """The visit of the request being handled in this thread or task (None outside one)."""
    return _current.get()


# -- settings ---------------------------------------------------------------------------------


def _cookie_name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise ConfigurationError(f"{attribute.name} must be a cookie name, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{attribute.name} must be a positive int, got {value!r}")


def _samesite(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("Lax", "Strict", "None", None):
        raise ConfigurationError(f"cookie_samesite must be Lax, Strict, None, got {value!r}")


def _networks(value: Iterable[str | Network]) -> tuple[Network, ...]:
    if isinstance(value, str):
        raise ConfigurationError("trusted_proxies must be a list of addresses, not a string")
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError) as error:
            raise ConfigurationError(
                f"trusted_proxies: {item!r} is not an IP address or network"
            ) from error
    return tuple(networks)


def _patterns(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError(f"path patterns must be a list of strings, got {value!r}")
    patterns = tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigurationError(f"path patterns must be non-empty strings, got {pattern!r}")
    return patterns


def _globs(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching any of the glob ``patterns`` (None when there are none)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _methods(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise ConfigurationError(f"page_view_methods must be a list, got {value!r}")
    return frozenset(method.upper() for method in value)


@attrs.frozen(kw_only=True)
class WebConfig:
    """How the web integrations read and write the visitor's cookies and what they track.

    Cookies (defaults like Tracardi's JS tracker): ``session_cookie`` lives
    ``session_max_age`` seconds (30 minutes) and is re-set on every response, so it
    expires after 30 idle minutes; ``profile_cookie`` lives ``profile_max_age`` seconds
    (a year) and is re-set when it changes and at each new session. Both are
    ``HttpOnly`` (set ``cookie_httponly=False`` to share them with Tracardi's JS
    tracker), ``SameSite=Lax``, and ``Secure`` on https requests (``cookie_secure``
    forces it either way; ``SameSite=None`` always gets it).

    ``trusted_proxies``: addresses or networks (``"10.0.0.0/8"``) of the proxies in
    front of the app; only their ``X-Forwarded-For``/``-Proto``/``-Host`` are believed.

    Requests whose path matches an ``exclude`` glob (static files and health checks by
    default), matches no ``include`` glob (when any is given), or comes from a crawler
    (``skip_bots``; Tracardi rejects their sessions anyway) are passed through untouched:
    no scope, no cookies, no event. Others get a page view for ``page_view_methods``
    (GET) answered 2xx or 304, unless ``page_views`` is false.
    """

    session_cookie: str = attrs.field(default=SESSION_COOKIE, validator=_cookie_name)
    profile_cookie: str = attrs.field(default=PROFILE_COOKIE, validator=_cookie_name)
    session_max_age: int = attrs.field(default=30 * 60, validator=_positive)
    profile_max_age: int = attrs.field(default=365 * 24 * 3600, validator=_positive)
    cookie_domain: str | None = None
    cookie_path: str = "/"
    cookie_secure: bool | None = None
    cookie_httponly: bool = True
    cookie_samesite: SameSite | None = attrs.field(default="Lax", validator=_samesite)
    trusted_proxies: tuple[Network, ...] = attrs.field(default=(), converter=_networks)
    page_views: bool = True
    page_view_methods: frozenset[str] = attrs.field(default=frozenset({"GET"}), converter=_methods)
    include: tuple[str, ...] = attrs.field(default=(), converter=_patterns)
    exclude: tuple[str, ...] = attrs.field(default=DEFAULT_EXCLUDE, converter=_patterns)
    skip_bots: bool = True

    _include: re.Pattern[str] | None = attrs.field(init=False, repr=False, eq=False)
    _exclude: re.Pattern[str] | None = attrs.field(init=False, repr=False, eq=False)

    @_include.default
    def _compile_include(self) -> re.Pattern[str] | None:
        return _globs(self.include)

    @_exclude.default
    def _compile_exclude(self) -> re.Pattern[str] | None:
        return _globs(self.exclude)

    def handles(self, path: str, user_agent: str | None) -> bool:
        """Whether a request for ``path`` from ``user_agent`` gets a visit at all."""
        if self._include is not None and not self._include.match(path):
            return False
        if self._exclude is not None and self._exclude.match(path):
            return False
        return not (self.skip_bots and user_agent is not None and is_bot(user_agent))

    def is_trusted(self, address: str | None) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.trusted_proxies)


def config_from(config: WebConfig | None, options: Mapping[str, Any]) -> WebConfig:
    """``config``, or a :class:`WebConfig` made of ``options`` (not both)."""
    if config is not None:
        if options:
            raise ConfigurationError("pass either config= or WebConfig options, not both")
        if not isinstance(config, WebConfig):
            raise ConfigurationError(f"config must be a WebConfig, got {type(config).__name__}")
        return config
    try:
        return WebConfig(**options)
    except TypeError as error:
        raise ConfigurationError(str(error)) from error


# -- reading the request ----------------------------------------------------------------------


def is_bot(user_agent: str) -> bool:
    """Whether ``user_agent`` looks like a crawler, monitor or HTTP library Tracardi blocks."""
    return _BOT.search(user_agent) is not None


def _ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``; None if not one."""
    if not value:
        return None
    text = value.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_cookies(header: str | None) -> dict[str, str]:
    """``Cookie`` header to a dict; tolerant of malformed pairs, the first of a name wins."""
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for pair in header.split(";"):
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or name in cookies:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


def preferred_language(header: str | None) -> str | None:
    """The most wanted language of an ``Accept-Language`` header (``en-GB`` of
    ``en-GB,en;q=0.9``), or None."""
    if not header or len(header) > _MAX_HEADER:
        return None
    best: tuple[float, str] | None = None
    for item in header.split(","):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not _LANGUAGE.match(tag):
            continue  # includes "*"
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, tag)
    return None if best is None else best[1]


def quote_path(path: str) -> str:
    """A decoded URL path percent-encoded again (``/a b`` gives ``/a%20b``)."""
    return quote(path, safe="/;:@&=+$,!~*'()")


def _valid_id(value: str | None) -> str | None:
    return value if value is not None and _ID.match(value) else None


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if value and len(value) <= _MAX_HEADER else None


@attrs.frozen(kw_only=True)
class RequestInfo:
    """What an integration reads from one request, framework-neutral.

    ``headers`` maps lower-case names to values (repeated headers joined with ``", "``,
    cookies with ``"; "``); ``remote_addr`` is the peer's address.
    """

    method: str
    scheme: str
    host: str
    path: str
    query: str = ""
    remote_addr: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def user_agent(self) -> str | None:
        """The ``User-Agent``."""
        return _text(self.headers.get("user-agent"))


def client_ip(request: RequestInfo, config: WebConfig) -> str | None:
    """The client's address: the peer, or - when the peer is a trusted proxy - the last
    ``X-Forwarded-For`` hop that is not a trusted proxy."""
    peer = _ip(request.remote_addr)
    if peer is None or not config.is_trusted(str(peer)):
        return None if peer is None else str(peer)
    hops = [hop for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break  # garbage from an untrusted hop: keep the last address we can vouch for
        client = address
        if not config.is_trusted(str(address)):
            break
    return str(client)


def _forwarded(request: RequestInfo, config: WebConfig, name: str) -> str | None:
    if not config.trusted_proxies or not config.is_trusted(request.remote_addr):
        return None
    value = request.headers.get(name)
    if not value:
        return None
    return value.split(",")[0].strip() or None


def _url(request: RequestInfo, scheme: str, host: str) -> str:
    query = f"?{request.query}" if request.query else ""
    return f"{scheme}://{host}{request.path}{query}"


@attrs.frozen(kw_only=True)
class SetCookie:
    """One cookie to write back; :meth:`header` gives the ``Set-Cookie`` value."""

    name: str
    value: str
    max_age: int
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = True
    samesite: SameSite | None = "Lax"

    def header(self) -> str:
        """The ``Set-Cookie`` header value."""
        morsel: Morsel[str] = Morsel()
        morsel.set(self.name, self.value, self.value)
        morsel["max-age"] = str(self.max_age)
        morsel["path"] = self.path
        if self.domain:
            morsel["domain"] = self.domain
        if self.secure:
            morsel["secure"] = True
        if self.httponly:
            morsel["httponly"] = True
        if self.samesite:
            morsel["samesite"] = self.samesite
        return morsel.OutputString()


def _page_status(status: int) -> bool:
    return 200 <= status < 300 or status == 304


@attrs.define(kw_only=True, slots=True)
class Visit:
    """One handled request: the visitor's ids, its :class:`Subject`, and where it went.

    ``session_id`` comes from the session cookie or is minted (``new_session``);
    ``profile_id`` is the profile cookie's value (None on a first visit). ``subject``
    is what the integration scopes the request's events to.
    """

    config: WebConfig
    session_id: str
    profile_id: str | None
    new_session: bool
    subject: Subject
    method: str
    url: str
    path: str
    secure: bool
    referrer: str | None
    page_view_tracked: bool = False

    @classmethod
    def begin(cls, request: RequestInfo, config: WebConfig) -> Visit | None:
        """The visit of ``request``, or None when ``config`` leaves it alone."""
        user_agent = request.user_agent
        if not config.handles(request.path, user_agent):
            return None
        cookies = parse_cookies(request.headers.get("cookie"))
        session_id = _valid_id(cookies.get(config.session_cookie))
        new_session = session_id is None
        if session_id is None:
            session_id = str(uuid.uuid4())
        profile_id = _valid_id(cookies.get(config.profile_cookie))
        scheme = _forwarded(request, config, "x-forwarded-proto") or request.scheme
        host = _forwarded(request, config, "x-forwarded-host") or request.host
        subject = Subject(
            session_id=session_id,
            profile_id=profile_id,
            useragent=user_agent,
            lang=preferred_language(request.headers.get("accept-language")),
            ip_address=client_ip(request, config),
        )
        return cls(
            config=config,
            session_id=session_id,
            profile_id=profile_id,
            new_session=new_session,
            subject=subject,
            method=request.method.upper(),
            url=_url(request, scheme.lower(), host),
            path=request.path,
            secure=scheme.lower() in ("https", "wss"),
            referrer=_text(request.headers.get("referer")),
        )

    def page_view(self, status: int) -> PageView | None:
        """The page view to track for a response with ``status``; None when it gets none
        (or already got one)."""
        config = self.config
        if (
            self.page_view_tracked
            or not config.page_views
            or self.method not in config.page_view_methods
            or not _page_status(status)
        ):
            return None
        self.page_view_tracked = True
        return PageView(self.url, referrer=self.referrer)

    def cookies(self, tracker: Tracker) -> list[SetCookie]:
        """The cookies to write on the response: the session cookie, re-set every time
        (with the session id Tracardi answered, if it gave another), and the profile id
        once this process knows it and the browser does not have it (or at a new session).
        """
        config = self.config
        identity = tracker.identity(Subject(session_id=self.session_id, profile_id=self.profile_id))
        secure = self.secure if config.cookie_secure is None else config.cookie_secure
        secure = secure or config.cookie_samesite == "None"
        common: dict[str, Any] = {
            "path": config.cookie_path,
            "domain": config.cookie_domain,
            "secure": secure,
            "httponly": config.cookie_httponly,
            "samesite": config.cookie_samesite,
        }
        session_id = _valid_id(identity.session_id) or self.session_id
        cookies = [
            SetCookie(
                name=config.session_cookie,
                value=session_id,
                max_age=config.session_max_age,
                **common,
            )
        ]
        profile_id = _valid_id(identity.profile_id)
        if profile_id is not None and (profile_id != self.profile_id or self.new_session):
            cookies.append(
                SetCookie(
                    name=config.profile_cookie,
                    value=profile_id,
                    max_age=config.profile_max_age,
                    **common,
                )
            )
        return cookies


def track_page_view(tracker: Tracker, visit: Visit, status: int) -> None:
    """Track ``visit``'s page view for a response with ``status``, if it gets one.

    Call it inside the visit's scope. A failure (a closed tracker, a synchronous send
    that failed) is logged, never raised into the response.
    """
    event = visit.page_view(status)
    if event is None:
        return
    try:
        tracker.track(event)
    except TrackerError as error:
        logger.warning("page view not tracked: %s", type(error).__name__)
        logger.debug("page view not tracked", exc_info=True)


async def atrack_page_view(tracker: Tracker, visit: Visit, status: int) -> None:
    """:func:`track_page_view` without blocking the event loop: called at once when the
    emitter only queues (the background emitter), in a worker thread otherwise."""
    if isinstance(tracker.emitter, BackgroundEmitter):
        track_page_view(tracker, visit, status)
    else:
        await asyncio.to_thread(track_page_view, tracker, visit, status)


def enter_visit(visit: Visit) -> contextvars.Token[Visit | None]:
    """Make ``visit`` the :func:`current_visit`; reset with :func:`leave_visit`."""
    return _current.set(visit)


def leave_visit(token: contextvars.Token[Visit | None]) -> None:
    """Undo :func:`enter_visit`."""
    _current.reset(token)
