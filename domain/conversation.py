"""
The ``Conversation`` aggregate: everything two people say and see, as events.

Each command method checks its invariants, then records one event through a
private ``@event`` method whose body is the state change. The same body runs
again when the aggregate is rebuilt from its events, so it never checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    BodyTooLargeError,
    ConversationNotFoundError,
    EmptyBodyError,
    InvalidBodyError,
    SeqOutOfRangeError,
)
from domain.ids import UserId, check_client_msg_id, conversation_id, ordered_pair

MAX_BODY_BYTES = 4096
# Seqs stay below 2**53 so that every client, JavaScript's included, holds
# them exactly; no conversation comes near it.
MAX_SEQ = 2**53 - 1


def check_body(body: str) -> str:
    """
    Return the body unchanged if it may be sent, or raise saying why not.
    """
    if not body:
        raise EmptyBodyError("the body is empty")
    if "\x00" in body:
        raise InvalidBodyError("the body contains a NUL character")
    try:
        size = len(body.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidBodyError("the body contains an unpaired surrogate") from None
    if size > MAX_BODY_BYTES:
        msg = f"the body is {size} UTF-8 bytes; at most {MAX_BODY_BYTES} are allowed"
        raise BodyTooLargeError(msg)
    return body


@dataclass(frozen=True)
class SentMessage:
    """
    What a sender learns about a message once it is recorded.
    """

    conversation_id: UUID
    message_id: UUID
    seq: int
    sender: UserId
    client_msg_id: str
    sent_at: datetime
    duplicate: bool = False


@dataclass(frozen=True)
class Receipt:
    """
    How far one participant has received and read a conversation.
    """

    conversation_id: UUID
    user: UserId
    delivered_up_to: int
    read_up_to: int


class Conversation(Aggregate):
    """
    A 1-on-1 conversation between two users, addressed by their pair.
    """

    class Started(Aggregate.Created):
        user_a: UserId
        user_b: UserId

    class MessageSent(Aggregate.Event):
        """
        A message recorded with the next seq.

        Version 2 added ``format``; a version 1 event reads as ``"text"``.
        """

        class_version = 2

        sender: UserId
        message_id: UUID
        seq: int
        client_msg_id: str
        body: str
        format: str = "text"

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            # Every message before version 2 was plain text.
            state["format"] = "text"

    class Delivered(Aggregate.Event):
        user: UserId
        up_to_seq: int

    class Read(Aggregate.Event):
        user: UserId
        up_to_seq: int

    @staticmethod
    def create_id(user_a: UserId, user_b: UserId) -> UUID:
        return conversation_id(user_a, user_b)

    @classmethod
    def start(cls, first: UserId, second: UserId) -> Conversation:
        """
        Start the conversation between two distinct, well-formed users.
        """
        user_a, user_b = ordered_pair(first, second)
        return cls(user_a=user_a, user_b=user_b)

    @event(Started)
    def __init__(self, user_a: UserId, user_b: UserId) -> None:
        self.user_a = user_a
        self.user_b = user_b
        self.last_seq = 0
        self.delivered: dict[UserId, int] = {user_a: 0, user_b: 0}
        self.read: dict[UserId, int] = {user_a: 0, user_b: 0}
        # (sender, client_msg_id) -> the message it produced, for idempotent sends.
        self.sent: dict[tuple[UserId, str], tuple[UUID, int, datetime]] = {}

    @property
    def participants(self) -> tuple[UserId, UserId]:
        return (self.user_a, self.user_b)

    def peer_of(self, user: UserId) -> UserId:
        """
        Return the other participant, or raise if ``user`` is not one.
        """
        self.check_participant(user)
        return self.user_b if user == self.user_a else self.user_a

    def check_participant(self, user: UserId) -> None:
        if user not in self.participants:
            raise ConversationNotFoundError("no such conversation")

    # Sending.

    def send_message(
        self, *, sender: UserId, client_msg_id: str, body: str
    ) -> SentMessage:
        """
        Record a message, or return the original if this one was already sent.
        """
        self.check_participant(sender)
        check_client_msg_id(client_msg_id)
        original = self.sent.get((sender, client_msg_id))
        if original is not None:
            return self._sent_message(sender, client_msg_id, duplicate=True)

        check_body(body)
        self._record_message(
            sender=sender,
            message_id=uuid4(),
            seq=self.last_seq + 1,
            client_msg_id=client_msg_id,
            body=body,
            format="text",
        )
        return self._sent_message(sender, client_msg_id, duplicate=False)

    @event(MessageSent)
    def _record_message(
        self,
        sender: UserId,
        message_id: UUID,
        seq: int,
        client_msg_id: str,
        body: str,
        format: str = "text",
        timestamp: datetime | None = None,
    ) -> None:
        # The library passes the event's own time as ``timestamp``; until this
        # body returns, ``modified_on`` still holds the previous event's time.
        assert timestamp is not None
        self.last_seq = seq
        self.sent[(sender, client_msg_id)] = (message_id, seq, timestamp)

    def _sent_message(
        self, sender: UserId, client_msg_id: str, *, duplicate: bool
    ) -> SentMessage:
        message_id, seq, sent_at = self.sent[(sender, client_msg_id)]
        return SentMessage(
            conversation_id=self.id,
            message_id=message_id,
            seq=seq,
            sender=sender,
            client_msg_id=client_msg_id,
            sent_at=sent_at,
            duplicate=duplicate,
        )

    # Receipts: high-water marks that only move forward.

    def mark_delivered(self, *, user: UserId, up_to_seq: int) -> Receipt:
        """
        Raise ``user``'s delivered mark to ``up_to_seq``; a lower one is a no-op.
        """
        self._check_mark(user, up_to_seq)
        if up_to_seq > self.delivered[user]:
            self._record_delivered(user=user, up_to_seq=up_to_seq)
        return self.receipt_of(user)

    @event(Delivered)
    def _record_delivered(self, user: UserId, up_to_seq: int) -> None:
        self.delivered[user] = up_to_seq

    def mark_read(self, *, user: UserId, up_to_seq: int) -> Receipt:
        """
        Raise ``user``'s read mark, and with it the delivered mark.
        """
        self._check_mark(user, up_to_seq)
        if up_to_seq > self.read[user]:
            self._record_read(user=user, up_to_seq=up_to_seq)
        return self.receipt_of(user)

    @event(Read)
    def _record_read(self, user: UserId, up_to_seq: int) -> None:
        # Reading a message implies having received it.
        self.read[user] = up_to_seq
        self.delivered[user] = max(self.delivered[user], up_to_seq)

    def _check_mark(self, user: UserId, up_to_seq: int) -> None:
        self.check_participant(user)
        if not 0 <= up_to_seq <= self.last_seq:
            msg = f"up_to_seq must be between 0 and the last seq, {self.last_seq}"
            raise SeqOutOfRangeError(msg)

    def receipt_of(self, user: UserId) -> Receipt:
        return Receipt(
            conversation_id=self.id,
            user=user,
            delivered_up_to=self.delivered[user],
            read_up_to=self.read[user],
        )
