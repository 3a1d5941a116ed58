"""
Schema versions: version 1 ``MessageSent`` events read forever; newer fail.
"""

from __future__ import annotations

import json
import sqlite3
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from commands.service import ChatService
from domain.conversation import Conversation
from infra.audit.verify import Violation
from infra.records import event_mapper
from infra.settings import Settings
from tests.unit.support import all_messages, follower
from tests.unit.test_audit import (
    events_db,
    record_twenty,
    run_audit,
    stored_state,
    write_state,
)

__all__ = ["events_db"]  # A fixture, used by name.


def seed_version_1(db: sqlite3.Connection, ids: list[UUID]) -> None:
    """
    Rewrite the first message of each conversation as version 1 wrote it.
    """
    for conv in ids:
        state = stored_state(db, conv, 2)
        assert state.pop("class_version") == 2
        del state["format"]
        write_state(db, conv, 2, state)


def test_version_1_messages_read_with_the_documented_default() -> None:
    # Given a version 1 MessageSent, as stored before ``format`` existed.
    conversation = Conversation.start("ann", "bob")
    conversation.send_message(sender="ann", client_msg_id="c1", body="hi")
    _, sent = conversation.collect_events()
    mapper = event_mapper()
    stored = mapper.to_stored_event(sent)
    state = json.loads(stored.state)
    del state["class_version"], state["format"]

    # When it is read back.
    old = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=json.dumps(state).encode(),
    )
    event = mapper.to_domain_event(old)

    # Then it is the current class, with format "text".
    assert isinstance(event, Conversation.MessageSent)
    assert (event.body, event.format) == ("hi", "text")


def test_version_1_next_to_version_2_verifies_exports_shows_and_projects(
    chat: ChatService, settings: Settings, events_db: sqlite3.Connection
) -> None:
    # Given twenty conversations whose first messages are version 1 events.
    ids = record_twenty(chat)
    seed_version_1(events_db, ids[:10])

    # When the log is verified, one conversation exported, and one shown.
    verified = run_audit(settings, "verify")
    exported = run_audit(settings, "export", "--conversation", str(ids[0]))
    shown = run_audit(settings, "show", str(ids[0]), "--as-of", "1000")

    # Then all three read version 1 and version 2 alike.
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.splitlines()[-1] == "clean"
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert exported.returncode == 0
    assert [(e["event_type"], e["schema_version"]) for e in lines] == [
        ("Started", 1),
        ("MessageSent", 1),
        ("MessageSent", 2),
        ("MessageSent", 2),
        ("Delivered", 1),
        ("Read", 1),
    ]
    assert lines[1]["fields"]["format"] == "text"
    assert shown.returncode == 0
    assert "      1  " in shown.stdout
    assert "user-00 (text): hello 0" in shown.stdout

    # And the aggregate and the history projector read them too.
    fresh = ChatService(env=settings.event_store_env())
    assert fresh.conversation(ids[0], user="user-00").last_seq == 3
    fresh.close()


def test_projector_reads_version_1_events(
    chat: ChatService, settings: Settings, events_db: sqlite3.Connection
) -> None:
    # Given version 1 events in a fresh store.
    from infra.sqlite import SQLiteHistory

    ids = record_twenty(chat)
    seed_version_1(events_db, ids)
    fresh = ChatService(env=settings.event_store_env())
    history = SQLiteHistory(settings.data_dir / "rebuilt.sqlite")

    # When history is projected from the log.
    follower(fresh, history).catch_up()

    # Then every message is there, the version 1 ones included.
    assert [m.body for m in all_messages(history, ids[0])] == [
        "hello 0",
        "hi 0",
        "bye 0",
    ]
    history.close()
    fresh.close()


def test_an_unknown_version_fails_loudly_and_is_never_skipped(
    chat: ChatService, settings: Settings, events_db: sqlite3.Connection
) -> None:
    # Given a MessageSent written by a newer build, as version 3.
    ids = record_twenty(chat)
    state = stored_state(events_db, ids[5], 3)
    write_state(events_db, ids[5], 3, state | {"class_version": 3})

    # When the log is verified, exported and shown.
    verified = run_audit(settings, "verify")
    exported = run_audit(settings, "export")
    shown = run_audit(settings, "show", str(ids[5]), "--as-of", "1000")

    # Then each fails, naming the conversation and version.
    what = "MessageSent has schema version 3, but this build reads only up to version 2"
    assert verified.returncode == 1
    assert verified.stdout.splitlines() == [
        "conversations 20, events 120, messages 59, receipts 40, repeated records 0",
        str(Violation(str(ids[5]), 3, what)),
        "1 violations",
    ]
    for failed in (exported, shown):
        assert failed.returncode == 1
        assert f"conversation {ids[5]} version 3: {what}" in failed.stderr


def test_a_state_that_does_not_decode_is_named(
    chat: ChatService, settings: Settings, events_db: sqlite3.Connection
) -> None:
    # Given a stored state that is not JSON at all.
    ids = record_twenty(chat)
    write_state(events_db, ids[2], 4, b"{broken")

    # When the log is verified.
    verified = run_audit(settings, "verify")

    # Then that conversation and version are named.
    assert verified.returncode == 1
    assert f"conversation {ids[2]} version 4: stored state of" in verified.stdout


def test_a_rebuild_reads_version_1_events_with_the_documented_default(
    chat: ChatService, settings: Settings, events_db: sqlite3.Connection
) -> None:
    # Given version 1 events beside version 2 ones in the store.
    from infra.catalog import history_file
    from infra.readmodels.embedded import EmbeddedRebuild
    from infra.readmodels.rebuild import run_rebuild
    from infra.sqlite import SQLiteHistory

    ids = record_twenty(chat)
    seed_version_1(events_db, ids)
    fresh = ChatService(env=settings.event_store_env())

    # When history is rebuilt into a new version from the log.
    rebuild = EmbeddedRebuild(settings, fresh, drop_grace_seconds=0)
    try:
        run_rebuild(rebuild, keep_old=True)
    finally:
        rebuild.close()

    # Then the new version holds every message, the version 1 ones included.
    history = SQLiteHistory(history_file(settings.data_dir, rebuild.version))
    assert [m.body for m in all_messages(history, ids[0])] == [
        "hello 0",
        "hi 0",
        "bye 0",
    ]
    history.close()
    fresh.close()
