"""
Crashes: what was acknowledged survives SIGKILL, and nothing is counted twice.
"""

from __future__ import annotations

from tests.e2e.client import Cast, ChatClient, Frame, is_type, send_frame
from tests.e2e.deployment import Deployment

BURST = 40


async def sync_messages(device: ChatClient) -> list[Frame]:
    ref = device.new_ref()
    await device.send({"type": "sync", "cursors": {}, "ref": ref})
    await device.wait_for(is_type("synced", ref=ref))
    pages = [
        f for f in device.frames if f.get("ref") == ref and f["type"] == "sync_page"
    ]
    return [message for page in pages for message in page["messages"]]


async def test_every_acked_message_survives_a_kill_and_is_projected_once(
    fresh_deployment: Deployment, cast: Cast
) -> None:
    deployment = fresh_deployment
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    acked: list[Frame] = []

    for crash in range(2):
        a = await alice.connect()
        frames = [
            send_frame(f"crash {crash} message {n}", f"c{crash}-{n}", to=bob.name)
            for n in range(BURST)
        ]
        acks = await a.request_all(frames)
        assert {ack["type"] for ack in acks} == {"ack"}
        acked.extend(acks)
        # Killed the moment the last ack arrived: nothing gets to flush.
        deployment.kill()
        deployment.start()

    cid = acked[0]["conversation_id"]
    await deployment.settle()
    history = await bob.history(cid)
    assert [m["seq"] for m in history] == list(range(2 * BURST, 0, -1))
    assert {m["message_id"] for m in history} == {ack["message_id"] for ack in acked}
    assert [(m["seq"], m["message_id"]) for m in reversed(history)] == [
        (ack["seq"], ack["message_id"]) for ack in acked
    ]
    seen_by_bob = await bob.conversation(cid)
    assert (seen_by_bob["last_seq"], seen_by_bob["unread"]) == (2 * BURST, 2 * BURST)
    synced = await sync_messages(await bob.connect())
    assert [m["message_id"] for m in synced] == [ack["message_id"] for ack in acked]
    assert [m["body"] for m in synced] == [m["body"] for m in reversed(history)]


async def test_receipts_survive_a_kill_without_moving(
    fresh_deployment: Deployment, cast: Cast
) -> None:
    deployment = fresh_deployment
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    acks = await a.request_all(
        [send_frame(f"m{n}", f"m{n}", to=bob.name) for n in range(5)]
    )
    cid = acks[0]["conversation_id"]
    b = await bob.connect()
    receipt = await b.request({"type": "read", "conversation_id": cid, "up_to_seq": 3})
    assert receipt["type"] == "receipt"

    deployment.kill()
    deployment.start()

    await deployment.settle()
    seen_by_bob = await bob.conversation(cid)
    assert (seen_by_bob["mine"]["read_up_to"], seen_by_bob["unread"]) == (3, 2)
    theirs = (await alice.conversation(cid))["theirs"]
    assert (theirs["delivered_up_to"], theirs["read_up_to"]) == (3, 3)
