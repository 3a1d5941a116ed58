"""
``duetto audit show``: one conversation as it stood at a point of the log.

The state is folded from the events alone, up to a position of the log or a
time, without the aggregate or any read model: who takes part, every
message with its seq, sender, body and time, and both people's marks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper

from domain.conversation import Conversation
from infra.audit.decoding import decode
from infra.audit.sources import Logged


@dataclass(frozen=True)
class ShownMessage:
    seq: int
    sender: str
    body: str
    format: str
    sent_at: datetime


@dataclass
class Snapshot:
    """
    A conversation as the log had it at one point.
    """

    conversation_id: UUID
    version: int = 0
    position: int = 0
    participants: tuple[str, ...] = ()
    messages: list[ShownMessage] = field(default_factory=list)
    delivered: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)

    def apply(self, event: Any) -> None:
        if isinstance(event, Conversation.Started):
            self.participants = (event.user_a, event.user_b)
        elif isinstance(event, Conversation.MessageSent):
            self.messages.append(
                ShownMessage(
                    event.seq, event.sender, event.body, event.format, event.timestamp
                )
            )
        elif isinstance(event, Conversation.Delivered):
            self._raise(self.delivered, event.user, event.up_to_seq)
        elif isinstance(event, Conversation.Read):
            self._raise(self.read, event.user, event.up_to_seq)
            self._raise(self.delivered, event.user, event.up_to_seq)

    @staticmethod
    def _raise(marks: dict[str, int], user: str, up_to_seq: int) -> None:
        marks[user] = max(marks.get(user, 0), up_to_seq)


def snapshot(
    records: Iterable[Logged],
    mapper: Mapper[UUID],
    conversation_id: UUID,
    *,
    position: int | None = None,
    moment: datetime | None = None,
) -> Snapshot:
    """
    Fold the conversation's events up to ``position`` or ``moment``.
    """
    state = Snapshot(conversation_id)
    for logged in records:
        record = logged.record
        if record.conversation_id != conversation_id:
            continue
        if position is not None and record.notification_id > position:
            continue
        event: Any = decode(record, mapper)
        if moment is not None and event.timestamp > moment:
            continue
        state.apply(event)
        state.version = max(state.version, record.version)
        state.position = max(state.position, record.notification_id)
    return state


def plain_text(state: Snapshot) -> str:
    """
    The snapshot for a file or a pipe.
    """
    lines = [
        f"conversation {state.conversation_id}",
        f"as of version {state.version}, notification {state.position}",
        f"participants: {', '.join(state.participants) or '(not started)'}",
    ]
    for user in state.participants:
        lines.append(
            f"{user}: delivered up to {state.delivered.get(user, 0)}, "
            f"read up to {state.read.get(user, 0)}"
        )
    lines.append(f"messages: {len(state.messages)}")
    for message in state.messages:
        lines.append(
            f"  {message.seq:>5}  {message.sent_at.isoformat()}  "
            f"{message.sender} ({message.format}): {message.body}"
        )
    return "\n".join(lines)


def print_rich(state: Snapshot) -> None:
    """
    The snapshot as tables, for a terminal.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    console.print(f"[bold]conversation {state.conversation_id}[/bold]")
    console.print(f"as of version {state.version}, notification {state.position}")
    marks = Table("participant", "delivered up to", "read up to")
    for user in state.participants:
        marks.add_row(
            Text(user),
            str(state.delivered.get(user, 0)),
            str(state.read.get(user, 0)),
        )
    console.print(marks)
    messages = Table("seq", "time", "sender", "format", "body")
    for message in state.messages:
        messages.add_row(
            str(message.seq),
            message.sent_at.isoformat(),
            # Text, not markup: a body is shown as written, brackets and all.
            Text(message.sender),
            Text(message.format),
            Text(message.body),
        )
    console.print(messages)
