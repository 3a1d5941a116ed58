"""
``duetto audit export``: the log as JSON lines, one event a line.

Each line holds what the log recorded and nothing derived from it: the ids,
the position, the type and the schema version it was written with, its time,
its own fields (decoded, and upcast so that older versions read with their
documented defaults), and the two hashes of the chain.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper

from domain.conversation import Conversation
from infra.audit.decoding import decode, event_fields, jsonable
from infra.audit.sources import Logged


def parse_time(text: str) -> datetime:
    """
    An ISO 8601 time; one without a zone is taken to be UTC.
    """
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Selection:
    """
    Which events to export; every bound given must hold.
    """

    conversation_id: UUID | None = None
    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    from_position: int | None = None
    to_position: int | None = None

    def by_position(self, position: int) -> bool:
        after_start = self.from_position is None or position >= self.from_position
        before_end = self.to_position is None or position <= self.to_position
        return after_start and before_end

    def by_time(self, moment: datetime) -> bool:
        after_start = self.since is None or moment >= self.since
        before_end = self.until is None or moment <= self.until
        return after_start and before_end


def export_line(logged: Logged, event: Any) -> str:
    """
    One event as a JSON object on one line.
    """
    record = logged.record
    fields = {k: jsonable(v) for k, v in event_fields(event).items()}
    return json.dumps(
        {
            "event_id": str(logged.event_id),
            "conversation_id": str(record.conversation_id),
            "version": record.version,
            "notification_id": record.notification_id,
            "event_type": record.event_type,
            "schema_version": record.schema_version,
            "timestamp": record.timestamp,
            "fields": fields,
            "previous_hash": record.previous_hash,
            "hash": record.hash,
        },
        ensure_ascii=False,
    )


def export_lines(
    records: Iterable[Logged], mapper: Mapper[UUID], selection: Selection
) -> Iterator[str]:
    """
    The selected events as lines; an event that does not decode stops it.
    """
    participants: dict[UUID, frozenset[str]] = {}
    for logged in records:
        record = logged.record
        if selection.conversation_id not in (None, record.conversation_id):
            continue
        event = decode(record, mapper)
        if isinstance(event, Conversation.Started):
            participants[record.conversation_id] = frozenset(
                (event.user_a, event.user_b)
            )
        if _selected(selection, logged, event, participants):
            yield export_line(logged, event)


def _selected(
    selection: Selection,
    logged: Logged,
    event: Any,
    participants: dict[UUID, frozenset[str]],
) -> bool:
    record = logged.record
    if selection.user is not None:
        users = participants.get(record.conversation_id, frozenset())
        if selection.user not in users:
            return False
    timestamp: datetime = event.timestamp
    return selection.by_position(record.notification_id) and selection.by_time(
        timestamp
    )
