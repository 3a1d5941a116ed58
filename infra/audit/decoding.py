"""
From a log record to its domain event, refusing loudly what cannot be read.

The library's mapper upcasts older schema versions, but it builds an event
of a *newer* version than this build knows without complaint, with whatever
fields it happens to carry. An auditor must never read such an event as if
it were understood, so it is refused here, naming conversation and version.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper
from eventsourcing.utils import resolve_topic

from infra.records import LogRecord, domain_event


class AuditError(Exception):
    """
    The log cannot be audited as it is; the message says where and why.
    """


class UndecodableEventError(AuditError):
    """
    A record's stored state does not decode into a known event.
    """

    def __init__(self, conversation_id: UUID, version: int, reason: str) -> None:
        self.conversation_id = conversation_id
        self.version = version
        self.reason = reason
        super().__init__(f"conversation {conversation_id} version {version}: {reason}")


def decode(record: LogRecord, mapper: Mapper[UUID]) -> DomainEventProtocol[UUID]:
    """
    The record's domain event, upcast to the current schema version.
    """
    stored = _stored_version(record)
    known = _known_version(record)
    if stored > known:
        reason = (
            f"{record.event_type} has schema version {stored}, "
            f"but this build reads only up to version {known}"
        )
        raise UndecodableEventError(record.conversation_id, record.version, reason)
    try:
        return domain_event(record, mapper)
    except Exception as e:
        reason = f"stored state of {record.event_type} does not decode: {e}"
        raise UndecodableEventError(
            record.conversation_id, record.version, reason
        ) from e


def _stored_version(record: LogRecord) -> int:
    try:
        return record.schema_version
    except (ValueError, AttributeError) as e:
        reason = f"stored state of {record.event_type} is not a JSON object: {e}"
        raise UndecodableEventError(
            record.conversation_id, record.version, reason
        ) from e


def _known_version(record: LogRecord) -> int:
    try:
        cls = resolve_topic(record.topic)
    except Exception as e:
        reason = f"no event type {record.topic!r} in this build"
        raise UndecodableEventError(
            record.conversation_id, record.version, reason
        ) from e
    version: int = getattr(cls, "class_version", 1)
    return version


def event_fields(event: DomainEventProtocol[UUID]) -> dict[str, Any]:
    """
    The event's own fields, without the ids and time every event carries.
    """
    common = {"originator_id", "originator_version", "timestamp", "originator_topic"}
    return {k: v for k, v in vars(event).items() if k not in common}


def jsonable(value: Any) -> Any:
    """
    A decoded field as JSON: ids and times as strings, the rest as they are.
    """
    if isinstance(value, UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    json.dumps(value)  # Anything else must already be JSON, or fail here.
    return value
