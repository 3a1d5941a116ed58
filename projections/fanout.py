"""
Fan-out: push each new message and receipt to both participants' devices.

Everything a frame needs comes from the event itself, or from history when
the event alone cannot tell (who the participants of an older conversation
are, the other mark of a receipt). Marks only rise, so merging the event's
mark with whatever history holds, older or newer, is never wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from domain.conversation import Conversation, Receipt
from domain.ids import UserId
from projections.frames import message_frame, receipt_frame
from projections.history import message_of
from projections.ports import Frame, HistoryQueries, LoggedEvent, Publisher

logger = logging.getLogger(__name__)


class FanOut:
    """
    Turns logged events into frames for the two participants of each.
    """

    def __init__(self, queries: HistoryQueries, publisher: Publisher) -> None:
        self._queries = queries
        self._publisher = publisher
        # Participants never change, so one look-up per conversation suffices.
        self._known: dict[UUID, tuple[UserId, UserId]] = {}

    def handle(self, batch: Sequence[LoggedEvent]) -> None:
        for logged in batch:
            event = logged.event
            if isinstance(event, Conversation.Started):
                self._known[event.originator_id] = (event.user_a, event.user_b)
                continue
            frame = self._frame_for(event)
            if frame is None:
                continue
            for user in self._participants(event.originator_id):
                self._publisher.publish(user, frame)

    def _frame_for(self, event: object) -> Frame | None:
        if isinstance(event, Conversation.MessageSent):
            return message_frame(message_of(event))
        if isinstance(event, Conversation.Delivered):
            receipt = self._merged(event.originator_id, event.user, event.up_to_seq, 0)
            return receipt_frame(receipt)
        if isinstance(event, Conversation.Read):
            up_to = event.up_to_seq
            return receipt_frame(
                self._merged(event.originator_id, event.user, up_to, up_to)
            )
        return None

    def _merged(
        self, conversation_id: UUID, user: UserId, delivered: int, read: int
    ) -> Receipt:
        for known in self._queries.receipts(conversation_id):
            if known.user == user:
                delivered = max(delivered, known.delivered_up_to)
                read = max(read, known.read_up_to)
        return Receipt(conversation_id, user, delivered, read)

    def _participants(self, conversation_id: UUID) -> tuple[UserId, ...]:
        known = self._known.get(conversation_id)
        if known is None:
            known = self._queries.participants(conversation_id)
            if known is None:
                logger.warning("no participants known for %s", conversation_id)
                return ()
            self._known[conversation_id] = known
        return known
