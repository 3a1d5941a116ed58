"""
A recorded chat workload and a full snapshot of what history answers about it.

Two history versions are equal "row for row" when their snapshots are equal:
every conversation's whole history, paged, its participants and receipts, and
every user's conversation list with unread counts and marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from commands.models import MarkDelivered, MarkRead, SendMessage
from commands.service import ChatService
from domain.ids import UserId, conversation_id
from projections.ports import HistoryQueries

PAGE = 7  # Small pages, so paging across pages is part of the comparison.


@dataclass(frozen=True)
class Workload:
    """
    What was recorded: the conversations and the users taking part.
    """

    conversations: list[UUID]
    users: list[UserId]


def record_workload(
    chat: ChatService, *, conversations: int, messages: int, prefix: str = "u"
) -> Workload:
    """
    Conversations between pairs of users, with messages both ways and receipts.
    """
    cids, users = [], []
    for n in range(conversations):
        first, second = f"{prefix}{n}a", f"{prefix}{n}b"
        users += [first, second]
        cids.append(conversation_id(first, second))
        for seq in range(1, messages + 1):
            sender, peer = (first, second) if seq % 3 else (second, first)
            body = f"message {seq} of {n}"
            chat.send_message(
                SendMessage(to=peer, body=body, client_msg_id=f"c{seq}"), sender=sender
            )
            if seq % 4 == 0:
                mark = MarkDelivered(conversation_id=cids[-1], up_to_seq=seq)
                chat.mark_delivered(mark, user=second)
            if seq % 5 == 0:
                chat.mark_read(
                    MarkRead(conversation_id=cids[-1], up_to_seq=seq - 1), user=first
                )
    return Workload(cids, users)


def snapshot(history: HistoryQueries, workload: Workload) -> dict[str, Any]:
    """
    Everything history answers about the workload, in comparable form.
    """
    return {
        "messages": {cid: _all_pages(history, cid) for cid in workload.conversations},
        "participants": {
            cid: history.participants(cid) for cid in workload.conversations
        },
        "receipts": {cid: history.receipts(cid) for cid in workload.conversations},
        "lists": {user: history.conversations_of(user) for user in workload.users},
    }


def _all_pages(history: HistoryQueries, cid: UUID) -> list[Any]:
    pages = [history.page(cid, limit=PAGE)]
    while not pages[-1].end:
        pages.append(history.page(cid, before_seq=pages[-1].cursor, limit=PAGE))
    return pages
