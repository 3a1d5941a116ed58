"""
``ChatService``: each use case loads a conversation, decides, and saves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.utils import Environment, EnvType

from commands.models import MarkDelivered, MarkRead, SendMessage
from commands.retry import retry_on_conflict
from domain.conversation import Conversation, Receipt, SentMessage
from domain.errors import ConversationNotFoundError
from domain.ids import UserId, check_user_id, conversation_id

SavedListener = Callable[[], None]


class ChatService(Application[UUID]):
    """
    The application service of the write side, over the event store of record.
    """

    name = "duetto"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env=env)
        self._listeners: list[SavedListener] = []
        # The library fast-forwards its cached aggregate under a lock but deep-
        # copies it after releasing that lock, so a load racing another load of
        # the same conversation can copy it mid-change. Loads take turns here.
        self._load_lock = threading.Lock()

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # Configuration comes from the settings object alone, never from
        # whatever happens to be in this process's environment.
        return Environment(name, dict(env or {}))

    def on_saved(self, listener: SavedListener) -> None:
        """
        Call ``listener`` after every save, to wake followers of the log.
        """
        self._listeners.append(listener)

    def send_message(self, command: SendMessage, *, sender: UserId) -> SentMessage:
        """
        Record ``sender``'s message, or return the original for a repeated one.
        """

        def attempt() -> SentMessage:
            conversation = self._addressed(command, sender=sender)
            sent = conversation.send_message(
                sender=sender,
                client_msg_id=command.client_msg_id,
                body=command.body,
            )
            self._save(conversation)
            return sent

        return retry_on_conflict(attempt, what=f"send by {sender}")

    def mark_delivered(self, command: MarkDelivered, *, user: UserId) -> Receipt:
        """
        Raise ``user``'s delivered mark in the conversation.
        """

        def attempt() -> Receipt:
            conversation = self.conversation(command.conversation_id, user=user)
            receipt = conversation.mark_delivered(
                user=user, up_to_seq=command.up_to_seq
            )
            self._save(conversation)
            return receipt

        return retry_on_conflict(attempt, what=f"delivered by {user}")

    def mark_read(self, command: MarkRead, *, user: UserId) -> Receipt:
        """
        Raise ``user``'s read mark, and with it the delivered mark.
        """

        def attempt() -> Receipt:
            conversation = self.conversation(command.conversation_id, user=user)
            receipt = conversation.mark_read(user=user, up_to_seq=command.up_to_seq)
            self._save(conversation)
            return receipt

        return retry_on_conflict(attempt, what=f"read by {user}")

    def conversation(self, conversation_id: UUID, *, user: UserId) -> Conversation:
        """
        Load a conversation that ``user`` takes part in; any other is not found.
        """
        try:
            conversation = self._load(conversation_id)
        except AggregateNotFoundError:
            raise ConversationNotFoundError("no such conversation") from None
        conversation.check_participant(user)
        return conversation

    def _addressed(self, command: SendMessage, *, sender: UserId) -> Conversation:
        if command.conversation_id is not None:
            return self.conversation(command.conversation_id, user=sender)
        assert command.to is not None  # SendMessage checks one address is given.
        peer = check_user_id(command.to)
        try:
            existing = self._load(conversation_id(sender, peer))
        except AggregateNotFoundError:
            return Conversation.start(sender, peer)
        return existing

    def _load(self, conversation_id: UUID) -> Conversation:
        with self._load_lock:
            conversation: Conversation = self.repository.get(conversation_id)
        return conversation

    def _save(self, conversation: Conversation) -> None:
        if not conversation.pending_events:
            return
        self.save(conversation)
        for listener in self._listeners:
            listener()
