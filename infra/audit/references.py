"""
Accounts of the log to compare an audit with: the event store, or an export.

The event store is the reference of the Kafka topic. An earlier export is
the reference of the event store itself: whoever can rewrite a stored event
can recompute every hash after it, so a change in place shows only against
hashes kept somewhere else.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder

from infra.audit.sources import store_records
from infra.records import GENESIS_HASH, chain_hash


class StoreReference:
    """
    The event store's events, chained as the relay chains them.
    """

    name = "event store"

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self._recorder = recorder

    def heads(self) -> dict[UUID, tuple[int, str]]:
        heads: dict[UUID, tuple[int, str]] = {}
        for logged in store_records(self._recorder):
            record = logged.record
            heads[record.conversation_id] = (record.version, record.hash)
        return heads

    def hashes(self, conversation_id: UUID) -> dict[int, str]:
        hashes: dict[int, str] = {}
        current = GENESIS_HASH
        for stored in self._recorder.select_events(conversation_id):
            current = chain_hash(current, stored.topic, stored.state.decode("utf-8"))
            hashes[stored.originator_version] = current
        return hashes


class ExportReference:
    """
    The hashes of an earlier ``duetto audit export``, kept by the auditor.
    """

    name = "export"

    def __init__(self, path: Path) -> None:
        self._hashes: dict[UUID, dict[int, str]] = {}
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    self._add(json.loads(line))

    def _add(self, fields: dict[str, object]) -> None:
        conversation_id = UUID(str(fields["conversation_id"]))
        version = int(str(fields["version"]))
        self._hashes.setdefault(conversation_id, {})[version] = str(fields["hash"])

    def heads(self) -> dict[UUID, tuple[int, str]]:
        heads = {}
        for conversation_id, hashes in self._hashes.items():
            last = max(hashes)
            heads[conversation_id] = (last, hashes[last])
        return heads

    def hashes(self, conversation_id: UUID) -> dict[int, str]:
        return dict(self._hashes.get(conversation_id, {}))
