"""What ``POST /track`` accepts and rejects, checked on the engine (no sockets)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from collector_helpers import SESSION, SOURCE, USER_AGENT, event, is_uuid4, payload, resolve

from tracardi_tracker.collector._engine import Engine, Reply

URL_23 = "https://errors.pydantic.dev/2.3/v/"


def post(
    engine: Engine,
    body: Any,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    all_headers = {"user-agent": USER_AGENT, "content-type": "application/json"}
    all_headers.update(headers or {})
    data = raw if raw is not None else json.dumps(body).encode()
    reply: Reply = engine.handle("POST", "/track", query, all_headers, data)
    return reply.status, json.loads(reply.body)


@pytest.fixture
def engine_for(make_engine: Callable[..., Engine]) -> Callable[[str], Engine]:
    return lambda version: make_engine(tracardi_version=version)


# -- pydantic error styles --------------------------------------------------------------------


def test_first_failing_event_alone_is_reported_with_short_loc_in_pydantic_23_style(
    engine_for: Callable[[str], Engine],
) -> None:
    body = payload(event(id=5), event(tags="x"), profile={"id": 1})

    status, answer = post(engine_for("0.9"), body)

    answer_body = {"detail": [{"type": "string_type", "loc": ["body", "id"],
                            "msg": "Input should be a valid string", "input": 5,
                            "url": URL_23 + "string_type"}]}  # fmt: skip
    expected = (422, answer_body)
    assert expected == (status, answer)


def test_every_error_is_reported_with_full_loc_in_pydantic_27_style(
    engine_for: Callable[[str], Engine],
) -> None:
    body = payload(event(id=5), event(tags="x"), profile={"id": 1})

    status, answer = post(engine_for("1.0"), body)

    answer_body = {
        "detail": [
            {"type": "string_type", "loc": ["body", "profile", "id"],
             "msg": "Input should be a valid string", "input": 1},
            {"type": "string_type", "loc": ["body", "events", 0, "id"],
             "msg": "Input should be a valid string", "input": 5},
            {"type": "list_type", "loc": ["body", "events", 1, "tags"],
             "msg": "Input should be a valid list", "input": "x"},
        ]
    }  # fmt: skip
    expected = (422, answer_body)
    assert expected == (status, answer)


def test_all_errors_of_the_failing_event_are_reported_in_pydantic_23_style(
    engine_for: Callable[[str], Engine],
) -> None:
    body = payload(event(" ", tags="x", properties=[1]))

    status, answer = post(engine_for("0.8"), body)

    answer_body = {
        "detail": [
            {"type": "value_error", "loc": ["body", "type"],
             "msg": "Value error, Event type can not be empty", "input": " ",
             "ctx": {"error": {}}, "url": URL_23 + "value_error"},
            {"type": "dict_type", "loc": ["body", "properties"],
             "msg": "Input should be a valid dictionary", "input": [1],
             "url": URL_23 + "dict_type"},
            {"type": "list_type", "loc": ["body", "tags"], "msg": "Input should be a valid list",
             "input": "x", "url": URL_23 + "list_type"},
        ]
    }  # fmt: skip
    expected = (422, answer_body)
    assert expected == (status, answer)


def test_payload_level_errors_keep_their_path_in_pydantic_23_style(
    engine_for: Callable[[str], Engine],
) -> None:
    body = {"session": {"id": SESSION}, "events": "page-view", "options": [], "debug": "maybe"}

    status, answer = post(engine_for("0.9"), body)

    answer_body = {
        "detail": [
            {"type": "missing", "loc": ["body", "source"], "msg": "Field required",
             "input": {"session": {"id": SESSION}, "events": "page-view", "options": [],
                       "debug": "maybe", "context": {},
                       "metadata": {"time": {"insert": "<datetime>", "create": None,
                                             "update": None}, "ip": None, "status": None}},
             "url": URL_23 + "missing"},
            {"type": "list_type", "loc": ["body", "events"], "msg": "Input should be a valid list",
             "input": "page-view", "url": URL_23 + "list_type"},
            {"type": "dict_type", "loc": ["body", "options"],
             "msg": "Input should be a valid dictionary", "input": [],
             "url": URL_23 + "dict_type"},
            {"type": "bool_parsing", "loc": ["body", "debug"],
             "msg": "Input should be a valid boolean, unable to interpret input",
             "input": "maybe", "url": URL_23 + "bool_parsing"},
        ]
    }  # fmt: skip
    expected = (422, resolve(answer_body, answer))
    assert expected == (status, answer)


@pytest.mark.parametrize(
    ("version", "members"),
    [("0.8", None), ("0.9", ("DefaultEntity", "Entity")), ("1.0", ("DefaultEntity", "Entity"))],
)
def test_non_string_session_id_is_reported_per_union_member(
    engine_for: Callable[[str], Engine], version: str, members: tuple[str, ...] | None
) -> None:
    status, answer = post(engine_for(version), payload(session={"id": 7}))

    locs = [["body", "session", "id"]] if members is None else [
        ["body", "session", member, "id"] for member in members
    ]  # fmt: skip
    expected = (422, locs, {"string_type"})
    assert expected == (
        status,
        [item["loc"] for item in answer["detail"]],
        {item["type"] for item in answer["detail"]},
    )


def test_source_that_is_not_an_object_is_reported_for_both_models(
    engine_for: Callable[[str], Engine],
) -> None:
    status, answer = post(engine_for("1.0"), {"source": "abc", "events": [event()]})

    body = {
        "detail": [
            {"type": "model_type", "loc": ["body", "source", "EventSource"],
             "msg": "Input should be a valid dictionary or instance of EventSource",
             "input": "abc", "ctx": {"class_name": "EventSource"}},
            {"type": "model_type", "loc": ["body", "source", "Entity"],
             "msg": "Input should be a valid dictionary or instance of Entity",
             "input": "abc", "ctx": {"class_name": "Entity"}},
        ]
    }  # fmt: skip
    expected = (422, body)
    assert expected == (status, answer)


def test_bad_session_metadata_falls_back_to_plain_entity_in_pydantic_27_style(
    engine_for: Callable[[str], Engine],
) -> None:
    body = payload(session={"id": SESSION, "metadata": {"create": "yesterday"}})

    status, answer = post(engine_for("1.0"), body)

    expected = (200, SESSION)
    assert expected == (status, answer["session"]["id"])


def test_bad_session_metadata_is_reported_with_short_loc_in_pydantic_23_style(
    engine_for: Callable[[str], Engine],
) -> None:
    body = payload(session={"id": SESSION, "metadata": {"create": "yesterday"}})

    status, answer = post(engine_for("0.9"), body)

    answer_body = {"detail": [{"type": "datetime_parsing", "loc": ["body", "create"],
                            "msg": "Input should be a valid datetime, input is too short",
                            "input": "yesterday", "ctx": {"error": "input is too short"},
                            "url": URL_23 + "datetime_parsing"}]}  # fmt: skip
    expected = (422, answer_body)
    assert expected == (status, answer)


def test_profile_metadata_and_ids_are_not_read_by_08(engine_for: Callable[[str], Engine]) -> None:
    body = payload(profile={"id": "p1", "metadata": {"create": "nonsense"}, "ids": [1]})

    status, _ = post(engine_for("0.8"), body)

    assert status == 200


def test_non_string_profile_alias_is_rejected_from_09(engine_for: Callable[[str], Engine]) -> None:
    status, answer = post(engine_for("0.9"), payload(profile={"id": "p1", "ids": ["a", 2]}))

    body = {"detail": [{"type": "string_type", "loc": ["body", "profile", "ids", 1],
                            "msg": "Input should be a valid string", "input": 2,
                            "url": URL_23 + "string_type"}]}  # fmt: skip
    expected = (422, body)
    assert expected == (status, answer)


# -- body parsing -----------------------------------------------------------------------------


def test_invalid_json_is_a_json_invalid_error(engine_for: Callable[[str], Engine]) -> None:
    status, answer = post(engine_for("0.9"), None, raw=b'{"source": ')

    body = {"detail": [{"type": "json_invalid", "loc": ["body", 11], "msg": "JSON decode error",
                            "input": {}, "ctx": {"error": "Expecting value"}}]}  # fmt: skip
    expected = (422, body)
    assert expected == (status, answer)


def test_json_array_body_is_not_a_batch_endpoint(engine_for: Callable[[str], Engine]) -> None:
    status, answer = post(engine_for("0.9"), [payload()])

    body = {"detail": [{"type": "model_attributes_type", "loc": ["body"],
                            "msg": "Input should be a valid dictionary or object to extract "
                                   "fields from",
                            "input": [payload()],
                            "url": URL_23 + "model_attributes_type"}]}  # fmt: skip
    expected = (422, body)
    assert expected == (status, answer)


@pytest.mark.parametrize("raw", [b"", b"null"])
def test_missing_body_is_a_missing_error(engine_for: Callable[[str], Engine], raw: bytes) -> None:
    status, answer = post(engine_for("0.9"), None, raw=raw)

    body = {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required",
                            "input": None}]}  # fmt: skip
    expected = (422, body)
    assert expected == (status, answer)


@pytest.mark.parametrize("content_type", ["", "application/json; charset=utf-8",
                                          "application/vnd.api+json"])  # fmt: skip
def test_json_is_parsed_without_or_with_a_json_content_type(
    engine_for: Callable[[str], Engine], content_type: str
) -> None:
    status, _ = post(engine_for("0.9"), payload(), headers={"content-type": content_type})

    assert status == 200


def test_invalid_profile_less_query_is_reported_before_body_errors(
    engine_for: Callable[[str], Engine],
) -> None:
    status, answer = post(engine_for("0.9"), {"events": []}, query="profile_less=maybe")

    expected = (422, [["query", "profile_less"], ["body", "source"]])
    assert expected == (
        status,
        [item["loc"] for item in answer["detail"]],
    )


# -- what is stored ---------------------------------------------------------------------------


def test_client_event_id_is_kept_and_missing_or_empty_ids_are_made(
    engine_for: Callable[[str], Engine],
) -> None:
    engine = engine_for("0.9")
    body = payload(event(id="client-1"), event(), event(id=""), event(id=None))

    status, _ = post(engine, body)

    ids = [stored.id for stored in engine.store.events()]
    expected = (200, "client-1", [True, True, True])
    assert expected == (status, ids[0], [is_uuid4(i) for i in ids[1:]])


def test_event_type_is_stored_stripped_lower_case_with_dashes(
    engine_for: Callable[[str], Engine],
) -> None:
    engine = engine_for("0.9")

    post(engine, payload(event("  Add To Cart "), event("PAGE VIEW")))

    expected = ["add-to-cart", "page-view"]
    assert expected == [stored.type for stored in engine.store.events()]


def test_insert_time_defaults_to_now_and_client_times_are_kept(
    engine_for: Callable[[str], Engine],
) -> None:
    engine = engine_for("0.9")
    body = payload(
        event(time={"create": "2023-01-01T10:00:00+02:00"}),
        event(time={"insert": "2023-01-02 00:00:00", "update": "2023-01-03T00:00:00Z"}),
        event(time={"insert": None}),
    )

    post(engine, body)

    times = [stored.time for stored in engine.store.events()]
    expected = [
        {"insert": "<datetime>", "create": "2023-01-01T10:00:00+02:00"},
        {"insert": "2023-01-02T00:00:00Z", "create": None},
        {"insert": "<datetime>", "create": None},
    ]
    assert resolve(expected, times) == times


def test_source_id_option_is_removed_from_stored_options(
    engine_for: Callable[[str], Engine],
) -> None:
    engine = engine_for("0.9")

    post(engine, payload(event(options={"source_id": "x", "fire": True})))

    expected = [{"fire": True}]
    assert expected == [stored.options for stored in engine.store.events()]


def test_unknown_keys_are_ignored_at_every_level(engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for("0.9")
    body = payload(event(traits={"a": 1}), device={"id": "d"}, source={"id": SOURCE, "ids": [1]})

    status, _ = post(engine, body)

    expected = (200, 1)
    assert expected == (status, len(engine.store.events()))


@pytest.mark.parametrize(
    ("options", "stored"),
    [({"saveEvents": False}, 0), ({"saveEvents": "false"}, 1), ({"saveEvents": 0}, 1)],
)
def test_save_events_is_honoured_only_as_a_real_boolean(
    engine_for: Callable[[str], Engine], options: dict[str, Any], stored: int
) -> None:
    engine = engine_for("0.9")

    status, answer = post(engine, payload(options=options))

    expected = (200, True, stored)
    assert expected == (
        status,
        is_uuid4(answer["profile"]["id"]),
        engine.store.count_events(),
    )


def test_save_profile_false_answers_null_profile_and_stores_events_without_one(
    engine_for: Callable[[str], Engine],
) -> None:
    engine = engine_for("0.9")

    status, answer = post(engine, payload(options={"saveProfile": False}))

    stored = engine.store.events()
    expected = (200, None, SESSION, [None])
    assert expected == (
        status,
        answer["profile"]["id"],
        answer["session"]["id"],
        [item.profile_id for item in stored],
    )


def test_track_debug_with_debugger_lists_stored_event_ids(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(track_debug=True)

    _, answer = post(engine, payload(event(id="e1"), event(id="e2"), options={"debugger": True}))

    expected = ["e1", "e2"]
    assert expected == answer["events"]


def test_debugger_without_track_debug_lists_nothing(engine_for: Callable[[str], Engine]) -> None:
    _, answer = post(engine_for("0.9"), payload(options={"debugger": True}))

    expected = []
    assert expected == answer["events"]


# -- what makes Tracardi fail after validation -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (payload(event(time=None)), "'NoneType' object has no attribute 'insert'"),
        (payload(event(tags=None)), "'NoneType' object is not iterable"),
        (payload(event(options=None)), "argument of type 'NoneType' is not iterable"),
        (payload(options=None), "argument of type 'NoneType' is not iterable"),
        (payload(request=None), "'NoneType' object does not support item assignment"),
        (payload(source={"id": "@internal"}), "Internal event sources are not allowed via API."),
        (
            payload(options={"scheduledFlowId": "f", "scheduledNodeId": "n"}),
            "Scheduled events must be send via internal scheduler event source.",
        ),
    ],
)
def test_values_tracardi_cannot_process_are_answered_500(
    engine_for: Callable[[str], Engine], body: dict[str, Any], detail: str
) -> None:
    engine = engine_for("0.9")

    status, answer = post(engine, body)

    expected = (500, {"detail": detail}, 0)
    assert expected == (status, answer, engine.store.count_events())


def test_non_string_tags_are_answered_500_naming_the_tag(
    engine_for: Callable[[str], Engine],
) -> None:
    status, answer = post(engine_for("0.9"), payload(event(tags=["ok", 7])))

    expected = (500, True)
    assert expected == (
        status,
        answer["detail"].startswith("1 validation error for Tags\nvalues.1\n"),
    )


@pytest.mark.parametrize(
    ("authorization", "status"),
    [("Bearer token", 200), ("Bearer", 500), ("Bearer a b", 500), ("", 500)],
)
def test_authorization_must_be_two_words(
    engine_for: Callable[[str], Engine], authorization: str, status: int
) -> None:
    actual, _ = post(engine_for("0.9"), payload(), headers={"authorization": authorization})

    assert status == actual


def test_status_slot_with_bad_error_flag_is_rejected(engine_for: Callable[[str], Engine]) -> None:
    status, answer = post(engine_for("0.9"), payload(event(validation={"error": "maybe"})))

    expected = (422, [["body", "validation", "error"]])
    assert expected == (
        status,
        [item["loc"] for item in answer["detail"]],
    )


def test_put_validates_the_body(engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for("0.9")
    reply = engine.handle(
        "PUT",
        "/track",
        "",
        {"content-type": "application/json"},
        json.dumps({"events": []}).encode(),
    )

    expected = (422, ["body", "source"])
    assert expected == (reply.status, json.loads(reply.body)["detail"][0]["loc"])


def test_rejected_requests_are_recorded_with_status_and_reason(
    engine_for: Callable[[str], Engine],
) -> None:
    engine = engine_for("0.9")

    post(engine, payload(event(id=5)))

    (bad,) = engine.store.bad()
    expected = (422, "Input should be a valid string at body.id", "POST", "/track", USER_AGENT)
    assert expected == (
        bad.status,
        bad.reason,
        bad.method,
        bad.path,
        bad.user_agent,
    )
