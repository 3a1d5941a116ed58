"""
Sending: ids, acks, and who a message is from.
"""

from __future__ import annotations

from tests.e2e.client import Cast, Frame, is_type, send_frame
from tests.e2e.deployment import Deployment


def said(messages: list[Frame]) -> list[tuple[int, str, str]]:
    return [(m["seq"], m["sender"], m["body"]) for m in messages]


async def test_repeated_client_msg_id_returns_the_original_and_records_nothing(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    erin = cast.person(deployment, "erin")
    a = await alice.connect()
    b = await bob.connect()

    first = await a.request(send_frame("hi", "x1", to=bob.name))
    # The same client id is a new message from another sender, or elsewhere.
    bobs = await b.request(send_frame("hello", "x1", to=alice.name))
    to_erin = await a.request(send_frame("yo", "x1", to=erin.name))
    again = await a.request(send_frame("changed", "x1", to=bob.name))

    assert [f["type"] for f in (first, bobs, to_erin, again)] == ["ack"] * 4
    ab = first["conversation_id"]
    assert (bobs["conversation_id"], bobs["seq"]) == (ab, 2)
    assert bobs["message_id"] != first["message_id"]
    assert to_erin["conversation_id"] != ab
    assert to_erin["seq"] == 1
    # The whole ack repeats, the original's time included; only the ref is new.
    assert {**again, "ref": None} == {**first, "ref": None}

    await deployment.settle()
    assert said(await alice.history(ab)) == [
        (2, bob.name, "hello"),
        (1, alice.name, "hi"),
    ]
    assert said(await erin.history(to_erin["conversation_id"])) == [
        (1, alice.name, "yo")
    ]
    await b.wait_for(is_type("message", conversation_id=ab, seq=2))
    await b.ping()
    assert [m["body"] for m in b.messages(ab)] == ["hi", "hello"]


async def test_a_message_reaches_every_device_of_both_participants(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    phone, laptop = await alice.connect(), await alice.connect(via_query=True)
    b = await bob.connect()

    ack = await phone.request(send_frame("hi", "x1", to=bob.name))

    expected = {
        "type": "message",
        "conversation_id": ack["conversation_id"],
        "message_id": ack["message_id"],
        "seq": 1,
        "sender": alice.name,
        "body": "hi",
        "sent_at": ack["sent_at"],
        "client_msg_id": "x1",
    }
    for device in (phone, laptop, b):
        assert await device.wait_for(is_type("message")) == expected


async def test_a_sender_field_in_a_frame_is_refused_and_not_believed(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()

    for field in ("sender", "from"):
        frame = {**send_frame("as bob", f"f-{field}", to=bob.name), field: bob.name}
        error = await a.request(frame)
        assert (error["type"], error["code"], error["field"]) == (
            "error",
            "forbidden_field",
            field,
        )
    ack = await a.request(send_frame("as me", "mine", to=bob.name))
    assert ack["seq"] == 1

    await deployment.settle()
    history = await bob.history(ack["conversation_id"])
    assert [(m["sender"], m["body"]) for m in history] == [(alice.name, "as me")]


async def test_a_sender_field_over_http_is_never_believed(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")

    response = await alice.http.post(
        "/v1/messages",
        json={**send_frame("who?", "h1", to=bob.name), "sender": bob.name},
    )

    if response.status_code == 201:
        await deployment.settle()
        cid = response.json()["conversation_id"]
        assert [m["sender"] for m in await bob.history(cid)] == [alice.name]
    else:
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "forbidden_field"
        assert await bob.conversations() == []


async def test_http_send_returns_the_same_ack_as_the_socket(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    b = await bob.connect()

    created = await alice.http.post(
        "/v1/messages", json=send_frame("hi", "h1", to=bob.name)
    )
    repeated = await alice.http.post(
        "/v1/messages", json=send_frame("changed", "h1", to=bob.name)
    )

    assert (created.status_code, repeated.status_code) == (201, 200)
    assert repeated.json() == created.json()
    ack = created.json()
    assert set(ack) == {
        "client_msg_id",
        "conversation_id",
        "message_id",
        "seq",
        "sent_at",
    }
    pushed = await b.wait_for(is_type("message", message_id=ack["message_id"]))
    assert (pushed["seq"], pushed["body"], pushed["sender"]) == (1, "hi", alice.name)
