"""
Catching up after an outage: ``sync`` from a cursor, in bounded pages.
"""

from __future__ import annotations

from tests.e2e.client import Cast, ChatClient, Frame, is_type, send_frame
from tests.e2e.deployment import Deployment

MISSED = 120
PAGE_LIMIT = 100


async def sync(device: ChatClient, cursors: dict[str, int]) -> list[Frame]:
    """
    Run a ``sync`` and return its ``sync_page`` frames, once ``synced`` arrived.
    """
    ref = device.new_ref()
    await device.send({"type": "sync", "cursors": cursors, "ref": ref})
    await device.wait_for(is_type("synced", ref=ref))
    return [frame for frame in device.frames if frame.get("ref") == ref][:-1]


async def test_sync_after_an_outage_returns_exactly_the_missed_messages_in_pages(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    b = await bob.connect()
    acks = await a.request_all(
        [send_frame(f"early {n}", f"e{n}", to=bob.name) for n in (1, 2, 3)]
    )
    cid = acks[0]["conversation_id"]
    await b.wait_for(is_type("message", conversation_id=cid, seq=3))
    cursor = b.latest_seq(cid)
    await b.close()

    # Bob is offline while Alice goes on.
    missed = await a.request_all(
        [send_frame(f"missed {n}", f"m{n}", conversation_id=cid) for n in range(MISSED)]
    )
    assert [ack["seq"] for ack in missed] == list(
        range(cursor + 1, cursor + MISSED + 1)
    )
    await deployment.settle()
    back = await bob.connect()
    pages = await sync(back, {cid: cursor})

    assert {page["type"] for page in pages} == {"sync_page"}
    assert {page["conversation_id"] for page in pages} == {cid}
    assert all(len(page["messages"]) <= PAGE_LIMIT for page in pages)
    assert [page["complete"] for page in pages] == [False] * (len(pages) - 1) + [True]
    messages = [message for page in pages for message in page["messages"]]
    assert [m["seq"] for m in messages] == [ack["seq"] for ack in missed]
    assert [m["message_id"] for m in messages] == [ack["message_id"] for ack in missed]
    assert [m["body"] for m in messages] == [f"missed {n}" for n in range(MISSED)]
    await back.ping()
    assert back.of_type("message") == []


async def test_sync_from_nothing_returns_every_conversation_and_its_receipts(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    carol = cast.person(deployment, "carol")
    b = await bob.connect()
    to_alice = await b.request(send_frame("to alice", "1", to=alice.name))
    to_carol = await b.request(send_frame("to carol", "1", to=carol.name))
    a = await alice.connect()
    await a.request(
        {"type": "read", "conversation_id": to_alice["conversation_id"], "up_to_seq": 1}
    )
    await deployment.settle()

    pages = await sync(await bob.connect(), {})

    by_conversation = {page["conversation_id"]: page for page in pages}
    assert set(by_conversation) == {
        to_alice["conversation_id"],
        to_carol["conversation_id"],
    }
    assert all(page["complete"] for page in pages)
    read_by_alice = by_conversation[to_alice["conversation_id"]]["receipts"]
    assert {"user": alice.name, "delivered_up_to": 1, "read_up_to": 1} in [
        {k: r[k] for k in ("user", "delivered_up_to", "read_up_to")}
        for r in read_by_alice
    ]
    assert [
        m["body"] for m in by_conversation[to_carol["conversation_id"]]["messages"]
    ] == ["to carol"]
