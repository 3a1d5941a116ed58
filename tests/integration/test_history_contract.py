"""
One contract for history, run on the embedded SQLite store and on Cassandra.

Every test in the first part runs twice, once per store, and expects the same
answers from both. The cases of issue 3 follow: history paging over several
Cassandra buckets (case 4) on both stores, and receipt marks written with equal
or skewed write timestamps (case 3), which only Cassandra has.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID, uuid4

import pytest

from domain.ids import UserId, conversation_id, ordered_pair
from infra.cassandra.cluster import build_cluster
from infra.cassandra.migrate import drop_keyspace, migrate
from infra.cassandra.store import BUCKET_SIZE, CassandraHistory
from infra.local.servers import CassandraServer
from infra.settings import Settings
from infra.sqlite import SQLiteHistory
from projections.history import (
    ConversationOpened,
    HistoryChange,
    MarksRaised,
    MessageStored,
)
from projections.ports import HistoryQueries, HistoryStore
from projections.views import HistoryPage, MessageView

pytestmark = pytest.mark.integration

PAGE = 50
STARTED = datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
# A rebuild writes every row with one timestamp; these are such timestamps.
REBUILD_TIMESTAMP = 1_700_000_000_000_000
LATER_TIMESTAMP = REBUILD_TIMESTAMP + 3_600_000_000
REPEATS = 20
INSTANCES = 3


class History(HistoryStore, HistoryQueries, Protocol):
    """
    Both ports, as each store implements them.
    """


@dataclass
class Pair:
    """
    A conversation under test that numbers its changes as the aggregate does.
    """

    user_a: UserId
    user_b: UserId
    version: int = 0
    seq: int = 0

    @classmethod
    def fresh(cls) -> Pair:
        # Fresh users give each test its own conversation in a shared keyspace.
        unique = uuid4().hex[:10]
        return cls(*ordered_pair(f"ann-{unique}", f"bob-{unique}"))

    @property
    def id(self) -> UUID:
        return conversation_id(self.user_a, self.user_b)

    def peer_of(self, user: UserId) -> UserId:
        return self.user_b if user == self.user_a else self.user_a

    def opened(self, at: datetime = STARTED) -> ConversationOpened:
        self.version += 1
        return ConversationOpened(self.id, self.version, self.user_a, self.user_b, at)

    def message(self, sender: UserId, body: str | None = None) -> MessageStored:
        self.version += 1
        self.seq += 1
        view = MessageView(
            conversation_id=self.id,
            seq=self.seq,
            message_id=uuid4(),
            sender=sender,
            body=body or f"message {self.seq}",
            sent_at=STARTED + timedelta(seconds=self.seq, microseconds=self.seq),
            client_msg_id=f"client-{self.seq}",
        )
        return MessageStored(self.version, view)

    def marks(self, user: UserId, *, delivered: int, read: int = 0) -> MarksRaised:
        self.version += 1
        return MarksRaised(self.id, self.version, user, delivered, read)

    def messages(self, count: int) -> list[HistoryChange]:
        senders = (self.user_a, self.user_b)
        return [self.message(senders[n % 2]) for n in range(count)]


def projector_name() -> str:
    return f"history-{uuid4().hex[:8]}"


def apply(
    history: History, changes: Sequence[HistoryChange], position: int = 1
) -> None:
    history.apply(changes, projector="history-contract", position=position)


# Stores.


@pytest.fixture(scope="module")
def cassandra_session(cassandra_server: CassandraServer) -> Iterator[tuple[Any, str]]:
    """
    A session on a keyspace private to this run, dropped at the end.
    """
    keyspace = f"duetto_test_{uuid4().hex[:12]}"
    cluster = build_cluster(Settings(cassandra_port=cassandra_server.port))
    session = cluster.connect()
    migrate(session, keyspace)
    yield session, keyspace
    drop_keyspace(session, keyspace)
    cluster.shutdown()


@pytest.fixture(params=["sqlite", "cassandra"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[History]:
    if request.param == "sqlite":
        store = SQLiteHistory(tmp_path / "history.sqlite")
        yield store
        store.close()
        return
    session, keyspace = request.getfixturevalue("cassandra_session")
    yield CassandraHistory(session, keyspace)


def pages_newest_first(history: History, cid: UUID) -> list[HistoryPage]:
    pages = [history.page(cid, limit=PAGE)]
    while not pages[-1].end:
        cursor = pages[-1].cursor
        assert cursor is not None
        pages.append(history.page(cid, before_seq=cursor, limit=PAGE))
    return pages


def seqs_of(pages: Sequence[HistoryPage]) -> list[int]:
    return [message.seq for page in pages for message in page.messages]


def snapshot(history: History, pair: Pair, projector: str) -> tuple[object, ...]:
    return (
        history.participants(pair.id),
        history.conversations_of(pair.user_a),
        history.conversations_of(pair.user_b),
        history.peers_of(pair.user_a),
        history.receipts(pair.id),
        pages_newest_first(history, pair.id),
        history.position(projector),
    )


# The contract, on both stores.


def test_opened_conversation_is_listed_on_both_sides(history: History) -> None:
    pair = Pair.fresh()

    apply(history, [pair.opened()])

    assert history.participants(pair.id) == (pair.user_a, pair.user_b)
    assert history.peers_of(pair.user_a) == [pair.user_b]
    assert history.peers_of(pair.user_b) == [pair.user_a]
    [view] = history.conversations_of(pair.user_b)
    assert (view.conversation_id, view.user, view.peer) == (
        pair.id,
        pair.user_b,
        pair.user_a,
    )
    assert (view.last_seq, view.last_message, view.unread) == (0, None, 0)
    assert (view.mine.delivered_up_to, view.mine.read_up_to) == (0, 0)
    assert [
        (r.user, r.delivered_up_to, r.read_up_to) for r in history.receipts(pair.id)
    ] == [(pair.user_a, 0, 0), (pair.user_b, 0, 0)]


def test_unknown_conversation_has_nothing(history: History) -> None:
    pair = Pair.fresh()

    assert history.participants(pair.id) is None
    assert history.receipts(pair.id) == []
    assert history.conversations_of(pair.user_a) == []
    assert history.peers_of(pair.user_a) == []
    assert history.page(pair.id) == HistoryPage(messages=[], cursor=None, end=True)


def test_messages_come_back_exactly_as_stored(history: History) -> None:
    pair = Pair.fresh()
    opened = pair.opened()
    stored = pair.message(pair.user_a, body="héllo 👋 ; -- 'quoted'")

    apply(history, [opened, stored])

    assert history.page(pair.id).messages == [stored.message]
    [view] = history.conversations_of(pair.user_b)
    assert view.last_message == stored.message


def test_conversations_list_most_recent_activity_first(history: History) -> None:
    me = f"me-{uuid4().hex[:10]}"
    quiet, busy, idle = (Pair(*ordered_pair(me, f"{name}-{me}")) for name in "qbi")
    changes = [
        quiet.opened(STARTED),
        busy.opened(STARTED),
        idle.opened(STARTED + timedelta(hours=1)),
        quiet.message(me),
        *busy.messages(3),
    ]

    apply(history, changes)

    # busy's last message is newer than quiet's; idle only started, but later.
    views = history.conversations_of(me)
    assert [view.conversation_id for view in views] == [idle.id, busy.id, quiet.id]
    assert [view.last_seq for view in views] == [0, 3, 1]


def test_unread_counts_only_the_peers_messages_past_the_read_mark(
    history: History,
) -> None:
    pair = Pair.fresh()
    ann, bob = pair.user_a, pair.user_b
    opened = pair.opened()
    sent = [pair.message(sender) for sender in (ann, ann, bob, ann, bob)]
    marks = pair.marks(bob, delivered=4, read=2)
    changes: list[HistoryChange] = [opened, *sent, marks]

    apply(history, changes)

    # Bob read up to 2: of Ann's messages 1, 2 and 4, only 4 is unread.
    views = [*history.conversations_of(bob), *history.conversations_of(ann)]
    by_user = {view.user: view for view in views}
    assert by_user[bob].unread == 1
    assert by_user[ann].unread == 2
    assert (by_user[bob].mine.delivered_up_to, by_user[bob].mine.read_up_to) == (4, 2)
    assert by_user[ann].theirs == by_user[bob].mine
    assert by_user[bob].last_seq == by_user[ann].last_seq == 5


def test_marks_never_move_backwards(history: History) -> None:
    pair = Pair.fresh()
    bob = pair.user_b
    changes = [pair.opened(), *pair.messages(6)]
    changes.append(pair.marks(bob, delivered=5, read=3))

    apply(history, changes)
    apply(history, [pair.marks(bob, delivered=2, read=1)])
    apply(history, [pair.marks(bob, delivered=4)])
    receipts_before_read = history.receipts(pair.id)
    apply(history, [pair.marks(bob, delivered=6, read=6)])

    assert [(r.delivered_up_to, r.read_up_to) for r in receipts_before_read] == [
        (0, 0),
        (5, 3),
    ]
    assert [(r.delivered_up_to, r.read_up_to) for r in history.receipts(pair.id)] == [
        (0, 0),
        (6, 6),
    ]


def test_pages_newest_first_and_oldest_first(history: History) -> None:
    pair = Pair.fresh()
    apply(history, [pair.opened(), *pair.messages(7)])

    def seqs(page: HistoryPage) -> tuple[list[int], int | None, bool]:
        return [m.seq for m in page.messages], page.cursor, page.end

    assert seqs(history.page(pair.id, limit=3)) == ([7, 6, 5], 5, False)
    assert seqs(history.page(pair.id, before_seq=5, limit=3)) == ([4, 3, 2], 2, False)
    assert seqs(history.page(pair.id, before_seq=2, limit=3)) == ([1], None, True)
    assert seqs(history.page(pair.id, after_seq=0, limit=3)) == ([1, 2, 3], 3, False)
    assert seqs(history.page(pair.id, after_seq=3, limit=3)) == ([4, 5, 6], 6, False)
    assert seqs(history.page(pair.id, after_seq=6, limit=3)) == ([7], None, True)
    assert seqs(history.page(pair.id, after_seq=2, before_seq=6)) == (
        [3, 4, 5],
        None,
        True,
    )
    assert seqs(history.page(pair.id, limit=7)) == (list(range(7, 0, -1)), None, True)
    assert seqs(history.page(pair.id, after_seq=7)) == ([], None, True)
    assert seqs(history.page(pair.id, before_seq=1)) == ([], None, True)


def test_position_only_moves_forward(history: History) -> None:
    projector = projector_name()
    pair = Pair.fresh()

    before = history.position(projector)
    history.apply([pair.opened()], projector=projector, position=5)
    history.apply([], projector=projector, position=3)

    assert before == 0
    assert history.position(projector) == 5


def test_replaying_changes_in_overlapping_batches_changes_nothing(
    history: History,
) -> None:
    pair = Pair.fresh()
    ann, bob = pair.user_a, pair.user_b
    changes = [pair.opened(), *pair.messages(BUCKET_SIZE + 20)]
    changes += [pair.marks(bob, delivered=900, read=850), pair.marks(ann, delivered=3)]
    changes += [*pair.messages(5), pair.marks(bob, delivered=1025, read=1025)]
    projector = projector_name()
    history.apply(changes, projector=projector, position=len(changes))
    once = snapshot(history, pair, projector)

    # A crash before the offset commit repeats a tail; rebalances repeat more.
    for start, stop in [(0, 40), (20, 600), (500, len(changes)), (0, len(changes))]:
        history.apply(changes[start:stop], projector=projector, position=stop)
    for change in changes[-10:]:
        history.apply([change, change], projector=projector, position=len(changes))

    assert snapshot(history, pair, projector) == once


# Case 4: history paging over several buckets, on both stores.


@pytest.mark.parametrize("count", [0, 1, 49, 50, 51, 100, 12345])
def test_paging_newest_first_returns_exactly_n(history: History, count: int) -> None:
    # Given N messages, beside a neighbour's conversation that must not leak in,
    pair, neighbour = Pair.fresh(), Pair.fresh()
    changes = [pair.opened(), *pair.messages(count)]
    apply(history, [*changes, neighbour.opened(), *neighbour.messages(60)])

    # when they are paged 50 at a time, newest first, following the cursor,
    pages = pages_newest_first(history, pair.id)

    # then each comes exactly once, in strictly decreasing order, and the last
    # page, and only it, says the end.
    assert seqs_of(pages) == list(range(count, 0, -1))
    assert len(pages) == max(1, -(-count // PAGE))
    assert [page.end for page in pages] == [False] * (len(pages) - 1) + [True]
    assert all(len(page.messages) == PAGE for page in pages[:-1])
    assert pages[-1].cursor is None


def test_saved_cursor_resumes_exactly_after_new_messages(history: History) -> None:
    # Given a history spanning two buckets and a cursor saved after one page,
    pair = Pair.fresh()
    apply(history, [pair.opened(), *pair.messages(2 * BUCKET_SIZE - 5)])
    first = history.page(pair.id, limit=PAGE)
    assert first.cursor == 2 * BUCKET_SIZE - 5 - PAGE + 1

    # when 10 new messages arrive, opening a third bucket,
    apply(history, pair.messages(10), position=2)

    # then the saved cursor resumes right below the first page, with no new
    # message and none skipped, and a forward sync finds exactly the 10 new.
    rest = [first]
    while not rest[-1].end:
        assert rest[-1].cursor is not None
        rest.append(history.page(pair.id, before_seq=rest[-1].cursor, limit=PAGE))
    assert seqs_of(rest) == list(range(2 * BUCKET_SIZE - 5, 0, -1))
    newer = history.page(pair.id, after_seq=2 * BUCKET_SIZE - 5, limit=PAGE)
    assert [m.seq for m in newer.messages] == list(
        range(2 * BUCKET_SIZE - 4, 2 * BUCKET_SIZE + 6)
    )
    assert newer.end


# Case 3: a message's status under equal and skewed write timestamps.


def status_of(history: History, pair: Pair, message: MessageStored) -> str:
    """
    The status the sender sees: from the recipient's marks over the message.
    """
    seq = message.message.seq
    found = history.page(pair.id, after_seq=seq - 1, limit=1).messages
    if found != [message.message]:
        return "missing"
    recipient = pair.peer_of(message.message.sender)
    [receipt] = [r for r in history.receipts(pair.id) if r.user == recipient]
    if receipt.read_up_to >= seq:
        return "read"
    return "delivered" if receipt.delivered_up_to >= seq else "sent"


def lifecycle(
    pair: Pair, *, earlier: int = 0
) -> tuple[MessageStored, list[HistoryChange]]:
    """
    A message written as sent, then delivered, then read by the recipient.
    """
    opened, before, sent = (
        pair.opened(),
        pair.messages(earlier),
        pair.message(pair.user_a),
    )
    seq = sent.message.seq
    delivered = pair.marks(pair.user_b, delivered=seq)
    read = pair.marks(pair.user_b, delivered=seq, read=seq)
    return sent, [opened, *before, sent, delivered, read]


@pytest.fixture(scope="module")
def sessions(
    cassandra_server: CassandraServer, cassandra_session: tuple[Any, str]
) -> Iterator[list[Any]]:
    """
    One driver session per projector instance, each with its own connections.
    """
    clusters = [
        build_cluster(Settings(cassandra_port=cassandra_server.port))
        for _ in range(INSTANCES)
    ]
    yield [cluster.connect() for cluster in clusters]
    for cluster in clusters:
        cluster.shutdown()


def test_status_ends_read_with_equal_timestamps_in_any_order(
    cassandra_session: tuple[Any, str],
) -> None:
    session, keyspace = cassandra_session
    history = CassandraHistory(session, keyspace, write_timestamp=REBUILD_TIMESTAMP)
    shuffler = random.Random(3)
    orders, statuses = set(), []

    for _ in range(REPEATS):
        pair = Pair.fresh()
        sent, changes = lifecycle(pair)
        shuffler.shuffle(changes)
        orders.add(tuple(type(change).__name__ for change in changes))
        for change in changes:
            apply(history, [change])
        statuses.append(status_of(history, pair, sent))

    assert len(orders) > 5
    assert statuses == ["read"] * REPEATS


def test_status_ends_read_with_three_projector_instances(
    cassandra_session: tuple[Any, str], sessions: list[Any]
) -> None:
    keyspace = cassandra_session[1]
    instances = [
        CassandraHistory(session, keyspace, write_timestamp=REBUILD_TIMESTAMP)
        for session in sessions
    ]
    shuffler = random.Random(4)
    statuses = []

    with ThreadPoolExecutor(INSTANCES) as pool:
        for _ in range(REPEATS):
            pair = Pair.fresh()
            sent, changes = lifecycle(pair)
            orders = [shuffler.sample(changes, len(changes)) for _ in instances]
            start = threading.Barrier(INSTANCES)
            runs = [
                pool.submit(_apply_each, instance, order, start)
                for instance, order in zip(instances, orders, strict=True)
            ]
            for run in runs:
                run.result()
            statuses.append(status_of(instances[0], pair, sent))

    assert statuses == ["read"] * REPEATS


def _apply_each(
    history: History, changes: list[HistoryChange], start: threading.Barrier
) -> None:
    start.wait()
    for change in changes:
        apply(history, [change])


@pytest.mark.parametrize(
    ("read_at", "late_at"),
    [(REBUILD_TIMESTAMP, LATER_TIMESTAMP), (LATER_TIMESTAMP, REBUILD_TIMESTAMP)],
    ids=["replayed-later", "replayed-earlier"],
)
def test_status_never_moves_backwards_whatever_the_timestamps(
    cassandra_session: tuple[Any, str], read_at: int, late_at: int
) -> None:
    # Given message 3 read under one timestamp,
    session, keyspace = cassandra_session
    pair = Pair.fresh()
    sent, changes = lifecycle(pair, earlier=2)
    CassandraHistory(session, keyspace, write_timestamp=read_at).apply(
        changes, projector=projector_name(), position=len(changes)
    )

    # when its sent and delivered changes come again under another timestamp,
    # with lower marks beside them,
    late = CassandraHistory(session, keyspace, write_timestamp=late_at)
    apply(late, [changes[-3], changes[-2]])
    apply(late, [pair.marks(pair.user_b, delivered=2, read=2)])
    apply(late, [pair.marks(pair.user_b, delivered=1)])

    # then it is still read, and so are the messages before it.
    assert status_of(late, pair, sent) == "read"
    receipt = late.receipts(pair.id)[1]
    assert (receipt.user, receipt.delivered_up_to, receipt.read_up_to) == (
        pair.user_b,
        3,
        3,
    )
