"""
``duetto projections status``: where each log reader is, against the head.

Embedded: the history projector's position in the current version against
the notification log's head. Scaled: the relay's position against the same
head, then each consumer group's committed offsets against the topic's ends.
Both add the rebuild in progress, if any, and the parked dead letters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from uuid import UUID

from projections.deadletter import DeadLetter


@dataclass(frozen=True)
class ReaderStatus:
    """
    One reader of the log: how far it is, how far the log is, the difference.
    """

    name: str
    position: int
    head: int
    unit: str = "events"

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


@dataclass(frozen=True)
class ParkedStatus:
    """
    One conversation's parked events, and how far behind the head they wait.
    """

    conversation_id: UUID
    events: int
    first_position: int
    first_version: int
    parked_since: datetime
    lag: int
    error: str


@dataclass(frozen=True)
class RebuildStatus:
    projection: str
    version: int
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


@dataclass
class Status:
    """
    Everything ``status`` reports, for a table or for ``--json``.
    """

    profile: str
    head: int
    current_version: int
    readers: list[ReaderStatus] = field(default_factory=list)
    rebuild: RebuildStatus | None = None
    parked: list[ParkedStatus] = field(default_factory=list)


def parked_status(letters: list[DeadLetter], head: int) -> list[ParkedStatus]:
    """
    Group parked letters by conversation; each lags from its first letter.
    """
    by_conversation: dict[UUID, list[DeadLetter]] = {}
    for letter in letters:
        by_conversation.setdefault(letter.conversation_id, []).append(letter)
    return [
        ParkedStatus(
            conversation_id=cid,
            events=len(group),
            first_position=min(letter.position for letter in group),
            first_version=min(letter.version for letter in group),
            parked_since=min(letter.parked_at for letter in group),
            lag=head - min(letter.position for letter in group) + 1,
            error=min(group, key=lambda letter: letter.version).error,
        )
        for cid, group in by_conversation.items()
    ]


def as_json(status: Status) -> str:
    document = asdict(status)
    document["readers"] = [
        {**asdict(reader), "lag": reader.lag} for reader in status.readers
    ]
    if status.rebuild is not None:
        document["rebuild"] = {**asdict(status.rebuild), "lag": status.rebuild.lag}
    return json.dumps(document, default=str, indent=2)


def as_table(status: Status) -> str:
    lines = [
        f"profile {status.profile}, log head {status.head}, "
        f"history version {status.current_version}",
        "",
        f"{'reader':<28} {'position':>12} {'head':>12} {'lag':>10}",
    ]
    for r in status.readers:
        name = f"{r.name} ({r.unit})"
        lines.append(f"{name:<28} {r.position:>12} {r.head:>12} {r.lag:>10}")
    if status.rebuild is not None:
        b = status.rebuild
        name = f"rebuild {b.projection} v{b.version}"
        lines.append(f"{name:<28} {b.position:>12} {b.head:>12} {b.lag:>10}")
    lines.append("")
    if not status.parked:
        lines.append("dead letters: none parked")
        return "\n".join(lines)
    total = sum(p.events for p in status.parked)
    lines.append(f"dead letters: {total} events in {len(status.parked)} conversations")
    for p in status.parked:
        lines.append(
            f"  {p.conversation_id} {p.events} events from version "
            f"{p.first_version} (position {p.first_position}, lag {p.lag}): {p.error}"
        )
    return "\n".join(lines)
