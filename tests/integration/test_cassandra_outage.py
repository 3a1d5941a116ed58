"""
Cassandra stopped under a projector and started again on its old data.

This is the one test that stops the shared Cassandra node; it restarts it
with ``CassandraServer.restart()``, which keeps the data, whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from uuid import uuid4

import pytest

from domain.ids import conversation_id, ordered_pair
from infra.cassandra.cluster import build_cluster
from infra.cassandra.errors import HistoryUnavailableError
from infra.cassandra.migrate import drop_keyspace, migrate
from infra.cassandra.store import CassandraHistory
from infra.local.servers import CassandraServer
from infra.settings import Settings
from projections.history import ConversationOpened, HistoryChange, MessageStored
from projections.views import MessageView

pytestmark = pytest.mark.integration

PROJECTOR = "history"
RETRY_SECONDS = 60.0
STARTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

T = TypeVar("T")


@pytest.fixture
def history(cassandra_server: CassandraServer) -> Iterator[CassandraHistory]:
    keyspace = f"duetto_test_{uuid4().hex[:12]}"
    cluster = build_cluster(Settings(cassandra_port=cassandra_server.port))
    session = cluster.connect()
    migrate(session, keyspace)
    yield CassandraHistory(session, keyspace)
    retrying(lambda: drop_keyspace(session, keyspace))
    cluster.shutdown()


def retrying(action: Callable[[], T]) -> T:
    """
    Do ``action`` as a consumer would: again after each unavailable error.
    """
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            return action()
        except HistoryUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def conversation(messages: int) -> list[HistoryChange]:
    unique = uuid4().hex[:10]
    user_a, user_b = ordered_pair(f"ann-{unique}", f"bob-{unique}")
    cid = conversation_id(user_a, user_b)
    changes: list[HistoryChange] = [ConversationOpened(cid, 1, user_a, user_b, STARTED)]
    for seq in range(1, messages + 1):
        view = MessageView(
            conversation_id=cid,
            seq=seq,
            message_id=uuid4(),
            sender=user_a,
            body=f"message {seq}",
            sent_at=STARTED + timedelta(seconds=seq),
            client_msg_id=f"client-{seq}",
        )
        changes.append(MessageStored(seq + 1, view))
    return changes


def test_history_is_unavailable_while_down_and_complete_after_restart(
    cassandra_server: CassandraServer, history: CassandraHistory
) -> None:
    # Given a projector that applied half of a conversation,
    changes = conversation(200)
    cid = changes[0].conversation_id
    history.apply(changes[:101], projector=PROJECTOR, position=101)

    # when Cassandra stops, its writes and reads fail as unavailable,
    cassandra_server.install()  # The classpath a restart needs; cached, no download.
    cassandra_server.stop()
    try:
        with pytest.raises(HistoryUnavailableError):
            history.apply(changes[101:], projector=PROJECTOR, position=201)
        with pytest.raises(HistoryUnavailableError):
            history.page(cid)
    finally:
        cassandra_server.restart()

    # then the same batch, retried until Cassandra answers, lands exactly once.
    retrying(lambda: history.apply(changes[95:], projector=PROJECTOR, position=201))
    page = retrying(lambda: history.page(cid, limit=500))
    assert [message.seq for message in page.messages] == list(range(200, 0, -1))
    assert page.end
    assert history.position(PROJECTOR) == 201
