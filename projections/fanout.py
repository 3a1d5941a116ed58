"""
Fan-out: push each new message and receipt to both participants' devices.

It runs after the history projector has applied the same events, so a client
that is pushed a message finds it in history too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from domain.conversation import Conversation
from domain.ids import UserId
from projections.frames import message_frame, receipt_frame
from projections.history import message_of
from projections.ports import Frame, HistoryQueries, LoggedEvent, Publisher
from projections.views import ReceiptView

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
            frame = self._frame_for(logged.event)
            if frame is None:
                continue
            for user in self._participants(logged.event.originator_id):
                self._publisher.publish(user, frame)

    def _frame_for(self, event: object) -> Frame | None:
        if isinstance(event, Conversation.MessageSent):
            return message_frame(message_of(event))
        if isinstance(event, Conversation.Delivered | Conversation.Read):
            return receipt_frame(self._receipt(event.originator_id, event.user))
        return None

    def _receipt(self, conversation_id: UUID, user: UserId) -> ReceiptView:
        # History already holds this event's marks, or later ones: marks only
        # rise, so sending the newest is never wrong.
        for receipt in self._queries.receipts(conversation_id):
            if receipt.user == user:
                return receipt
        return ReceiptView(conversation_id, user, 0, 0)

    def _participants(self, conversation_id: UUID) -> tuple[UserId, ...]:
        known = self._known.get(conversation_id)
        if known is None:
            known = self._queries.participants(conversation_id)
            if known is None:
                logger.warning("no participants known for %s", conversation_id)
                return ()
            self._known[conversation_id] = known
        return known
