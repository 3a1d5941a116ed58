"""
The log's record format: what the relay writes to Kafka and consumers read.

A record carries everything an auditor needs without the database: ids, the
event's type and schema version, its stored state exactly as recorded, and a
SHA-256 hash chained to the previous event of the same conversation.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Notification,
    StoredEvent,
    UUIDAsHex,
)

# Fixed forever: event ids derived from it must stay the same on every replay.
EVENT_NAMESPACE = UUID("1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b")
GENESIS_HASH = "0" * 64
CHAIN_CACHE_SIZE = 100_000


def event_id(conversation_id: UUID, version: int) -> UUID:
    """
    The id of a conversation's event at ``version``: the same on every replay.
    """
    return uuid5(EVENT_NAMESPACE, f"{conversation_id}/{version}")


def chain_hash(previous: str, topic: str, state: str) -> str:
    """
    Hash an event's stored form together with the hash of the one before it.
    """
    digest = hashlib.sha256()
    for part in (previous, topic, state):
        digest.update(part.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class LogRecord:
    """
    One event as it travels on the log, keyed by its conversation.
    """

    conversation_id: UUID
    version: int
    notification_id: int
    topic: str
    state: str
    previous_hash: str
    hash: str

    @property
    def event_type(self) -> str:
        return self.topic.rsplit(".", 1)[-1]

    @property
    def event_id(self) -> UUID:
        return event_id(self.conversation_id, self.version)

    @property
    def schema_version(self) -> int:
        version: int = json.loads(self.state).get("class_version", 1)
        return version

    @property
    def timestamp(self) -> str:
        stamp: dict[str, str] = json.loads(self.state)["timestamp"]
        return stamp["_data_"]

    @property
    def key(self) -> bytes:
        return str(self.conversation_id).encode()

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "event_id": str(self.event_id),
                "conversation_id": str(self.conversation_id),
                "version": self.version,
                "notification_id": self.notification_id,
                "event_type": self.event_type,
                "topic": self.topic,
                "schema_version": self.schema_version,
                "timestamp": self.timestamp,
                "state": self.state,
                "previous_hash": self.previous_hash,
                "hash": self.hash,
            },
            ensure_ascii=False,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, value: bytes) -> LogRecord:
        fields: dict[str, Any] = json.loads(value)
        return cls(
            conversation_id=UUID(fields["conversation_id"]),
            version=int(fields["version"]),
            notification_id=int(fields["notification_id"]),
            topic=str(fields["topic"]),
            state=str(fields["state"]),
            previous_hash=str(fields["previous_hash"]),
            hash=str(fields["hash"]),
        )

    def stored_event(self) -> StoredEvent:
        return StoredEvent(
            originator_id=self.conversation_id,
            originator_version=self.version,
            topic=self.topic,
            state=self.state.encode("utf-8"),
        )


def record_of(notification: Notification, previous_hash: str) -> LogRecord:
    state = notification.state.decode("utf-8")
    return LogRecord(
        conversation_id=UUID(str(notification.originator_id)),
        version=notification.originator_version,
        notification_id=notification.id,
        topic=notification.topic,
        state=state,
        previous_hash=previous_hash,
        hash=chain_hash(previous_hash, notification.topic, state),
    )


class ChainHeads:
    """
    The hash of each conversation's latest relayed event, to chain the next.

    A conversation not in the cache has its chain recomputed from the store.
    """

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self._recorder = recorder
        self._heads: OrderedDict[UUID, tuple[int, str]] = OrderedDict()

    def record(self, notification: Notification) -> LogRecord:
        conversation_id = UUID(str(notification.originator_id))
        previous = self._previous_hash(conversation_id, notification.originator_version)
        record = record_of(notification, previous)
        self._remember(conversation_id, record.version, record.hash)
        return record

    def forget(self, conversation_ids: Sequence[UUID]) -> None:
        for conversation_id in conversation_ids:
            self._heads.pop(conversation_id, None)

    def _previous_hash(self, conversation_id: UUID, version: int) -> str:
        if version == 1:
            return GENESIS_HASH
        head = self._heads.get(conversation_id)
        if head is not None and head[0] == version - 1:
            return head[1]
        return self._recompute(conversation_id, up_to=version - 1)

    def _recompute(self, conversation_id: UUID, *, up_to: int) -> str:
        current = GENESIS_HASH
        for stored in self._recorder.select_events(conversation_id, lte=up_to):
            current = chain_hash(current, stored.topic, stored.state.decode("utf-8"))
        return current

    def _remember(self, conversation_id: UUID, version: int, digest: str) -> None:
        self._heads[conversation_id] = (version, digest)
        self._heads.move_to_end(conversation_id)
        if len(self._heads) > CHAIN_CACHE_SIZE:
            self._heads.popitem(last=False)


def event_mapper() -> Mapper[UUID]:
    """
    A mapper that decodes stored events the way ``ChatService`` encodes them.
    """
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


def domain_event(record: LogRecord, mapper: Mapper[UUID]) -> DomainEventProtocol[UUID]:
    return mapper.to_domain_event(record.stored_event())
