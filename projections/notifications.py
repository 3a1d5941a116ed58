"""
Push notifications for people with no device online: what to push, and when.

A ``MessageSent`` whose recipient is offline opens a pending push, or joins
the one already pending for that conversation while the collapse window is
open. The push falls due a grace period after its latest message; by then the
recipient may have come back and received everything, and nothing is sent.
A payload names the sender and the count; a body only when the operator
allows it.

The decisions here are pure. ``PushDecider`` applies them to batches of the
log through the ``PushOutbox`` port, so the embedded follower and a Kafka
consumer group can both drive it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid5

from domain.conversation import Conversation
from domain.ids import UserId
from projections.ports import HistoryQueries, LoggedEvent

logger = logging.getLogger(__name__)

# Fixed forever: a push's id must come out the same when it is decided again.
PUSH_NAMESPACE = UUID("3c1f6a52-8d0e-4b7a-9f25-6e4d2a1b0c93")


@dataclass(frozen=True)
class PushPolicy:
    """
    How long to wait, how much to collapse, and whether bodies may leave.
    """

    grace_seconds: float
    collapse_seconds: float
    include_body: bool = False


@dataclass(frozen=True)
class UnseenMessage:
    """
    A message sent to someone who had no device online when it was recorded.
    """

    conversation_id: UUID
    recipient: UserId
    sender: UserId
    seq: int
    sent_at: datetime
    body: str


@dataclass(frozen=True)
class PendingPush:
    """
    One push waiting for its due time: a conversation's unseen messages.
    """

    push_id: UUID
    conversation_id: UUID
    recipient: UserId
    sender: UserId
    opened_at: datetime
    due_at: datetime
    seqs: tuple[int, ...]
    body: str | None = None


def push_id_of(conversation_id: UUID, recipient: UserId, first_seq: int) -> UUID:
    """
    The id of the push that a conversation's message ``first_seq`` opens.
    """
    return uuid5(PUSH_NAMESPACE, f"{conversation_id}\x00{recipient}\x00{first_seq}")


def unseen_message(
    event: Conversation.MessageSent, participants: tuple[UserId, UserId]
) -> UnseenMessage:
    """
    The message as its recipient, the participant who did not send it, sees it.
    """
    first, second = participants
    return UnseenMessage(
        conversation_id=event.originator_id,
        recipient=second if event.sender == first else first,
        sender=event.sender,
        seq=event.seq,
        sent_at=event.timestamp,
        body=event.body,
    )


def collapse(
    pending: PendingPush | None, message: UnseenMessage, policy: PushPolicy
) -> PendingPush:
    """
    Join ``message`` to the pending push while its window is open, or open one.
    """
    body = message.body if policy.include_body else None
    due_at = message.sent_at + timedelta(seconds=policy.grace_seconds)
    window = timedelta(seconds=policy.collapse_seconds)
    if pending is None or message.sent_at >= pending.opened_at + window:
        return PendingPush(
            push_id=push_id_of(message.conversation_id, message.recipient, message.seq),
            conversation_id=message.conversation_id,
            recipient=message.recipient,
            sender=message.sender,
            opened_at=message.sent_at,
            due_at=due_at,
            seqs=(message.seq,),
            body=body,
        )
    # Each message moves the due time on, so a burst becomes one push; the
    # window bounds how long a steady stream can keep postponing it.
    return replace(
        pending,
        due_at=max(pending.due_at, due_at),
        seqs=(*pending.seqs, message.seq),
        body=body,
    )


def still_unseen(push: PendingPush, delivered_up_to: int) -> tuple[int, ...]:
    """
    The push's messages that no device of the recipient has received yet.
    """
    return tuple(seq for seq in push.seqs if seq > delivered_up_to)


def payload(push: PendingPush, count: int) -> dict[str, Any]:
    """
    What the push carries: who wrote and how many; the body only if kept.
    """
    fields: dict[str, Any] = {
        "type": "messages",
        "push_id": str(push.push_id),
        "conversation_id": str(push.conversation_id),
        "recipient": push.recipient,
        "sender": push.sender,
        "count": count,
    }
    if push.body is not None:
        fields["body"] = push.body
    return fields


class PushOutbox(Protocol):
    """
    Keeps pending pushes, with the decider's position, durably.
    """

    def pending_push(
        self, conversation_id: UUID, recipient: UserId
    ) -> PendingPush | None:
        """The push still waiting for this conversation and recipient, if any."""
        ...

    def decided(self, conversation_id: UUID, seq: int) -> bool:
        """Whether this message was decided on before."""
        ...

    def record(
        self,
        pushes: Sequence[PendingPush],
        decided: Sequence[tuple[UUID, int]],
        *,
        position: int,
    ) -> None:
        """Save pushes, decided messages and the position in one transaction."""
        ...


IsOnline = Callable[[UserId], bool]


class UnknownConversationError(Exception):
    """
    A message of a conversation whose participants cannot be found yet.
    """


class PushDecider:
    """
    Turns logged events into pending pushes for recipients who are offline.
    """

    def __init__(
        self,
        outbox: PushOutbox,
        queries: HistoryQueries,
        is_online: IsOnline,
        policy: PushPolicy,
    ) -> None:
        self._outbox = outbox
        self._queries = queries
        self._is_online = is_online
        self._policy = policy
        # Participants never change, so one look-up per conversation suffices.
        self._known: dict[UUID, tuple[UserId, UserId]] = {}

    def handle(self, batch: Sequence[LoggedEvent]) -> None:
        """
        Decide on every message of the batch, then save it all at once.
        """
        if not batch:
            return
        pushes: dict[tuple[UUID, UserId], PendingPush] = {}
        decided: list[tuple[UUID, int]] = []
        for logged in batch:
            message = self._unseen(logged.event)
            if message is None:
                continue
            key = (message.conversation_id, message.recipient)
            pending = pushes.get(key) or self._outbox.pending_push(*key)
            pushes[key] = collapse(pending, message, self._policy)
            decided.append((message.conversation_id, message.seq))
            logger.info(
                "push pending %s for %s (conversation %s, seq %s)",
                pushes[key].push_id,
                message.recipient,
                message.conversation_id,
                message.seq,
            )
        self._outbox.record(list(pushes.values()), decided, position=batch[-1].position)

    def _unseen(self, event: object) -> UnseenMessage | None:
        if isinstance(event, Conversation.Started):
            self._known[event.originator_id] = (event.user_a, event.user_b)
            return None
        if not isinstance(event, Conversation.MessageSent):
            return None
        if self._outbox.decided(event.originator_id, event.seq):
            return None
        message = unseen_message(event, self._participants(event.originator_id))
        if self._is_online(message.recipient):
            return None
        return message

    def _participants(self, conversation_id: UUID) -> tuple[UserId, UserId]:
        known = self._known.get(conversation_id)
        if known is None:
            known = self._queries.participants(conversation_id)
            if known is None:
                msg = f"no participants known for {conversation_id}"
                raise UnknownConversationError(msg)
            self._known[conversation_id] = known
        return known
