"""
Message bodies: refused when invalid or too large, otherwise kept byte for byte.
"""

from __future__ import annotations

from tests.e2e.client import Cast, has_ref, is_type, send_frame
from tests.e2e.deployment import Deployment

MAX_BODY_BYTES = 4096
GREETING = "שלום 👋🏽 مرحبا"
# A family: four people joined by zero-width joiners, 25 UTF-8 bytes.
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


def body_of_bytes(size: int) -> str:
    """
    Multi-codepoint emoji, then ASCII to reach exactly ``size`` UTF-8 bytes.
    """
    emoji = FAMILY * (size // len(FAMILY.encode()) - 1)
    body = emoji + "x" * (size - len(emoji.encode()))
    assert len(body.encode()) == size
    return body


async def test_nul_and_lone_surrogate_bodies_are_refused_and_unicode_round_trips(
    fresh_deployment: Deployment, cast: Cast
) -> None:
    deployment = fresh_deployment
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    b = await bob.connect()

    # The JSON escapes travel as written: the server decodes them itself.
    for ref, escaped in (("nul", "a\\u0000b"), ("lone", "x\\ud800y")):
        await a.send_raw(
            f'{{"type": "send", "to": "{bob.name}", "body": "{escaped}", '
            f'"client_msg_id": "{ref}", "ref": "{ref}"}}'
        )
        error = await a.wait_for(has_ref(ref))
        assert (error["type"], error["code"], error["field"]) == (
            "error",
            "invalid_body",
            "body",
        )
    await deployment.settle()
    assert await alice.conversations() == []

    ack = await a.request(send_frame(GREETING, "ok", to=bob.name))
    assert (ack["type"], ack["seq"]) == ("ack", 1)
    cid = ack["conversation_id"]
    own = await a.wait_for(is_type("message", message_id=ack["message_id"]))
    theirs = await b.wait_for(is_type("message", message_id=ack["message_id"]))
    await deployment.settle()
    history = await bob.history(cid)
    await a.close()
    await b.close()
    deployment.stop()
    deployment.start()
    after_restart = await alice.history(cid)

    expected = GREETING.encode()
    for body in (
        own["body"],
        theirs["body"],
        history[0]["body"],
        after_restart[0]["body"],
    ):
        assert body.encode() == expected
    assert len(history) == len(after_restart) == 1


async def test_a_body_of_exactly_the_limit_is_accepted_whole(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    b = await bob.connect()
    body = body_of_bytes(MAX_BODY_BYTES)

    ack = await a.request(send_frame(body, "max", to=bob.name))

    assert ack["type"] == "ack", ack
    pushed = await b.wait_for(is_type("message", message_id=ack["message_id"]))
    await deployment.settle()
    (stored,) = await bob.history(ack["conversation_id"])
    assert pushed["body"] == stored["body"] == body


async def test_a_body_one_byte_over_the_limit_is_refused_and_records_nothing(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()

    error = await a.request(
        send_frame(body_of_bytes(MAX_BODY_BYTES + 1), "big", to=bob.name)
    )

    assert (error["type"], error["code"], error["field"]) == (
        "error",
        "body_too_large",
        "body",
    )
    over_http = await alice.http.post(
        "/v1/messages",
        json=send_frame(body_of_bytes(MAX_BODY_BYTES + 1), "big", to=bob.name),
    )
    assert over_http.status_code == 422
    assert over_http.json()["error"]["code"] == "body_too_large"
    await deployment.settle()
    assert await alice.conversations() == []
    assert await bob.conversations() == []
