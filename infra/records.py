"""
The log's record format: what the relay writes to Kafka and consumers read.

A record carries everything an auditor needs without the database: ids, the
event's type and schema version, its stored state exactly as recorded, and a
SHA-256 hash chained to the previous event of the same conversation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
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
