"""
Offline push notifications, end to end (issue 4), on every profile.

A real deployment runs with short grace and collapse periods: ``duetto
serve`` alone (embedded), or two gateways, the relay, both projectors and
``duetto notify`` (scaled). Browsers' subscriptions point at a push service
of the test's own on loopback, which verifies each VAPID signature and
decrypts each payload (see ``push_receiver``). Waits are bounded; "nothing
arrives" is checked by waiting past the grace period with a margin.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from infra.settings import Settings
from tests.e2e.client import ChatClient, Person, send_frame
from tests.e2e.deployment import (
    STARTERS,
    Deployment,
    EmbeddedDeployment,
    ScaledDeployment,
)
from tests.e2e.push_receiver import (
    PushReceiver,
    WebhookReceiver,
    wait_until,
    webhook_signature,
)

GRACE_SECONDS = 1.5
QUIET_SECONDS = GRACE_SECONDS + 2.0
PUSH_ENV = {
    "DUETTO_PUSH_GRACE_SECONDS": str(GRACE_SECONDS),
    "DUETTO_PUSH_COLLAPSE_SECONDS": "3",
    "DUETTO_PUSH_RETRY_BASE_SECONDS": "0.2",
}
WEBHOOK_SECRET = "webhook-secret-for-the-e2e-suite-0123456789"


class PushWorld:
    """
    A running server, the loopback push service, and the people of one test.
    """

    def __init__(self, deployment: Deployment, receiver: PushReceiver) -> None:
        self.deployment = deployment
        self.receiver = receiver
        self.stack = AsyncExitStack()

    def person(self, name: str) -> Person:
        return Person(name, self.deployment, self.stack)

    async def subscribe(self, person: Person, device: str) -> str:
        """Register a new device of ``person``; return its endpoint."""
        subscription = self.receiver.device(device).subscription(self.receiver.origin)
        response = await person.http.post("/v1/push/subscriptions", json=subscription)
        assert response.status_code == 201, response.text
        endpoint: str = subscription["endpoint"]
        return endpoint

    def attempts(self) -> list[tuple[str, int | None]]:
        """The attempt log as the server recorded it, read without writing."""
        if isinstance(self.deployment, ScaledDeployment):
            return _postgres_attempts(self.deployment.env)
        assert isinstance(self.deployment, EmbeddedDeployment)
        path = self.deployment.data_dir / "push.sqlite"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT outcome, status_code FROM attempts ORDER BY started_at"
            ).fetchall()
        return [(outcome, code) for outcome, code in rows]

    def kill_notifier(self) -> None:
        """SIGKILL whatever process runs the notifier."""
        if isinstance(self.deployment, ScaledDeployment):
            self.deployment.process("notify").kill()
        else:
            self.deployment.kill()

    def restart_notifier(self) -> None:
        if isinstance(self.deployment, ScaledDeployment):
            self.deployment.process("notify").start()
        else:
            self.deployment.start()


def _postgres_attempts(env: Mapping[str, str]) -> list[tuple[str, int | None]]:
    settings = Settings.model_validate(
        {k.removeprefix("DUETTO_").lower(): v for k, v in env.items()}
    )
    options = f"-c search_path={settings.postgres_schema}"
    with psycopg.connect(settings.postgres_dsn, options=options) as db:
        rows = db.execute(
            "SELECT outcome, status_code FROM push_attempts ORDER BY started_at"
        ).fetchall()
    return [(outcome, code) for outcome, code in rows]


StartWorld = Callable[[Mapping[str, str]], Awaitable[PushWorld]]


@pytest.fixture
def receiver() -> Iterator[PushReceiver]:
    service = PushReceiver()
    service.start()
    yield service
    service.stop()


@pytest.fixture
async def start_world(
    profile: str, servers: None, tmp_path: Path, receiver: PushReceiver
) -> AsyncIterator[StartWorld]:
    worlds: list[PushWorld] = []

    async def start(env: Mapping[str, str]) -> PushWorld:
        deployment = STARTERS[profile](tmp_path / "server", {**PUSH_ENV, **env})
        deployment.start()
        world = PushWorld(deployment, receiver)
        worlds.append(world)
        async with httpx.AsyncClient(trust_env=False) as http:
            url = f"{deployment.base_url}/v1/push/vapid-public-key"
            receiver.vapid_public_key = (await http.get(url)).json()["public_key"]
        return world

    yield start
    for world in worlds:
        await world.stack.aclose()
        world.deployment.stop()


@pytest.fixture
async def world(start_world: StartWorld) -> PushWorld:
    return await start_world({})


async def send_to(sender: ChatClient, to: str, *bodies: str) -> list[dict[str, Any]]:
    frames = [send_frame(body, f"c{n}", to=to) for n, body in enumerate(bodies)]
    return await sender.request_all(frames)


async def test_one_message_to_an_offline_person_is_pushed_once_to_each_device(
    world: PushWorld,
) -> None:
    alice, bob = world.person("alice"), world.person("bob")
    await world.subscribe(bob, "bob-laptop")
    await world.subscribe(bob, "bob-phone")
    a = await alice.connect()

    sent_at = time.time()
    await send_to(a, "bob", "a secret body")
    pushes = await asyncio.to_thread(world.receiver.wait_for, 2)
    await asyncio.sleep(QUIET_SECONDS)

    assert sorted(p.device for p in world.receiver.delivered()) == [
        "bob-laptop",
        "bob-phone",
    ]
    for push in pushes:
        assert (push.payload["sender"], push.payload["count"]) == ("alice", 1)
        assert "body" not in push.payload
        assert push.at - sent_at >= GRACE_SECONDS * 0.9
        # A repeat after a crash would replace this one at the push service.
        assert push.topic == UUID(push.payload["push_id"]).hex
    assert world.receiver.rejections == []


async def test_five_messages_within_the_collapse_window_become_one_push(
    world: PushWorld,
) -> None:
    alice, bob = world.person("alice"), world.person("bob")
    await world.subscribe(bob, "bob-phone")
    a = await alice.connect()

    await send_to(a, "bob", *(f"m{n}" for n in range(1, 6)))
    pushes = await asyncio.to_thread(world.receiver.wait_for, 1)
    await asyncio.sleep(QUIET_SECONDS)

    assert len(world.receiver.delivered()) == 1
    assert (pushes[0].payload["sender"], pushes[0].payload["count"]) == ("alice", 5)


async def test_no_push_when_the_person_comes_back_and_acknowledges_in_time(
    world: PushWorld,
) -> None:
    alice, bob = world.person("alice"), world.person("bob")
    await world.subscribe(bob, "bob-phone")
    a = await alice.connect()

    [ack] = await send_to(a, "bob", "are you there?")
    b = await bob.connect()
    await b.request(
        {"type": "delivered", "conversation_id": ack["conversation_id"], "up_to_seq": 1}
    )
    await asyncio.sleep(QUIET_SECONDS)

    assert world.receiver.requests == []


async def test_no_push_while_any_device_of_the_person_is_online(
    world: PushWorld,
) -> None:
    alice, bob = world.person("alice"), world.person("bob")
    await world.subscribe(bob, "bob-laptop")  # online below
    await world.subscribe(bob, "bob-phone")  # offline throughout
    await bob.connect()
    a = await alice.connect()

    await send_to(a, "bob", "hello")
    await asyncio.sleep(QUIET_SECONDS)

    assert world.receiver.requests == []


async def test_two_server_errors_then_success_make_one_push_and_three_attempts(
    world: PushWorld,
) -> None:
    alice, bob = world.person("alice"), world.person("bob")
    await world.subscribe(bob, "bob-phone")
    world.receiver.script("bob-phone", 500, 500, retry_after="0")
    a = await alice.connect()

    await send_to(a, "bob", "hello")
    await asyncio.to_thread(world.receiver.wait_for, 1)
    await asyncio.sleep(QUIET_SECONDS)

    assert world.receiver.requests_to("bob-phone") == [500, 500, 201]
    assert len(world.receiver.delivered()) == 1
    assert world.attempts() == [("retry", 500), ("retry", 500), ("sent", 201)]


async def test_a_gone_subscription_is_removed_and_never_used_again(
    world: PushWorld,
) -> None:
    alice, bob = world.person("alice"), world.person("bob")
    gone = await world.subscribe(bob, "bob-old-phone")
    await world.subscribe(bob, "bob-laptop")
    world.receiver.script("bob-old-phone", 410)
    a = await alice.connect()

    await send_to(a, "bob", "first")
    await asyncio.to_thread(world.receiver.wait_for, 1)
    await asyncio.sleep(0.5)
    await a.request(send_frame("second", "later", to="bob"))
    await asyncio.to_thread(world.receiver.wait_for, 2)
    await asyncio.sleep(QUIET_SECONDS)

    assert world.receiver.requests_to("bob-old-phone") == [410]
    assert len(world.receiver.delivered("bob-laptop")) == 2
    forget = await bob.http.request(
        "DELETE", "/v1/push/subscriptions", json={"endpoint": gone}
    )
    assert forget.status_code == 404


RESTART_WAIT_SECONDS = 45.0


async def test_a_notifier_killed_after_deciding_pushes_exactly_once_on_restart(
    start_world: StartWorld,
) -> None:
    world = await start_world({"DUETTO_PUSH_GRACE_SECONDS": "3"})
    alice, bob = world.person("alice"), world.person("bob")
    await world.subscribe(bob, "bob-phone")
    a = await alice.connect()

    await send_to(a, "bob", "hello")
    await asyncio.to_thread(
        wait_until,
        lambda: "push pending" in world.deployment.log_text(),
        "the decision",
        10.0,
    )
    world.kill_notifier()
    assert world.receiver.requests == []
    world.restart_notifier()
    # A restarted scaled notifier reconnects to its servers first; on two
    # loaded cores that alone can take most of the default wait.
    pushes = await asyncio.to_thread(world.receiver.wait_for, 1, RESTART_WAIT_SECONDS)
    await asyncio.sleep(QUIET_SECONDS + 1.5)

    assert len(world.receiver.requests) == 1
    assert (pushes[0].payload["sender"], pushes[0].payload["count"]) == ("alice", 1)


async def test_the_webhook_is_signed_and_forgeries_or_replays_are_refused(
    start_world: StartWorld,
) -> None:
    hook = WebhookReceiver(WEBHOOK_SECRET)
    hook.start()
    try:
        await _webhook_case(start_world, hook)
    finally:
        hook.stop()


async def _webhook_case(start_world: StartWorld, hook: WebhookReceiver) -> None:
    world = await start_world(
        {
            "DUETTO_PUSH_WEBHOOK_URL": hook.url,
            "DUETTO_PUSH_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    )
    alice = world.person("alice")
    a = await alice.connect()

    [ack] = await send_to(a, "bob", "hello")
    [call] = await asyncio.to_thread(hook.wait_for, 1)
    forged = await _post_to_hook(hook, b'{"count": 99}', signed_with="not the secret")
    replayed = await _post_to_hook(hook, b'{"count": 1}', age_seconds=600)

    assert (call["conversation_id"], call["sender"], call["count"]) == (
        ack["conversation_id"],
        "alice",
        1,
    )
    assert "body" not in call
    assert (forged, replayed) == (401, 401)
    assert hook.rejections == ["bad signature", "stale timestamp"]
    assert len(hook.accepted) == 1


async def _post_to_hook(
    hook: WebhookReceiver,
    body: bytes,
    *,
    signed_with: str | None = None,
    age_seconds: int = 0,
) -> int:
    timestamp = str(int(time.time()) - age_seconds)
    signature = (
        hook.sign(timestamp, body)
        if signed_with is None
        else webhook_signature(signed_with.encode(), timestamp, body)
    )
    headers = {
        "Content-Type": "application/json",
        "X-Duetto-Timestamp": timestamp,
        "X-Duetto-Signature": signature,
    }
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(hook.url, content=body, headers=headers)
    return response.status_code
