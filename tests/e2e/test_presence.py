"""
Presence: online while any device is, last seen when the last one leaves.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tests.e2e.client import Cast, is_type, send_frame
from tests.e2e.deployment import Deployment

LOG_TIMEOUT = 10.0


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def to_millis(moment: datetime) -> datetime:
    # The server reports times to the millisecond, truncated.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def wait_for_log(deployment: Deployment, *words: str) -> None:
    """
    Wait until the server logged a line holding every one of ``words``.
    """
    async with asyncio.timeout(LOG_TIMEOUT):
        while not any(
            all(word in line for word in words)
            for line in deployment.log_text().splitlines()
        ):
            await asyncio.sleep(0.02)


async def test_presence_goes_offline_once_when_the_last_device_closes(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    phone = await alice.connect()
    await phone.request(send_frame("hi", "x1", to=bob.name))
    await deployment.settle()
    b = await bob.connect()
    laptop = await alice.connect()
    # Once the laptop answers, the server has handled its arrival.
    await laptop.ping()
    await b.ping()
    assert b.of_type("presence") == []

    await phone.close()
    # The server has handled that close once it logged it.
    await wait_for_log(deployment, alice.name, "closed")
    await b.ping()

    assert b.of_type("presence") == []
    status = await bob.http.get(f"/v1/presence/{alice.name}")
    assert status.status_code == 200
    assert (status.json()["user"], status.json()["online"]) == (alice.name, True)

    before = to_millis(datetime.now(UTC))
    await laptop.close()
    offline = await b.wait_for(is_type("presence", user=alice.name))
    after = datetime.now(UTC)
    await b.ping()

    assert b.of_type("presence") == [offline]
    assert offline["online"] is False
    assert before <= parse_time(offline["last_seen"]) <= after
    status = await bob.http.get(f"/v1/presence/{alice.name}")
    assert status.json() == {
        "user": alice.name,
        "online": False,
        "last_seen": offline["last_seen"],
    }


async def test_coming_online_is_announced_to_those_who_share_a_conversation(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    stranger = cast.person(deployment, "stranger")
    b = await bob.connect()
    await b.request(send_frame("hi", "x1", to=alice.name))
    await deployment.settle()
    s = await stranger.connect()

    await alice.connect()
    await (await alice.connect()).ping()

    online = await b.wait_for(is_type("presence", user=alice.name))
    assert online["online"] is True
    await b.ping()
    await s.ping()
    assert b.of_type("presence") == [online]
    assert s.of_type("presence") == []
    hidden = await stranger.http.get(f"/v1/presence/{alice.name}")
    assert hidden.status_code == 404
