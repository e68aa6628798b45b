"""``orjson`` (when installed) reads bodies and writes stored events with the standard library's
meaning: every request is answered and stored exactly as with the standard library alone."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from collector_helpers import SESSION, SOURCE, USER_AGENT

from tracardi_tracker.collector import _engine, _wire
from tracardi_tracker.collector._engine import Engine

NOW = datetime(2024, 6, 24, 10, 0, 0, 123456, tzinfo=timezone.utc)
TIME = "2024-06-24T09:59:58.000001Z"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

needs_orjson = pytest.mark.skipif(not _wire.ACCELERATED, reason="orjson is not installed")


def _body(*events: str, envelope: str = "") -> bytes:
    """A body written by hand, so that it can hold what ``json.dumps`` never writes."""
    head = f'{{"source":{{"id":"{SOURCE}"}},"session":{{"id":"{SESSION}"}}{envelope}'
    return f'{head},"events":[{",".join(events)}]}}'.encode()


def _event(extra: str = "", *, id_: str = '"e-1"', type_: str = '"page-view"') -> str:
    return f'{{"id":{id_},"type":{type_},"time":{{"insert":"{TIME}"}}{extra}}}'


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BODIES: dict[str, bytes] = {
    "plain": _body(_event(), _event(id_='"e-2"', type_='"Add To Cart"')),
    "big-integers-stored": _body(
        _event(',"properties":{"n":123456789012345678901234567890,"m":-9223372036854775809}')
    ),
    "big-integer-64-bit-edges": _body(
        _event(',"properties":{"a":18446744073709551615,"b":-9223372036854775808}')
    ),
    "big-integer-in-error": _body(_event(id_="123456789012345678901")),
    "big-integer-in-tags": _body(_event(',"tags":[123456789012345678901]')),
    "big-integer-in-envelope": _body(_event(), envelope=',"context":{"n":99999999999999999999}'),
    "big-floats": _body(_event(',"properties":{"x":1e20,"y":1.5e18,"z":-2.5E+300}')),
    "nan-and-infinity": _body(_event(',"properties":{"x":NaN,"y":-Infinity}')),
    "overflowing-float": _body(_event(',"properties":{"x":1e400}')),
    "lone-surrogate-not-stored": _body(_event(), envelope=',"properties":{"s":"\\ud800"}'),
    "escapes": _body(_event(',"properties":{"s":"\\u00e9\\ud83d\\ude00\\/\\n\\u2028"}')),
    "duplicate-keys": _body(_event(',"properties":{"a":1,"b":2,"a":3}', id_='"x"')),
    "deep-event-property": _body(_event(f',"properties":{{"deep":{_nested(300)}}}')),
    "too-deep-envelope": _body(_event(), envelope=f',"properties":{{"deep":{_nested(1010)}}}'),
    "too-deep-invalid": b'{"events":' + _nested(1010).encode() + b"}",
    "too-deep-unknown-event-key": _body(_event(f',"metadata":{_nested(1010)}')),
    "bom": b"\xef\xbb\xbf" + _body(_event()),
    "utf-16": _body(_event()).decode().encode("utf-16"),
    "truncated": _body(_event())[:-5],
    "control-character": _body(_event(',"properties":{"s":"a\tb"}')),
    "not-an-object": b"[1, 2]",
    "unknown-event-key": _body(_event(',"metadata":{"n":123456789012345678901}')),
    "missing-and-empty-ids": _body(
        '{"type":"a"}', '{"id":"","type":"b"}', '{"id":null,"type":"c"}'
    ),
    "null-time": _body(_event(',"time":null').replace(f'"time":{{"insert":"{TIME}"}},', "")),
    "times-in-many-forms": _body(
        _event(id_='"t1"').replace(TIME, "2024-06-24T10:00:00.000000Z"),
        _event(id_='"t2"').replace(TIME, "2024-06-24T10:00:00.123Z"),
        _event(id_='"t3"').replace(TIME, "2024-06-24t10:00:00.000001z"),
        _event(id_='"t4"').replace(TIME, "2024-06-24T12:00:00.000001+02:00"),
        _event(id_='"t5"').replace(TIME, "1719223200"),
    ),
    "invalid-27-character-times": _body(
        _event(id_='"t1"'),
        _event(id_='"t2"').replace(TIME, "2024-06-24T24:00:00.000001Z"),
        _event(id_='"t3"').replace(TIME, "2023-02-29T10:00:00.000001Z"),
    ),
    "year-zero": _body(_event(id_='"t1"').replace(TIME, "0000-01-01T10:00:00.000001Z")),
    "scheduled-with-two-events": _body(
        _event(),
        _event(id_='"e-2"'),
        envelope=',"options":{"scheduledFlowId":"f","scheduledNodeId":"n"}',
    ),
    "bot-in-context": _body(
        _event(), envelope=',"context":{"browser":{"local":{"browser":{"userAgent":"Googlebot"}}}}'
    ),
}


def _answer(engine: Engine, body: bytes) -> Any:
    """Everything the request leaves behind, random ids masked."""
    headers = {"user-agent": USER_AGENT, "content-type": "application/json"}
    try:
        reply = engine.handle("POST", "/track", "", headers, body)
    except Exception as error:  # what is raised must be the same too
        answer: Any = ("raised", type(error).__name__)
    else:
        kept = [item for item in reply.headers if item[0] != "x-process-time"]
        answer = (reply.status, reply.body.decode("utf-8", "replace"), kept)
    stored = [event.to_json() for event in engine.store.events()]
    bad = [item.to_json() for item in engine.store.bad()]
    text = json.dumps([answer, stored, bad], sort_keys=True, default=repr)
    return json.loads(_UUID.sub("<uuid>", text.replace(engine.version.name, "<version>")))


@pytest.fixture
def answers(
    make_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> Callable[[bytes, str, bool], Any]:
    """What a fresh engine answers and stores for a body, with or without ``orjson``."""
    monkeypatch.setattr(_engine, "_now", lambda: NOW)

    def run(body: bytes, version: str, accelerated: bool) -> Any:
        with monkeypatch.context() as patch:
            patch.setattr(_engine, "ACCELERATED", accelerated)
            return _answer(make_engine(tracardi_version=version, sources=[SOURCE]), body)

    return run


@needs_orjson
@pytest.mark.parametrize("version", ["0.8", "0.9", "1.0"])
@pytest.mark.parametrize("name", sorted(BODIES))
def test_requests_are_answered_and_stored_the_same_with_and_without_orjson(
    answers: Callable[[bytes, str, bool], Any], name: str, version: str
) -> None:
    body = BODIES[name]

    with_orjson = answers(body, version, True)

    assert answers(body, version, False) == with_orjson


@pytest.mark.parametrize("accelerated", [True, False])
def test_integers_beyond_64_bits_are_stored_and_shown_exactly(
    make_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch, accelerated: bool
) -> None:
    monkeypatch.setattr(_engine, "ACCELERATED", accelerated and _wire.ACCELERATED)
    engine = make_engine()
    headers = {"content-type": "application/json"}

    stored = engine.handle("POST", "/track", "", headers, BODIES["big-integers-stored"])
    shown = engine.handle("POST", "/track", "", headers, BODIES["big-integer-in-error"])

    (event,) = engine.store.events()
    expected = (200, {"n": 123456789012345678901234567890, "m": -9223372036854775809}, 422)
    assert expected == (stored.status, event.properties, shown.status)
    assert b'"input":123456789012345678901,' in shown.body


def test_not_a_number_in_a_property_is_stored_as_the_standard_library_reads_it(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()

    reply = engine.handle(
        "POST", "/track", "", {"content-type": "application/json"}, BODIES["nan-and-infinity"]
    )

    (event,) = engine.store.events()
    properties = event.properties
    assert (200, True, -math.inf) == (reply.status, math.isnan(properties["x"]), properties["y"])


def test_nesting_deeper_than_the_standard_library_reads_is_a_400(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()

    reply = engine.handle(
        "POST", "/track", "", {"content-type": "application/json"}, BODIES["too-deep-envelope"]
    )

    expected = (400, {"detail": "There was an error parsing the body"}, 0)
    assert expected == (reply.status, json.loads(reply.body), engine.store.count_events())


@pytest.mark.skipif(
    _wire._EXPONENT_MARK is None, reason="this orjson writes floats otherwise: bodies are checked"
)
def test_a_float_from_1e18_makes_the_request_read_again_by_the_standard_library() -> None:
    payloads = [{"properties": {"x": 1e18}}]

    with pytest.raises(_wire.Inexact):
        _wire.encode_events(payloads, by_orjson=True)

    assert _wire.encode_events(payloads, by_orjson=False) == ['{"properties":{"x":1e+18}}']


@needs_orjson
def test_nesting_orjson_cannot_write_makes_the_request_read_again() -> None:
    value = {"deep": json.loads(_nested(300))}

    with pytest.raises(_wire.Inexact):
        _wire.check_writable(value, by_orjson=True)

    _wire.check_writable(value, by_orjson=False)


def test_bodies_orjson_refuses_are_read_by_the_standard_library() -> None:
    value, by_orjson = _wire.parse_body(b'{"x": NaN, "s": "\\ud800"}')

    assert (math.isnan(value["x"]), value["s"], by_orjson) == (True, "\ud800", False)


def test_stored_events_are_read_back_unchanged_whichever_encoder_wrote_them() -> None:
    payload = {"id": str(uuid.UUID(int=1)), "f": [0.1, -0.0, 1e-7, 2**63], "s": "é\u2028\x00"}

    texts = [_wire.encode_events([payload], by_orjson=fast)[0] for fast in (True, False)]

    assert [json.loads(text) for text in texts] == [payload, payload]


@pytest.mark.parametrize(
    "profile_id",
    ["p-1", "ünïcode", 'quo"te', "back\\slash", "tab\there", "del\x7f", "line\u2028sep", ""],
)
def test_an_accepted_request_is_answered_as_the_standard_library_writes_the_answer(
    make_engine: Callable[..., Engine], profile_id: str
) -> None:
    engine = make_engine(tracardi_version="0.9")
    body = {"source": {"id": SOURCE}, "profile": {"id": profile_id}, "events": [{"type": "x"}]}

    reply = engine.handle("POST", "/track", "", {}, json.dumps(body).encode())

    answer = json.loads(reply.body)
    assert reply.body == _engine.dumps(answer)
    assert answer["profile"]["id"] == (profile_id or answer["profile"]["id"])


def test_task_ids_are_random_version_4_uuids() -> None:
    made = [_engine._uuid4() for _ in range(2000)]

    parsed = [uuid.UUID(text) for text in made]
    assert {(item.version, item.variant) for item in parsed} == {(4, uuid.RFC_4122)}
    assert [str(item) for item in parsed] == made
    assert len(set(made)) == 2000
    assert {text[19] for text in made} == set("89ab")
