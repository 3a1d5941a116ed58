"""
``ChatService``: each use case loads a conversation, decides, and saves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.utils import Environment, EnvType

from commands.models import MarkDelivered, MarkRead, SendMessage
from commands.retry import retry_on_conflict
from domain.conversation import Conversation, Receipt, SentMessage
from domain.errors import ChatError, ConversationNotFoundError
from domain.ids import UserId, check_user_id, conversation_id

SavedListener = Callable[[], None]
Result = TypeVar("Result")

LOCK_STRIPES = 256


class ChatService(Application[UUID]):
    """
    The application service of the write side, over the event store of record.

    Within one process, the use cases of one conversation take turns (a
    striped lock around load, decide and save), so they can work on the
    cached aggregate itself instead of a copy of it. Writers in other
    processes are caught by the event store's optimistic concurrency, and
    ``retry_on_conflict`` decides again on the events that won.
    """

    name = "duetto"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env=env)
        self._listeners: list[SavedListener] = []
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]

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
        if command.conversation_id is not None:
            address = command.conversation_id
        else:
            assert command.to is not None  # SendMessage checks one address is given.
            address = conversation_id(sender, check_user_id(command.to))

        def decide(conversation: Conversation) -> SentMessage:
            return conversation.send_message(
                sender=sender,
                client_msg_id=command.client_msg_id,
                body=command.body,
            )

        peer = command.to if command.conversation_id is None else None
        return self._run(address, decide, user=sender, start_with=peer)

    def mark_delivered(self, command: MarkDelivered, *, user: UserId) -> Receipt:
        """
        Raise ``user``'s delivered mark in the conversation.
        """

        def decide(conversation: Conversation) -> Receipt:
            return conversation.mark_delivered(user=user, up_to_seq=command.up_to_seq)

        return self._run(command.conversation_id, decide, user=user)

    def mark_read(self, command: MarkRead, *, user: UserId) -> Receipt:
        """
        Raise ``user``'s read mark, and with it the delivered mark.
        """

        def decide(conversation: Conversation) -> Receipt:
            return conversation.mark_read(user=user, up_to_seq=command.up_to_seq)

        return self._run(command.conversation_id, decide, user=user)

    def conversation(self, conversation_id: UUID, *, user: UserId) -> Conversation:
        """
        Load a conversation that ``user`` takes part in; any other is not found.
        """
        with self._turn(conversation_id):
            return self._load(conversation_id, user=user, start_with=None)

    def _run(
        self,
        conversation_id: UUID,
        decide: Callable[[Conversation], Result],
        *,
        user: UserId,
        start_with: UserId | None = None,
    ) -> Result:
        def attempt() -> Result:
            with self._turn(conversation_id), self._evicting(conversation_id):
                conversation = self._load(
                    conversation_id, user=user, start_with=start_with
                )
                result = decide(conversation)
                self._save(conversation)
                return result

        return retry_on_conflict(attempt, what=f"{user} on {conversation_id}")

    def _load(
        self, conversation_id: UUID, *, user: UserId, start_with: UserId | None
    ) -> Conversation:
        try:
            conversation: Conversation = self.repository.get(conversation_id)
        except AggregateNotFoundError:
            if start_with is None:
                raise ConversationNotFoundError("no such conversation") from None
            return Conversation.start(user, start_with)
        conversation.check_participant(user)
        return conversation

    @contextmanager
    def _turn(self, conversation_id: UUID) -> Iterator[None]:
        with self._stripes[conversation_id.int % LOCK_STRIPES]:
            yield

    @contextmanager
    def _evicting(self, conversation_id: UUID) -> Iterator[None]:
        """
        Forget the cached aggregate when a use case fails after it may have
        changed it; the model raises its own errors before changing anything.
        """
        try:
            yield
        except ChatError:
            raise
        except BaseException:
            if self.repository.cache is not None:
                with suppress(KeyError):
                    self.repository.cache.get(conversation_id, evict=True)
            raise

    def _save(self, conversation: Conversation) -> None:
        if not conversation.pending_events:
            return
        self.save(conversation)
        for listener in self._listeners:
            listener()
