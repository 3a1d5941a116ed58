"""
The event store of record, embedded (SQLite) and scaled (PostgreSQL), with
several writers: what one writer records, every other one respects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.models import MarkRead, SendMessage
from commands.service import ChatService
from infra.bootstrap import chat_service
from infra.settings import Settings
from tests.integration.conftest import settings_from

WRITERS = 2
SENDS_PER_WRITER = 40


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path)
        return
    yield settings_from(request.getfixturevalue("scaled_env"))


def writers(settings: Settings) -> list[ChatService]:
    """
    Services as separate gateways hold them: each with its own cache.
    """
    return [chat_service(settings) for _ in range(WRITERS)]


def test_writers_racing_on_one_conversation_never_lose_or_skip_a_seq(
    store_settings: Settings,
) -> None:
    # Given two writers, as two gateway processes would be.
    services = writers(store_settings)
    failures: list[BaseException] = []

    # When both send to one conversation at once, from several threads each.
    def send_all(service: ChatService, writer: int) -> None:
        try:
            for n in range(SENDS_PER_WRITER):
                command = SendMessage(
                    to="bob", body="hi", client_msg_id=f"{writer}-{n}"
                )
                service.send_message(command, sender="alice")
        except BaseException as error:
            failures.append(error)

    threads = [
        threading.Thread(target=send_all, args=(service, number))
        for number, service in enumerate(services)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then nothing failed, and one conversation holds every seq exactly once.
    assert failures == []
    final = services[0].send_message(
        SendMessage(to="bob", body="last", client_msg_id="last"), sender="alice"
    )
    assert final.seq == WRITERS * SENDS_PER_WRITER + 1
    for service in services:
        service.close()


def test_a_repeat_on_another_writer_returns_the_original(
    store_settings: Settings,
) -> None:
    first, second = writers(store_settings)
    command = SendMessage(to="bob", body="hi", client_msg_id="x1")

    original = first.send_message(command, sender="alice")
    repeat = second.send_message(
        command.model_copy(update={"body": "changed"}), sender="alice"
    )

    assert (repeat.message_id, repeat.seq, repeat.duplicate) == (
        original.message_id,
        original.seq,
        True,
    )
    first.close()
    second.close()


def test_a_mark_written_by_one_writer_bounds_the_other(
    store_settings: Settings,
) -> None:
    first, second = writers(store_settings)
    sent = first.send_message(
        SendMessage(to="bob", body="hi", client_msg_id="m1"), sender="alice"
    )
    first.mark_read(
        MarkRead(conversation_id=sent.conversation_id, up_to_seq=1), user="bob"
    )

    lower = second.mark_read(
        MarkRead(conversation_id=sent.conversation_id, up_to_seq=0), user="bob"
    )

    assert (lower.delivered_up_to, lower.read_up_to) == (1, 1)
    first.close()
    second.close()
