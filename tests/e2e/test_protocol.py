"""
The socket's frames: malformed ones get an error and the socket stays usable.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.client import Cast, is_type, send_frame
from tests.e2e.deployment import Deployment

MAX_FRAME_BYTES = 64 * 1024
MESSAGE_TOO_BIG = 1009

MALFORMED: dict[str, tuple[str | bytes, str, str | None]] = {
    "not json": ("{not json", "invalid_json", None),
    "a list": ("[1, 2]", "invalid_frame", None),
    "a number": ("42", "invalid_frame", None),
    "a string": ('"send"', "invalid_frame", None),
    "null": ("null", "invalid_frame", None),
    "binary": (b'{"type": "ping"}', "invalid_frame", None),
    "no type": ('{"body": "hi"}', "missing_field", "type"),
    "a type that is not a string": ('{"type": 7}', "missing_field", "type"),
    "unknown type": ('{"type": "shout"}', "unknown_type", "type"),
    "send without body": (
        '{"type": "send", "to": "bob", "client_msg_id": "1"}',
        "missing_field",
        "body",
    ),
    "send without client_msg_id": (
        '{"type": "send", "to": "bob", "body": "hi"}',
        "missing_field",
        "client_msg_id",
    ),
    "read without up_to_seq": (
        '{"type": "read", "conversation_id": "6f1d3b0e-5c2a-4d8e-9a47-0b3c2e1f7a55"}',
        "missing_field",
        "up_to_seq",
    ),
    "a ref with an unpaired surrogate": (
        '{"type": "ping", "ref": "\\ud800"}',
        "invalid_field",
        "ref",
    ),
    "a ref over 256 bytes": (
        '{"type": "ping", "ref": "' + "r" * 300 + '"}',
        "invalid_field",
        "ref",
    ),
    "NaN": ('{"type": "ping", "ref": NaN}', "invalid_json", None),
    "Infinity": ('{"type": "ping", "ref": -Infinity}', "invalid_json", None),
    "nested deeper than the parser goes": (
        '{"type": "ping", "ref": ' + "[" * 20000 + "]" * 20000 + "}",
        "invalid_json",
        None,
    ),
    "a cursor past the largest seq": (
        '{"type": "sync", "cursors": '
        '{"6f1d3b0e-5c2a-4d8e-9a47-0b3c2e1f7a55": 9223372036854775808}}',
        "invalid_field",
        "cursors.6f1d3b0e-5c2a-4d8e-9a47-0b3c2e1f7a55",
    ),
    "an up_to_seq past the largest seq": (
        '{"type": "read", "conversation_id": "6f1d3b0e-5c2a-4d8e-9a47-0b3c2e1f7a55", '
        '"up_to_seq": 9007199254740992}',
        "invalid_field",
        "up_to_seq",
    ),
    "delivered with a bad conversation id": (
        '{"type": "delivered", "conversation_id": "nope", "up_to_seq": 1}',
        "invalid_field",
        "conversation_id",
    ),
}


@pytest.mark.parametrize("frame", list(MALFORMED), ids=list(MALFORMED))
async def test_a_malformed_frame_gets_an_error_and_the_socket_stays_usable(
    deployment: Deployment, cast: Cast, frame: str
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    text, code, field = MALFORMED[frame]

    await a.send_raw(text)
    error = await a.wait_for(is_type("error"))

    assert (error["code"], error["field"]) == (code, field)
    assert isinstance(error["message"], str)
    assert error["message"]
    await a.ping()
    ack = await a.request(send_frame("still here", "after", to=bob.name))
    assert (ack["type"], ack["seq"]) == ("ack", 1)


async def test_an_error_echoes_the_ref_of_the_frame_it_refuses(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    a = await alice.connect()

    for frame in ({"type": "shout"}, {"type": "send", "from": "bob"}, {"body": "x"}):
        error = await a.request(frame)
        assert error["type"] == "error", error


@pytest.mark.parametrize("ref", ["p-1", 17, {"any": ["json"]}])
async def test_ping_gets_a_pong_that_echoes_the_ref(
    deployment: Deployment, cast: Cast, ref: object
) -> None:
    a = await cast.person(deployment, "alice").connect()

    await a.send({"type": "ping", "ref": ref})

    assert await a.wait_for(is_type("pong")) == {"type": "pong", "ref": ref}


async def test_an_oversized_frame_closes_the_socket_with_1009_and_records_nothing(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    frame = send_frame("x" * MAX_FRAME_BYTES, "huge", to=bob.name)
    text = json.dumps(frame)
    assert len(text.encode()) > MAX_FRAME_BYTES

    await a.send_raw(text)

    assert await a.wait_closed() == MESSAGE_TOO_BIG
    assert a.of_type("ack") == []
    await deployment.settle()
    assert await alice.conversations() == []
    assert await bob.conversations() == []
    # The server itself is fine: a new socket works.
    await (await alice.connect()).ping()


async def test_a_malformed_http_send_names_the_offending_field(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")

    response = await alice.http.post(
        "/v1/messages", json={"to": "bob", "client_msg_id": "1"}
    )

    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "missing_field",
        "message": "Field required",
        "field": "body",
    }


async def test_an_http_body_that_is_not_json_says_so(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")

    response = await alice.http.post(
        "/v1/messages",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("bound", ["before_seq", "after_seq"])
async def test_a_history_bound_past_the_largest_seq_is_refused(
    deployment: Deployment, cast: Cast, bound: str
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    ack = await a.request(send_frame("hello", "first", to=bob.name))
    await deployment.settle()

    response = await alice.http.get(
        f"/v1/conversations/{ack['conversation_id']}/messages",
        params={bound: str(2**63)},
    )
    usable = await alice.http.get("/v1/conversations")

    assert response.status_code == 422
    assert response.json()["error"]["field"] == f"query.{bound}"
    assert usable.status_code == 200
