"""
Cassandra stopped for 30 s under load (issue 3, case 6).

A scaled gateway takes sends over HTTP at a steady rate while ``duetto relay``
and ``duetto project history`` run. Cassandra stops for 30 s: every send is
still acked, because the event store is the source of truth; history reads
fail fast with a 503; once Cassandra is back the projector catches up and
history holds every acked message exactly once.

Besides tests/integration/test_cassandra_outage.py, this is the one test that
stops the shared Cassandra node; it always brings it back with
``CassandraServer.restart()``, which keeps the data.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from api.auth import issue_token
from domain.ids import UserId, conversation_id
from infra.cassandra.cluster import build_cluster
from infra.cassandra.errors import HistoryUnavailableError
from infra.cassandra.migrate import drop_keyspace, migrate
from infra.cassandra.store import CassandraHistory
from infra.local.servers import CassandraServer
from infra.settings import Settings
from tests.integration.processes import DuettoProcess, wait_until

pytestmark = pytest.mark.integration

PAIRS = 10
SENDS_PER_SECOND = 20.0
LEAD_SECONDS = 5.0
OUTAGE_SECONDS = 30.0
TRAIL_SECONDS = 5.0
PROBE_EVERY_SECONDS = 2.0
# A read must fail well within the driver's 10 s request timeout, not hang.
READ_TIMEOUT_SECONDS = 12.0
SEND_TIMEOUT_SECONDS = 15.0
CATCH_UP_SECONDS = 120.0
TOKEN_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Send:
    """
    One POST /v1/messages and what came back.
    """

    at: float
    sender: UserId
    peer: UserId
    client_msg_id: str
    status: int
    ack: dict[str, Any]


@dataclass(frozen=True)
class Probe:
    """
    One history read during the outage.
    """

    status: int
    code: str | None
    seconds: float


class Sender(threading.Thread):
    """
    Sends over HTTP at a steady rate, round-robin over conversations.
    """

    def __init__(self, base_url: str, secret: str, pairs: list[tuple[str, str]]):
        super().__init__(name="sender", daemon=True)
        self._base_url = base_url
        self._pairs = pairs
        self._tokens = {
            user: issue_token(secret, user, ttl_seconds=TOKEN_TTL_SECONDS)
            for pair in pairs
            for user in pair
        }
        self.stopping = threading.Event()
        self.sends: list[Send] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(
                base_url=self._base_url, timeout=SEND_TIMEOUT_SECONDS
            ) as client:
                self._send_until_stopped(client)
        except BaseException as e:
            self.error = e

    def _send_until_stopped(self, client: httpx.Client) -> None:
        started = time.monotonic()
        n = 0
        while not self.stopping.is_set():
            user_a, user_b = self._pairs[n % len(self._pairs)]
            sender, peer = (user_a, user_b) if n % 3 else (user_b, user_a)
            client_msg_id = f"load-{n}"
            at = time.monotonic()
            status, ack = self._send(client, sender, peer, client_msg_id)
            self.sends.append(Send(at, sender, peer, client_msg_id, status, ack))
            n += 1
            pause = started + n / SENDS_PER_SECOND - time.monotonic()
            self.stopping.wait(max(0.0, pause))

    def _send(
        self, client: httpx.Client, sender: UserId, peer: UserId, client_msg_id: str
    ) -> tuple[int, dict[str, Any]]:
        try:
            response = client.post(
                "/v1/messages",
                json={
                    "to": peer,
                    "body": client_msg_id,
                    "client_msg_id": client_msg_id,
                },
                headers={"Authorization": f"Bearer {self._tokens[sender]}"},
            )
        except httpx.HTTPError as e:
            return 0, {"error": repr(e)}  # No answer at all: not an ack.
        return response.status_code, _json(response)

    def token(self, user: UserId) -> str:
        return self._tokens[user]


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"text": response.text}
    return body if isinstance(body, dict) else {"body": body}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def retrying(action: Any, *, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except HistoryUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass(frozen=True)
class Keyspace:
    name: str
    history: CassandraHistory


@pytest.fixture
def keyspace(cassandra_server: CassandraServer) -> Iterator[Keyspace]:
    """
    A private keyspace, migrated before any process starts, dropped after.
    """
    keyspace = f"duetto_load_{uuid.uuid4().hex[:12]}"
    cluster = build_cluster(Settings(cassandra_port=cassandra_server.port))
    session = cluster.connect()
    migrate(session, keyspace)
    yield Keyspace(keyspace, CassandraHistory(session, keyspace))
    retrying(lambda: drop_keyspace(session, keyspace))
    cluster.shutdown()


def probe_read(client: httpx.Client, sender: Sender, cid: UUID, user: UserId) -> Probe:
    began = time.monotonic()
    response = client.get(
        f"/v1/conversations/{cid}/messages",
        headers={"Authorization": f"Bearer {sender.token(user)}"},
        timeout=READ_TIMEOUT_SECONDS,
    )
    code = _json(response).get("error", {}).get("code")
    return Probe(response.status_code, code, time.monotonic() - began)


def stop_cassandra_for_30_seconds(
    server: CassandraServer, probe: Any
) -> tuple[float, float, list[Probe]]:
    """
    Stop Cassandra, read history every few seconds, restart it after 30 s.

    Returns when it stopped and when its restart began, and the reads.
    """
    server.install()  # The classpath a restart needs; cached, no download.
    probes: list[Probe] = []
    server.stop()
    stopped_at = time.monotonic()
    try:
        while time.monotonic() - stopped_at < OUTAGE_SECONDS - PROBE_EVERY_SECONDS:
            probes.append(probe())
            time.sleep(PROBE_EVERY_SECONDS)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
    finally:
        restarting_at = time.monotonic()
        server.restart()
    return stopped_at, restarting_at, probes


def history_of(history: CassandraHistory, cid: UUID) -> list[tuple[UUID, int]]:
    page = history.page(cid, limit=10_000)
    assert page.end
    return [(m.message_id, m.seq) for m in page.messages]


def test_sends_are_acked_while_cassandra_is_down_and_history_catches_up(
    scaled_env: dict[str, str],
    cassandra_server: CassandraServer,
    keyspace: Keyspace,
    tmp_path: Path,
) -> None:
    # Given a scaled gateway, a relay and a history projector, all running,
    port = free_port()
    env = {
        **scaled_env,
        "DUETTO_CASSANDRA_KEYSPACE": keyspace.name,
        "DUETTO_CASSANDRA_PORT": str(cassandra_server.port),
        "DUETTO_REDIS_URL": "redis://127.0.0.1:16390/0",
        "DUETTO_REDIS_PREFIX": f"load-{uuid.uuid4().hex[:8]}:",
    }
    unique = uuid.uuid4().hex[:8]
    pairs = [(f"ann{n}-{unique}", f"bob{n}-{unique}") for n in range(PAIRS)]
    base_url = f"http://127.0.0.1:{port}"
    processes = [
        DuettoProcess(["relay"], env, tmp_path / "relay.log"),
        DuettoProcess(["project", "history"], env, tmp_path / "history.log"),
        DuettoProcess(
            ["serve", "--profile", "scaled", "--port", str(port)],
            env,
            tmp_path / "gateway.log",
        ),
    ]
    sender = Sender(base_url, env["DUETTO_JWT_SECRET"], pairs)
    user, peer = pairs[0]
    cid = conversation_id(user, peer)
    try:
        wait_until(
            lambda: _healthy(base_url), timeout=60, what="the gateway's /healthz"
        )
        sender.start()

        # when Cassandra stops for 30 s while sends keep coming,
        time.sleep(LEAD_SECONDS)
        with httpx.Client(base_url=base_url) as client:
            stopped_at, restarting_at, probes = stop_cassandra_for_30_seconds(
                cassandra_server, lambda: probe_read(client, sender, cid, user)
            )
            restarted_at = time.monotonic()
            time.sleep(TRAIL_SECONDS)
            sender.stopping.set()
            sender.join(timeout=SEND_TIMEOUT_SECONDS + 5)
            assert sender.error is None
            reads_back = retrying_read(client, sender, cid, user)

        # then every send was acked, reads failed cleanly and fast,
        sends = sender.sends
        assert [s for s in sends if s.status != 201] == []
        during = [s for s in sends if stopped_at <= s.at < restarting_at]
        assert len(during) >= SENDS_PER_SECOND * OUTAGE_SECONDS * 0.8
        assert probes
        assert all(p.status == 503 for p in probes), probes
        assert all(p.code == "history_unavailable" for p in probes), probes
        assert max(p.seconds for p in probes) < READ_TIMEOUT_SECONDS
        assert reads_back == 200
        gateway_log = processes[2].log.read_text(errors="replace")
        assert "Exception in ASGI application" not in gateway_log

        # and history catches up with every acked message exactly once.
        acked: dict[UUID, dict[UUID, int]] = {}
        for send in sends:
            ack = send.ack
            acked.setdefault(UUID(ack["conversation_id"]), {})[
                UUID(ack["message_id"])
            ] = int(ack["seq"])
        expected = {
            c: sorted(messages.items(), key=lambda item: -item[1])
            for c, messages in acked.items()
        }
        wait_until(
            lambda: all(
                retrying(lambda c=c: history_of(keyspace.history, c)) == expected[c]
                for c in expected
            ),
            timeout=CATCH_UP_SECONDS,
            what="history to hold every acked message",
        )
        for messages in expected.values():
            seqs = [seq for _, seq in messages]
            assert seqs == list(range(len(seqs), 0, -1))
            assert len({message_id for message_id, _ in messages}) == len(seqs)
        assert sum(map(len, expected.values())) == len(sends)
        print(
            f"{len(sends)} sends, {len(during)} during the outage, all acked; "
            f"{len(probes)} reads got 503 in at most "
            f"{max(p.seconds for p in probes):.2f} s; restart took "
            f"{restarted_at - restarting_at:.1f} s"
        )
    finally:
        sender.stopping.set()
        for process in reversed(processes):
            process.stop()


def retrying_read(client: httpx.Client, sender: Sender, cid: UUID, user: UserId) -> int:
    """
    Read history until the gateway answers from Cassandra again; the status.
    """
    deadline = time.monotonic() + 60
    while True:
        probe = probe_read(client, sender, cid, user)
        if probe.status == 200 or time.monotonic() > deadline:
            return probe.status
        time.sleep(0.5)


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
