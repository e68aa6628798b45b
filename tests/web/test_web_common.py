"""The framework-neutral part: settings, cookies, languages, trusted proxies, the visit."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from http.cookies import SimpleCookie
from types import ModuleType

import pytest
from web_helpers import ROOT

import tracardi_tracker.web
from tracardi_tracker import ConfigurationError, Identity, Subject, Tracker
from tracardi_tracker._capture import CapturingTransport
from tracardi_tracker.web import RequestInfo, SetCookie, Visit, WebConfig
from tracardi_tracker.web._common import (
    client_ip,
    config_from,
    is_bot,
    parse_cookies,
    preferred_language,
)


def request(
    path: str = "/",
    *,
    headers: dict[str, str] | None = None,
    remote_addr: str | None = "198.51.100.7",
    scheme: str = "http",
    method: str = "GET",
) -> RequestInfo:
    return RequestInfo(
        method=method,
        scheme=scheme,
        host="shop.example",
        path=path,
        query="",
        remote_addr=remote_addr,
        headers={"user-agent": "Mozilla/5.0", **(headers or {})},
    )


def test_the_web_package_exports_what_all_lists() -> None:
    public = {name for name in vars(tracardi_tracker.web) if not name.startswith("_")}
    modules = {
        name for name in public if isinstance(getattr(tracardi_tracker.web, name), ModuleType)
    }
    assert public - modules == set(tracardi_tracker.web.__all__)
    assert len(set(tracardi_tracker.web.__all__)) == len(tracardi_tracker.web.__all__)


def test_the_generic_middlewares_import_no_web_framework() -> None:
    code = (
        "import sys, tracardi_tracker.web, tracardi_tracker.web.wsgi, tracardi_tracker.web.asgi\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'django', 'starlette', 'fastapi', 'werkzeug', 'asgiref'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en-GB,en;q=0.9,pl;q=0.8", "en-GB"),
        ("pl;q=0.5, de-DE;q=0.9, *;q=1", "de-DE"),
        ("fr-CH, fr;q=0.9", "fr-CH"),
        ("*", None),
        ("en;q=0", None),
        ("en;q=abc, pl;q=0.1", "pl"),
        ("<script>", None),
        ("", None),
        (None, None),
    ],
)
def test_the_preferred_language_is_the_best_quality_tag(
    header: str | None, expected: str | None
) -> None:
    assert expected == preferred_language(header)


def test_cookies_are_parsed_tolerantly_and_the_first_of_a_name_wins() -> None:
    header = 'a=1; broken; b="quoted"; a=2; =x; c=with=equals'
    assert parse_cookies(header) == {"a": "1", "b": "quoted", "c": "with=equals"}


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", "1.2.3.4", (), "203.0.113.5"),  # no proxy trusted: XFF ignored
        ("10.0.0.2", "1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),
        ("203.0.113.5", "1.2.3.4", ("10.0.0.0/8",), "203.0.113.5"),  # peer not a proxy
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.9", ("10.0.0.0/8",), "1.2.3.4"),  # spoofed head
        ("10.0.0.2", "10.0.0.7, 10.0.0.9", ("10.0.0.0/8",), "10.0.0.7"),  # all proxies
        ("10.0.0.2", "garbage, 1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),
        ("10.0.0.2", "", ("10.0.0.0/8",), "10.0.0.2"),
        ("::1", "[2001:db8::1]:4711", ("::1",), "2001:db8::1"),
        ("10.0.0.2", "1.2.3.4:5678", ("10.0.0.2",), "1.2.3.4"),
        ("::ffff:10.0.0.2", "1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),
        (None, "1.2.3.4", ("10.0.0.0/8",), None),
    ],
)
def test_the_client_ip_honours_only_trusted_proxies(
    remote: str | None, forwarded: str, trusted: tuple[str, ...], expected: str | None
) -> None:
    config = WebConfig(trusted_proxies=trusted)
    info = request(headers={"x-forwarded-for": forwarded}, remote_addr=remote)
    assert expected == client_ip(info, config)


@pytest.mark.parametrize(
    ("path", "agent", "expected"),
    [
        ("/", "Mozilla/5.0", True),
        ("/products/a1", "Mozilla/5.0", True),
        ("/static/app.css", "Mozilla/5.0", False),
        ("/img/logo.png", "Mozilla/5.0", False),
        ("/healthz", "Mozilla/5.0", False),
        ("/favicon.ico", "Mozilla/5.0", False),
        ("/", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", False),
        ("/", "Python-urllib/3.11", False),
        ("/", "python-requests/2.32", True),
    ],
)
def test_default_rules_skip_static_files_health_checks_and_bots(
    path: str, agent: str, expected: bool
) -> None:
    assert expected == WebConfig().handles(path, agent)


def test_include_and_exclude_rules_are_globs() -> None:
    config = WebConfig(include=["/shop/*"], exclude=["/shop/admin/*"], skip_bots=False)
    found = [config.handles(p, "x") for p in ("/shop/a", "/blog/a", "/shop/admin/x", "/")]
    assert found == [True, False, False, False]
    assert WebConfig(skip_bots=False).handles("/", "Googlebot")
    assert is_bot("Mozilla/5.0 (compatible; bingbot/2.0)")


@pytest.mark.parametrize(
    "options",
    [
        {"session_cookie": "bad name"},
        {"profile_cookie": ""},
        {"session_max_age": 0},
        {"cookie_samesite": "lax"},
        {"trusted_proxies": "10.0.0.1"},
        {"trusted_proxies": ["not-an-ip"]},
        {"exclude": "/static/*"},
        {"include": [""]},
        {"no_such_option": 1},
    ],
)
def test_bad_settings_raise_a_configuration_error(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        config_from(None, options)


def test_config_and_options_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="either"):
        config_from(WebConfig(), {"page_views": False})


def test_a_set_cookie_header_carries_every_flag() -> None:
    cookie = SetCookie(
        name="tracardi-session-id",
        value="abc",
        max_age=1800,
        domain="shop.example",
        secure=True,
        httponly=True,
        samesite="Lax",
    )
    (morsel,) = SimpleCookie(cookie.header()).values()
    expected = ("abc", "1800", "/", "shop.example", True, True, "Lax")
    actual = (
        morsel.value,
        morsel["max-age"],
        morsel["path"],
        morsel["domain"],
        morsel["secure"],
        morsel["httponly"],
        morsel["samesite"],
    )
    assert expected == actual


def test_a_first_visit_mints_a_uuid4_session_and_has_no_profile() -> None:
    visit = Visit.begin(request(), WebConfig())
    assert visit is not None
    assert uuid.UUID(visit.session_id).version == 4
    assert (visit.new_session, visit.profile_id) == (True, None)
    assert visit.session_id == visit.subject.session_id


def test_a_returning_visit_reads_both_cookies_and_the_request_context() -> None:
    info = request(
        "/p/1",
        headers={
            "cookie": "tracardi-session-id=s-1; tracardi-profile-id=p-1",
            "accept-language": "de-AT,de;q=0.8",
            "referer": "https://search.example/?q=x",
        },
    )
    visit = Visit.begin(info, WebConfig())
    assert visit is not None
    subject = visit.subject
    expected = ("s-1", "p-1", False, "Mozilla/5.0", "de-AT", "198.51.100.7")
    actual = (
        subject.session_id,
        subject.profile_id,
        visit.new_session,
        subject.useragent,
        subject.lang,
        subject.ip_address,
    )
    assert expected == actual
    assert (
        visit.url,
        visit.referrer,
    ) == ("http://shop.example/p/1", "https://search.example/?q=x")


def test_cookie_values_that_are_not_ids_are_ignored() -> None:
    info = request(
        headers={"cookie": 'tracardi-session-id="a b"; tracardi-profile-id=' + "x" * 200}
    )
    visit = Visit.begin(info, WebConfig())
    assert visit is not None
    assert (visit.new_session, visit.profile_id) == (True, None)


def test_cookie_names_are_settable() -> None:
    config = WebConfig(session_cookie="sid", profile_cookie="pid")
    visit = Visit.begin(request(headers={"cookie": "sid=s-9; pid=p-9"}), config)
    assert visit is not None
    assert (visit.session_id, visit.profile_id) == ("s-9", "p-9")


def test_a_trusted_proxy_sets_the_scheme_and_host_of_the_url() -> None:
    headers = {"x-forwarded-proto": "https", "x-forwarded-host": "www.shop.example"}
    trusted = Visit.begin(
        request(headers=headers, remote_addr="10.1.1.1"), WebConfig(trusted_proxies=["10.0.0.0/8"])
    )
    untrusted = Visit.begin(request(headers=headers, remote_addr="10.1.1.1"), WebConfig())
    assert trusted is not None
    assert untrusted is not None
    assert (trusted.url, trusted.secure) == ("https://www.shop.example/", True)
    assert (untrusted.url, untrusted.secure) == ("http://shop.example/", False)


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        ("GET", 200, True),
        ("GET", 304, True),
        ("GET", 302, False),
        ("GET", 404, False),
        ("GET", 500, False),
        ("POST", 200, False),
        ("HEAD", 200, False),
    ],
)
def test_page_views_are_for_successful_gets(method: str, status: int, expected: bool) -> None:
    visit = Visit.begin(request(method=method), WebConfig())
    assert visit is not None
    assert expected == (visit.page_view(status) is not None)


def test_a_visit_gets_one_page_view_at_most() -> None:
    visit = Visit.begin(request(), WebConfig())
    assert visit is not None
    assert (visit.page_view(200) is not None, visit.page_view(200) is not None) == (True, False)


class _FixedIdentity(Tracker):
    def __init__(self, identity: Identity) -> None:
        super().__init__("http://tracardi.test", "s", emitter=_NoEmitter())
        self._fixed = identity

    def identity(self, subject: Subject | None = None) -> Identity:
        return self._fixed


class _NoEmitter:
    def emit(self, envelope: object) -> None:
        raise AssertionError("nothing is tracked here")

    def flush(self, timeout: float | None = None) -> int:
        return 0

    def close(self, timeout: float | None = None) -> int:
        return 0


def cookie_values(visit: Visit, identity: Identity) -> dict[str, tuple[str, int]]:
    cookies = visit.cookies(_FixedIdentity(identity))
    return {cookie.name: (cookie.value, cookie.max_age) for cookie in cookies}


def test_the_session_cookie_is_always_reset_and_the_profile_cookie_only_when_news() -> None:
    returning = Visit.begin(
        request(headers={"cookie": "tracardi-session-id=s-1; tracardi-profile-id=p-1"}),
        WebConfig(),
    )
    assert returning is not None
    same = cookie_values(returning, Identity("p-1", "s-1"))
    changed = cookie_values(returning, Identity("p-2", "shd-s-1"))
    unknown = cookie_values(returning, Identity(None, "s-1"))
    year = 365 * 24 * 3600
    assert same == {"tracardi-session-id": ("s-1", 1800)}
    assert {"tracardi-session-id": ("shd-s-1", 1800), "tracardi-profile-id": ("p-2", year)} == (
        changed
    )
    assert unknown == {"tracardi-session-id": ("s-1", 1800)}


def test_a_new_session_refreshes_a_known_profile_cookie() -> None:
    visit = Visit.begin(request(headers={"cookie": "tracardi-profile-id=p-1"}), WebConfig())
    assert visit is not None
    cookies = cookie_values(visit, Identity("p-1", visit.session_id))
    assert cookies["tracardi-profile-id"] == ("p-1", 365 * 24 * 3600)


def test_secure_is_automatic_forced_or_implied_by_samesite_none() -> None:
    def secure(config: WebConfig, scheme: str) -> bool:
        visit = Visit.begin(request(scheme=scheme), config)
        assert visit is not None
        tracker = Tracker(
            "http://tracardi.test", "s", emitter=_NoEmitter()
        )  # identity only: nothing tracked
        return all(cookie.secure for cookie in visit.cookies(tracker))

    assert [
        secure(WebConfig(), "http"),
        secure(WebConfig(), "https"),
        secure(WebConfig(cookie_secure=True), "http"),
        secure(WebConfig(cookie_secure=False), "https"),
        secure(WebConfig(cookie_samesite="None", cookie_secure=False), "http"),
    ] == [False, True, True, False, True]


def test_identity_of_a_visit_comes_from_the_trackers_answers(
    transport: CapturingTransport,
) -> None:
    from tracardi_tracker import PageView, SyncEmitter

    tracker = Tracker("http://tracardi.test", "s", emitter=SyncEmitter(transport=transport))
    visit = Visit.begin(request(), WebConfig())
    assert visit is not None
    with tracker.scope(visit.subject):
        tracker.track(PageView(visit.url))
    answered = transport.payloads[0]
    cookies = {cookie.name: cookie.value for cookie in visit.cookies(tracker)}
    assert answered["session"]["id"] == cookies["tracardi-session-id"]
    assert tracker.identity(visit.subject).profile_id == cookies["tracardi-profile-id"]
    tracker.close()
