"""
Who may connect, and what a participant may see: only their own.
"""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from api.auth import issue_token
from tests.e2e.client import Cast, open_socket, send_frame
from tests.e2e.deployment import Deployment

FOREIGN_SECRET = "not-the-server-secret-" + "x" * 32


def bad_tokens(deployment: Deployment) -> list[str]:
    return [
        "not-a-jwt",
        issue_token(FOREIGN_SECRET, "alice", ttl_seconds=60),
        # Signed as the server signs them, but it ran out a minute ago.
        deployment.token("alice", ttl_seconds=-60),
    ]


async def test_a_socket_without_a_valid_token_is_refused_at_the_handshake(
    deployment: Deployment,
) -> None:
    url = f"{deployment.ws_url}/v1/ws"
    candidates: list[tuple[str | None, bool]] = [(None, False)]
    for bad in bad_tokens(deployment):
        candidates += [(bad, False), (bad, True)]

    for token, via_query in candidates:
        with pytest.raises(InvalidStatus) as refused:
            await open_socket(url, token=token, via_query=via_query)
        assert refused.value.response.status_code in {403, 401}


async def test_http_without_a_valid_token_is_401(deployment: Deployment) -> None:
    tokens: list[str | None] = [None, *bad_tokens(deployment)]
    async with httpx.AsyncClient(base_url=deployment.base_url, trust_env=False) as http:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for path in ("/v1/conversations", "/v1/presence/alice"):
                response = await http.get(path, headers=headers)
                assert response.status_code == 401, (path, token)
                assert response.json()["error"]["code"] == "unauthenticated"
            response = await http.post(
                "/v1/messages", headers=headers, json=send_frame("hi", "1", to="bob")
            )
            assert response.status_code == 401


async def test_a_token_in_the_query_string_or_the_header_is_accepted(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    for via_query in (False, True):
        device = await alice.connect(via_query=via_query)
        await device.ping()


async def test_another_pairs_conversation_is_not_found_over_http(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    eve = cast.person(deployment, "eve")
    created = await alice.http.post(
        "/v1/messages", json=send_frame("hi", "1", to=bob.name)
    )
    cid = created.json()["conversation_id"]
    await deployment.settle()

    theirs = await eve.http.get(f"/v1/conversations/{cid}/messages")
    nobodys = await eve.http.get(f"/v1/conversations/{uuid4()}/messages")
    sent_into = await eve.http.post(
        "/v1/messages", json=send_frame("let me in", "1", conversation_id=cid)
    )

    assert theirs.status_code == nobodys.status_code == sent_into.status_code == 404
    # Existing or not, the answer is the same: ids cannot be probed.
    assert theirs.json() == nobodys.json()
    assert theirs.json()["error"]["code"] == "conversation_not_found"
    assert await eve.conversations() == []
    assert [m["body"] for m in await bob.history(cid)] == ["hi"]


async def test_another_pairs_conversation_is_not_found_on_the_socket(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    eve = cast.person(deployment, "eve")
    a = await alice.connect()
    ack = await a.request(send_frame("hi", "1", to=bob.name))
    cid = ack["conversation_id"]
    e = await eve.connect()

    for frame in (
        send_frame("let me in", "2", conversation_id=cid),
        {"type": "read", "conversation_id": cid, "up_to_seq": 1},
        {"type": "delivered", "conversation_id": cid, "up_to_seq": 1},
    ):
        error = await e.request(frame)
        assert (error["type"], error["code"]) == ("error", "conversation_not_found")

    ref = e.new_ref()
    await e.send({"type": "sync", "cursors": {cid: 0}, "ref": ref})
    synced = await e.wait_for(lambda f: f.get("ref") == ref and f["type"] == "synced")
    assert synced["conversations"] == 0
    assert [f for f in e.frames if f.get("type") in {"message", "sync_page"}] == []
    await deployment.settle()
    assert [m["body"] for m in await bob.history(cid)] == ["hi"]
    assert (await bob.conversation(cid))["theirs"]["read_up_to"] == 0
