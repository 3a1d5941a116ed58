"""
The history projector killed and rebalanced under a live log (issue 3, case 2).

A thousand events are recorded at a steady pace while ``duetto relay`` puts
them on the topic and ``duetto project history`` processes consume them. The
projectors go through three rebalances, one of which hands partitions back to
their first owner, and five SIGKILLs at seeded random points, one of them
between a batch's Cassandra write and its offset commit. The history that
results must equal a clean single run over the same records.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from confluent_kafka import Consumer, TopicPartition

from commands.models import MarkDelivered, MarkRead, SendMessage
from commands.service import ChatService
from domain.ids import UserId, conversation_id
from infra.bootstrap import chat_service, history_group
from infra.cassandra.cluster import build_cluster
from infra.cassandra.migrate import drop_keyspace, migrate
from infra.cassandra.store import CassandraHistory
from infra.local.servers import CassandraServer
from infra.records import LogRecord, domain_event, event_mapper
from infra.settings import Settings
from projections.history import MessageStored, changes_for
from projections.ports import LoggedEvent
from projections.runner import HistoryProjector
from tests.integration.conftest import settings_from
from tests.integration.processes import DuettoProcess, wait_until

pytestmark = pytest.mark.integration

SEED = 20250303
CONVERSATIONS = 25
SENDS = 30
DELIVERED_EVERY = 6  # The second user acknowledges delivery every 6th send.
READ_EVERY = 7  # The first user reads up to every 7th send.
EVENTS = 1000  # 25 conversations of 1 start, 30 sends, 5 deliveries, 4 reads.
ROUND_SECONDS = 1.8  # One operation on each conversation per round.
PARTITIONS = frozenset(range(4))
KILLS = 5
CLEAN_BATCH = 100
ASSIGNED = re.compile(r"assigned partitions \[([\d, ]*)\]")
JOIN_TIMEOUT = 60.0  # A dead member holds a rebalance up to its 10 s session.
WINDOW_TIMEOUT = 45.0
FREEZE_SECONDS = 0.5  # Long enough for requests already sent to land.


# The events: what is recorded, and how.


@dataclass(frozen=True)
class Operation:
    """
    One use case on one conversation, as the recorder calls it.
    """

    kind: str  # "send", "deliver" or "read"
    user: UserId
    peer: UserId
    seq: int


def conversation_script(
    rng: random.Random, user_a: UserId, user_b: UserId
) -> list[Operation]:
    """
    Thirty sends by either user, with rising receipts: 39 operations, 40 events.
    """
    operations: list[Operation] = []
    for seq in range(1, SENDS + 1):
        sender = user_a if seq == 1 else rng.choice([user_a, user_b])
        peer = user_b if sender == user_a else user_a
        operations.append(Operation("send", sender, peer, seq))
        if seq % DELIVERED_EVERY == 0:
            operations.append(Operation("deliver", user_b, user_a, seq))
        if seq % READ_EVERY == 0:
            operations.append(Operation("read", user_a, user_b, seq))
    return operations


class Recorder(threading.Thread):
    """
    Records every conversation's script, one operation of each per round.
    """

    def __init__(self, chat: ChatService, scripts: list[list[Operation]]) -> None:
        super().__init__(name="recorder", daemon=True)
        self._chat = chat
        self._scripts = scripts
        self.stopping = threading.Event()
        self.sent: dict[UUID, list[UUID]] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            started = time.monotonic()
            for step in range(max(len(script) for script in self._scripts)):
                if self.stopping.is_set():
                    return
                for script in self._scripts:
                    if step < len(script):
                        self._do(script[step])
                pause = started + (step + 1) * ROUND_SECONDS - time.monotonic()
                time.sleep(max(0.0, pause))
        except BaseException as e:
            self.error = e

    def _do(self, operation: Operation) -> None:
        cid = conversation_id(operation.user, operation.peer)
        if operation.kind == "send":
            command = SendMessage(
                to=operation.peer,
                body=f"message {operation.seq} from {operation.user}",
                client_msg_id=f"client-{operation.seq}",
            )
            sent = self._chat.send_message(command, sender=operation.user)
            assert sent.seq == operation.seq
            self.sent.setdefault(cid, []).append(sent.message_id)
        elif operation.kind == "deliver":
            delivered = MarkDelivered(conversation_id=cid, up_to_seq=operation.seq)
            self._chat.mark_delivered(delivered, user=operation.user)
        else:
            read = MarkRead(conversation_id=cid, up_to_seq=operation.seq)
            self._chat.mark_read(read, user=operation.user)


# The log and the group, seen from outside.


@dataclass
class TopicMirror:
    """
    Every record on the topic by partition and offset, read without a group.
    """

    bootstrap: str
    topic: str
    records: dict[int, list[LogRecord]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"mirror-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        self._consumer.assign(
            [TopicPartition(self.topic, p, 0) for p in sorted(PARTITIONS)]
        )
        self.records = {p: [] for p in PARTITIONS}

    def update(self, timeout: float = 0.0) -> None:
        for message in self._consumer.consume(num_messages=1000, timeout=timeout):
            partition, offset, value = (
                message.partition(),
                message.offset(),
                message.value(),
            )
            if message.error() or partition is None or value is None:
                continue
            # Without transactions a partition's offsets have no gaps.
            assert offset == len(self.records[partition])
            self.records[partition].append(LogRecord.from_json(value))

    def all(self) -> list[LogRecord]:
        return [r for records in self.records.values() for r in records]

    def messages_below(self, committed: dict[int, int]) -> int | None:
        """
        Messages sent in records before the committed offsets; None if unread.
        """
        total = 0
        for partition, offset in committed.items():
            records = self.records[partition]
            if len(records) < offset:
                return None
            total += sum(_is_message(r) for r in records[:offset])
        return total

    def uncommitted(self, committed: dict[int, int]) -> list[LogRecord]:
        return [
            record
            for partition, records in self.records.items()
            for record in records[committed[partition] :]
        ]

    def close(self) -> None:
        self._consumer.close()


def _is_message(record: LogRecord) -> bool:
    return record.event_type.endswith("MessageSent")


class GroupOffsets:
    """
    The history group's committed offsets, read by a consumer that never joins.
    """

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self._topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
            }
        )

    def committed(self) -> dict[int, int]:
        places = [TopicPartition(self._topic, p) for p in sorted(PARTITIONS)]
        found = self._consumer.committed(places, timeout=10)
        return {place.partition: max(place.offset, 0) for place in found}

    def close(self) -> None:
        self._consumer.close()


# The projector processes.


class Fleet:
    """
    The duetto processes of one test, each with its own log file.
    """

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self._env = env
        self._folder = folder
        self.started: list[DuettoProcess] = []

    def start(self, *args: str) -> DuettoProcess:
        log = self._folder / f"{len(self.started):02d}-{'-'.join(args)}.log"
        process = DuettoProcess(list(args), self._env, log)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.process.poll() is None:
                os.kill(process.process.pid, signal.SIGCONT)
                process.stop()


def assignments(process: DuettoProcess) -> list[frozenset[int]]:
    """
    Every assignment a projector logged, in order.
    """
    text = process.log.read_text(errors="replace")
    return [
        frozenset(int(n) for n in match.group(1).split(",") if n.strip())
        for match in ASSIGNED.finditer(text)
    ]


def latest(process: DuettoProcess) -> frozenset[int]:
    found = assignments(process)
    return found[-1] if found else frozenset()


def sigkill(process: DuettoProcess) -> None:
    process.process.kill()
    process.wait(10)


def wait_for_split(members: list[DuettoProcess], what: str) -> None:
    """
    Wait until ``members`` hold all partitions between them, none twice.
    """

    def split() -> bool:
        held = [latest(member) for member in members]
        union = frozenset().union(*held)
        return all(held) and union == PARTITIONS and sum(map(len, held)) == 4

    wait_until(split, timeout=JOIN_TIMEOUT, what=what)


# Killing between the Cassandra write and the offset commit.


@dataclass
class Observer:
    """
    Compares what Cassandra holds with what the group has committed.
    """

    session: Any
    keyspace: str
    mirror: TopicMirror
    offsets: GroupOffsets

    def stored_messages(self) -> int:
        row = self.session.execute(f"SELECT COUNT(*) FROM {self.keyspace}.messages")
        return int(row.one()[0])

    def ahead_of_commit(self, *, wait: float = 0.0) -> bool:
        """
        True when Cassandra holds messages from records not committed yet.
        """
        self.mirror.update(timeout=wait)
        below = self.mirror.messages_below(self.offsets.committed())
        if below is None:
            msg = "the mirror has not read up to the committed offsets"
            raise LookupError(msg)
        return self.stored_messages() > below

    def written_uncommitted(self) -> list[LogRecord]:
        """
        The uncommitted records whose message is already in Cassandra.
        """
        self.mirror.update(timeout=1.0)
        rows = self.session.execute(
            f"SELECT conversation_id, seq FROM {self.keyspace}.messages"
        )
        stored = {(row.conversation_id, int(row.seq)) for row in rows}
        mapper = event_mapper()
        found = []
        for record in self.mirror.uncommitted(self.offsets.committed()):
            for change in changes_for(domain_event(record, mapper)):
                if isinstance(change, MessageStored) and (
                    (change.conversation_id, change.message.seq) in stored
                ):
                    found.append(record)
        return found


def kill_between_write_and_commit(
    projector: DuettoProcess, observer: Observer, rng: random.Random
) -> list[LogRecord]:
    """
    SIGKILL the only projector while its batch is written and not committed.

    Each attempt freezes the process with SIGSTOP, which lets a backlog build
    up so that the next batch is large. Once a frozen check has found history
    and offsets in step, any later surplus in Cassandra is this process's own
    uncommitted batch; as soon as one shows, the process is frozen, the state
    is checked again with every request landed, and only then killed.
    """
    pid = projector.process.pid
    in_step = False
    deadline = time.monotonic() + WINDOW_TIMEOUT
    while time.monotonic() < deadline:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(FREEZE_SECONDS)
        ahead = _surplus(observer, wait=0.5)
        if ahead and in_step:
            sigkill(projector)
            return observer.written_uncommitted()
        in_step = in_step or ahead is False
        time.sleep(rng.uniform(1.0, 2.5))
        os.kill(pid, signal.SIGCONT)
        watch_until = time.monotonic() + 2.0
        while in_step and time.monotonic() < watch_until:
            if _surplus(observer, wait=0.0):
                break
    raise AssertionError("never caught a batch between its write and its commit")


def _surplus(observer: Observer, *, wait: float) -> bool | None:
    """
    Whether Cassandra is ahead of the commits; None while that is unknown.
    """
    try:
        return observer.ahead_of_commit(wait=wait)
    except LookupError:
        return None


def handed_back(owner: list[frozenset[int]], taken: frozenset[int]) -> bool:
    """
    True if ``owner`` held ``taken`` first, lost all of it, then got it back.
    """
    if not taken or not taken <= owner[0]:
        return False
    lost = [n for n, held in enumerate(owner) if not held & taken]
    return any(taken <= held for held in owner[lost[0] :]) if lost else False


# The clean single run, and the comparison.


def project_cleanly(records: list[LogRecord], history: CassandraHistory) -> None:
    """
    One uninterrupted projector over the records, in the event store's order.
    """
    mapper = event_mapper()
    unique = {(r.conversation_id, r.version): r for r in records}
    ordered = sorted(unique.values(), key=lambda r: r.notification_id)
    projector = HistoryProjector(history)
    for start in range(0, len(ordered), CLEAN_BATCH):
        projector.handle(
            [
                LoggedEvent(r.notification_id, domain_event(r, mapper))
                for r in ordered[start : start + CLEAN_BATCH]
            ]
        )


def assert_same_history(
    projected: CassandraHistory,
    clean: CassandraHistory,
    sent: dict[UUID, list[UUID]],
    users: list[UserId],
) -> None:
    for cid, message_ids in sent.items():
        page = projected.page(cid, limit=2 * SENDS)
        assert [m.message_id for m in page.messages] == message_ids[::-1]
        assert [m.seq for m in page.messages] == list(range(SENDS, 0, -1))
        assert page.end
        assert page == clean.page(cid, limit=2 * SENDS)
        assert projected.receipts(cid) == clean.receipts(cid)
    for user in users:
        assert projected.conversations_of(user) == clean.conversations_of(user)


@dataclass
class Keyspaces:
    session: Any
    projected: str
    clean: str


@pytest.fixture
def keyspaces(cassandra_server: CassandraServer) -> Iterator[Keyspaces]:
    unique = uuid.uuid4().hex[:12]
    cluster = build_cluster(Settings(cassandra_port=cassandra_server.port))
    session = cluster.connect()
    spaces = Keyspaces(session, f"duetto_kills_{unique}", f"duetto_clean_{unique}")
    # Migrated before any projector starts, so no two of them race on DDL.
    for keyspace in (spaces.projected, spaces.clean):
        migrate(session, keyspace)
    yield spaces
    for keyspace in (spaces.projected, spaces.clean):
        drop_keyspace(session, keyspace)
    cluster.shutdown()


def rebalance_three_times(
    fleet: Fleet, first: DuettoProcess, rng: random.Random
) -> frozenset[int]:
    """
    A second instance joins, leaves and joins again; return what it first took.

    Its leaving hands those partitions back to ``first``, their first owner.
    A last leave makes ``first`` the only member again.
    """
    second = fleet.start("project", "history")
    wait_for_split([first, second], "the first rebalance")
    taken = latest(second)
    time.sleep(rng.uniform(0.5, 2.0))
    second.stop()
    wait_until(
        lambda: latest(first) == PARTITIONS,
        timeout=JOIN_TIMEOUT,
        what="the partitions to go back to the first projector",
    )
    third = fleet.start("project", "history")
    wait_for_split([first, third], "the third rebalance")
    time.sleep(rng.uniform(0.5, 2.0))
    third.stop()
    wait_until(
        lambda: latest(first) == PARTITIONS,
        timeout=JOIN_TIMEOUT,
        what="the first projector to be alone again",
    )
    return taken


def kill_at_random(fleet: Fleet, rng: random.Random, kills: range) -> list[float]:
    """
    Two members; kill a random one at a random moment, replace it, repeat.

    Returns how long after its group settled each kill landed.
    """
    members = [fleet.start("project", "history") for _ in range(2)]
    wait_for_split(members, "two new projectors to share the partitions")
    delays = []
    for kill in kills:
        victim = rng.choice(members)
        delays.append(rng.uniform(0.0, 2.5))
        time.sleep(delays[-1])
        sigkill(victim)
        members.remove(victim)
        members.append(fleet.start("project", "history"))
        wait_for_split(members, f"a replacement after kill {kill}")
    return delays


def wait_for_every_commit(mirror: TopicMirror, offsets: GroupOffsets) -> None:
    def caught_up() -> bool:
        mirror.update(timeout=0.5)
        ends = {p: len(records) for p, records in mirror.records.items()}
        return sum(ends.values()) == EVENTS and offsets.committed() == ends

    wait_until(caught_up, timeout=60, what="the group to commit every record")


@pytest.fixture
def env(
    scaled_env: dict[str, str],
    cassandra_server: CassandraServer,
    keyspaces: Keyspaces,
) -> dict[str, str]:
    return {
        **scaled_env,
        "DUETTO_CASSANDRA_KEYSPACE": keyspaces.projected,
        "DUETTO_CASSANDRA_PORT": str(cassandra_server.port),
        "DUETTO_REDIS_URL": "redis://127.0.0.1:16390/0",
    }


def test_kills_and_rebalances_leave_history_as_a_clean_run(
    env: dict[str, str], keyspaces: Keyspaces, tmp_path: Path
) -> None:
    # Given a relay, a first projector, and events recorded at a steady pace,
    settings = settings_from(env)
    rng = random.Random(SEED)
    unique = uuid.uuid4().hex[:8]
    pairs = [(f"ann{n}-{unique}", f"bob{n}-{unique}") for n in range(CONVERSATIONS)]
    scripts = [conversation_script(rng, a, b) for a, b in pairs]
    assert sum(len(s) for s in scripts) + CONVERSATIONS == EVENTS
    chat = chat_service(settings)
    fleet = Fleet(env, tmp_path)
    recorder = Recorder(chat, scripts)
    mirror = TopicMirror(settings.kafka_bootstrap, settings.kafka_topic)
    offsets = GroupOffsets(
        settings.kafka_bootstrap, settings.kafka_topic, history_group(settings)
    )
    observer = Observer(keyspaces.session, keyspaces.projected, mirror, offsets)
    began = time.monotonic()
    try:
        fleet.start("relay")
        first = fleet.start("project", "history")
        recorder.start()
        wait_until(
            lambda: latest(first) == PARTITIONS,
            timeout=JOIN_TIMEOUT,
            what="the first projector to own every partition",
        )

        # when three rebalances hand partitions away and back to their owner,
        taken = rebalance_three_times(fleet, first, rng)
        # the first projector is killed between a batch's write and its commit,
        caught = kill_between_write_and_commit(first, observer, rng)
        # and four more kills of random members land at random points.
        delays = kill_at_random(fleet, rng, range(2, KILLS + 1))
        recorder.join(timeout=120)
        assert recorder.error is None
        assert not recorder.is_alive()
        wait_for_every_commit(mirror, offsets)
        records = mirror.all()
        print(
            f"kill 1 left {len(caught)} records written and uncommitted; "
            f"kills 2-5 came {[round(d, 2) for d in delays]} s after a rebalance; "
            f"all committed after {time.monotonic() - began:.1f} s"
        )
    finally:
        recorder.stopping.set()
        fleet.stop_all()
        recorder.join(timeout=30)
        chat.close()
        offsets.close()
        mirror.close()

    # Then the rebalances happened as planned, one handing partitions back,
    owned = assignments(first)
    assert len(owned) - 1 >= 3, owned
    assert handed_back(owned, taken), (owned, taken)
    assert caught, "the kill did not leave written, uncommitted records"

    # and history equals a clean single run over the same records.
    assert len({(r.conversation_id, r.version) for r in records}) == EVENTS
    projected = CassandraHistory(keyspaces.session, keyspaces.projected)
    clean = CassandraHistory(keyspaces.session, keyspaces.clean)
    project_cleanly(records, clean)
    assert observer.stored_messages() == CONVERSATIONS * SENDS
    users = [user for pair in pairs for user in pair]
    assert_same_history(projected, clean, recorder.sent, users)
