"""
Delivered and read marks: high-water marks that start at nothing.
"""

from __future__ import annotations

import asyncio

from tests.e2e.client import Cast, ChatClient, Frame, is_type, send_frame
from tests.e2e.deployment import Deployment

ROUNDS = 100


def marks(receipt: Frame) -> tuple[int, int]:
    return receipt["delivered_up_to"], receipt["read_up_to"]


async def test_nothing_is_read_until_the_recipient_reads_and_then_only_up_to_its_seq(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")  # Bob has never connected.
    a = await alice.connect()
    acks = await a.request_all(
        [send_frame(f"m{n}", f"m{n}", to=bob.name) for n in (1, 2, 3)]
    )
    cid = acks[0]["conversation_id"]
    assert [ack["seq"] for ack in acks] == [1, 2, 3]

    # Before Bob acts, a missing mark means nothing delivered, nothing read.
    await deployment.settle()
    seen_by_alice = await alice.conversation(cid)
    assert (seen_by_alice["theirs"]["user"], marks(seen_by_alice["theirs"])) == (
        bob.name,
        (0, 0),
    )
    seen_by_bob = await bob.conversation(cid)
    assert (marks(seen_by_bob["mine"]), seen_by_bob["unread"]) == ((0, 0), 3)

    b = await bob.connect()
    receipt = await b.request({"type": "read", "conversation_id": cid, "up_to_seq": 2})

    assert receipt["type"] == "receipt"
    assert (receipt["user"], marks(receipt)) == (bob.name, (2, 2))
    pushed = await a.wait_for(is_type("receipt", user=bob.name, read_up_to=2))
    assert marks(pushed) == (2, 2)
    await deployment.settle()
    theirs = (await alice.conversation(cid))["theirs"]
    assert [seq for seq in (1, 2, 3) if seq <= theirs["read_up_to"]] == [1, 2]
    assert (await bob.conversation(cid))["unread"] == 1


async def test_marks_never_move_back_nor_past_the_last_message(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    b = await bob.connect()
    acks = await a.request_all(
        [send_frame(f"m{n}", f"m{n}", to=bob.name) for n in (1, 2)]
    )
    cid = acks[0]["conversation_id"]

    high = await b.request({"type": "read", "conversation_id": cid, "up_to_seq": 2})
    lower = await b.request(
        {"type": "delivered", "conversation_id": cid, "up_to_seq": 1}
    )
    beyond = await b.request({"type": "read", "conversation_id": cid, "up_to_seq": 3})

    assert marks(high) == marks(lower) == (2, 2)
    assert (beyond["type"], beyond["code"], beyond["field"]) == (
        "error",
        "seq_out_of_range",
        "up_to_seq",
    )


async def _round(
    n: int, cid: str, sender: ChatClient, reader: ChatClient, deliverer: ChatClient
) -> tuple[Frame, Frame | None, Frame | None]:
    """
    Issue one send, one read and one delivered at once, from three sockets.
    """

    def mark(device: ChatClient, kind: str) -> asyncio.Future[Frame | None]:
        known = device.latest_seq(cid)
        if known == 0:
            # This device has not heard of the conversation yet.
            return asyncio.ensure_future(asyncio.sleep(0, None))
        frame = {"type": kind, "conversation_id": cid, "up_to_seq": known}
        return asyncio.ensure_future(device.request(frame))

    sent, read, delivered = await asyncio.gather(
        sender.request(send_frame(f"round {n}", f"r{n}", conversation_id=cid)),
        mark(reader, "read"),
        mark(deliverer, "delivered"),
    )
    return sent, read, delivered


async def test_concurrent_sends_reads_and_deliveries_never_fail_nor_leave_gaps(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    sender = await alice.connect()
    reader, deliverer = await bob.connect(), await bob.connect()
    # The pair's conversation id is derived from the users; the first ack names it.
    first = await sender.request(send_frame("round 1", "r1", to=bob.name))
    cid = first["conversation_id"]
    acked = [first["seq"]]
    receipts: list[tuple[int, Frame]] = []

    for n in range(2, ROUNDS + 1):
        sent, read, delivered = await _round(n, cid, sender, reader, deliverer)
        assert sent["type"] == "ack", sent
        acked.append(sent["seq"])
        for reply in (read, delivered):
            if reply is not None:
                receipts.append((max(acked), reply))

    assert acked == list(range(1, ROUNDS + 1))
    for device in (sender, reader, deliverer):
        assert device.of_type("error") == []
    for latest_acked, receipt in receipts:
        assert receipt["type"] == "receipt", receipt
        assert receipt["read_up_to"] <= receipt["delivered_up_to"] <= latest_acked
    assert any(receipt["read_up_to"] > 0 for _, receipt in receipts)
    for device in (reader, deliverer):
        await device.wait_for(is_type("message", conversation_id=cid, seq=ROUNDS))
        assert [m["seq"] for m in device.messages(cid)] == acked
    await deployment.settle()
    history = await alice.history(cid)
    assert [m["seq"] for m in history] == list(range(ROUNDS, 0, -1))
