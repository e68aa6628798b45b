"""Event sources and bot traffic, as each Tracardi version rejects them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from collector_helpers import SESSION, event, payload, send

from tracardi_tracker.collector import Collector

REJECTION = {"0.8": 401, "0.9": 406, "1.0": 406}
BOT = {"detail": "Traffic from bot is not allowed."}


def test_any_source_id_is_accepted_by_default(collector: Collector) -> None:
    response = send(collector, payload(source={"id": "whatever-id"}))

    expected = (200, ["whatever-id"])
    assert expected == (response.status_code, [e.source_id for e in collector.events()])


def test_source_ids_are_trimmed(tracardi_collector_factory: Callable[..., Collector]) -> None:
    collector = tracardi_collector_factory(sources=["known"])

    response = send(collector, payload(source={"id": "  known "}))

    expected = (200, ["known"])
    assert expected == (response.status_code, [e.source_id for e in collector.events()])


@pytest.mark.parametrize("version", ["0.8", "0.9", "1.0"])
def test_disabled_source_is_rejected(
    tracardi_collector_factory: Callable[..., Collector], version: str
) -> None:
    collector = tracardi_collector_factory(tracardi_version=version, disabled_sources=["off"])

    response = send(collector, payload(source={"id": "off"}))

    expected = (REJECTION[version], {"detail": "Event source disabled."}, 0)
    assert expected == (response.status_code, response.json(), len(collector.events()))


def test_unknown_source_is_recorded_as_bad_with_short_reason(
    tracardi_collector_factory: Callable[..., Collector],
) -> None:
    collector = tracardi_collector_factory(sources=["known"])

    send(collector, payload(source={"id": "nope"}))

    expected = [(406, "Invalid event source `nope`")]
    assert expected == [(bad.status, bad.reason) for bad in collector.bad()]


@pytest.mark.parametrize(
    "agent",
    [
        "Python-urllib/3.11",
        "Java/17.0.2",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "my-spider/1.0",
        "WebCrawler 2",
    ],
)
def test_bot_user_agent_is_rejected(collector: Collector, version: str, agent: str) -> None:
    response = send(collector, payload(), headers={"User-Agent": agent})

    expected = (REJECTION[version], BOT, 0)
    assert expected == (response.status_code, response.json(), len(collector.events()))


@pytest.mark.parametrize(
    "agent",
    [
        "python-requests/2.32.3",
        "python-httpx/0.27.0",
        "Python/3.11 aiohttp/3.9.5",
        "curl/8.5.0",
        "my-sdk/1.0",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    ],
)
def test_ordinary_user_agent_is_accepted(collector_for: Any, agent: str) -> None:
    collector = collector_for("0.9")

    response = send(collector, payload(), headers={"User-Agent": agent})

    assert response.status_code == 200


def test_bot_check_comes_before_the_source_check(
    tracardi_collector_factory: Callable[..., Collector],
) -> None:
    collector = tracardi_collector_factory(sources=["known"])

    response = send(collector, payload(source={"id": "nope"}), headers={"User-Agent": "Java/1"})

    expected = (406, BOT)
    assert expected == (response.status_code, response.json())


@pytest.mark.parametrize(("version", "status"), [("0.8", 200), ("0.9", 406), ("1.0", 406)])
def test_google_tag_manager_preview_origin_is_bot_traffic_from_09(
    collector_for: Any, version: str, status: int
) -> None:
    response = send(
        collector_for(version), payload(), headers={"Origin": "https://gtm-msr.appspot.com"}
    )

    assert status == response.status_code


def _with_browser_agent(agent: str, session: str = SESSION) -> dict[str, Any]:
    context = {"browser": {"local": {"browser": {"userAgent": agent}}}}
    return payload(event(), session={"id": session}, context=context)


@pytest.mark.parametrize(("version", "status"), [("0.8", 401), ("0.9", 401), ("1.0", 406)])
def test_bot_agent_in_context_rejects_a_new_session(
    collector_for: Any, version: str, status: int
) -> None:
    collector = collector_for(version)

    response = send(collector, _with_browser_agent("Googlebot/2.1"))

    expected = (status, BOT, [])
    assert expected == (response.status_code, response.json(), collector.events())


def test_bot_agent_in_context_is_ignored_for_a_known_session(collector_for: Any) -> None:
    collector = collector_for("0.9")
    send(collector, payload())

    response = send(collector, _with_browser_agent("Googlebot/2.1"))

    expected = (200, 2)
    assert expected == (response.status_code, len(collector.events()))
