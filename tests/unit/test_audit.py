"""
``duetto audit verify`` on the embedded event store: clean logs and tampering.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from commands.service import ChatService
from domain.conversation import Conversation
from domain.ids import conversation_id
from infra.audit.export import Selection, export_lines
from infra.audit.references import ExportReference
from infra.audit.sources import Logged, store_records
from infra.audit.verify import Counts, Violation, audit
from infra.records import GENESIS_HASH, LogRecord, chain_hash, event_mapper
from infra.settings import Settings
from tests.unit.support import delivered, read, send

REPO = Path(__file__).resolve().parents[2]
TWENTY_COUNTS = Counts(conversations=20, events=120, messages=60, receipts=40)


def record_twenty(chat: ChatService) -> list[UUID]:
    """
    Twenty conversations of six events: started, three messages, two receipts.
    """
    ids = []
    for n in range(20):
        user, peer = f"user-{n:02d}", f"zpeer-{n:02d}"
        send(chat, sender=user, to=peer, body=f"hello {n}", client_msg_id="c1")
        send(chat, sender=peer, to=user, body=f"hi {n}", client_msg_id="c2")
        sent = send(chat, sender=user, to=peer, body=f"bye {n}", client_msg_id="c3")
        delivered(chat, user=peer, conversation_id=sent.conversation_id, up_to_seq=3)
        read(chat, user=peer, conversation_id=sent.conversation_id, up_to_seq=2)
        ids.append(conversation_id(user, peer))
    return ids


def run_audit(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """
    ``duetto audit ARGS`` as a child process on the embedded profile.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUETTO_")}
    env |= {"DUETTO_PROFILE": "embedded", "DUETTO_DATA_DIR": str(settings.data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "audit", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def events_db(settings: Settings) -> Iterator[sqlite3.Connection]:
    """
    The event store's own SQLite file, opened to tamper with it.
    """
    db = sqlite3.connect(settings.data_dir / "events.sqlite")
    yield db
    db.close()


def stored_state(db: sqlite3.Connection, conv: UUID, version: int) -> dict[str, Any]:
    row = db.execute(
        "SELECT state FROM stored_events"
        " WHERE originator_id = ? AND originator_version = ?",
        (conv.hex, version),
    ).fetchone()
    state: dict[str, Any] = json.loads(row[0])
    return state


def write_state(
    db: sqlite3.Connection, conv: UUID, version: int, state: dict[str, Any] | bytes
) -> None:
    """
    Overwrite one stored event's state in place, as an intruder would.
    """
    raw = state if isinstance(state, bytes) else json.dumps(state).encode()
    db.execute(
        "UPDATE stored_events SET state = ?"
        " WHERE originator_id = ? AND originator_version = ?",
        (raw, conv.hex, version),
    )
    db.commit()


def audited(chat: ChatService) -> tuple[Counts, list[Violation]]:
    return audit(store_records(chat.recorder), event_mapper())


def test_twenty_conversations_verify_clean_with_exact_counts(
    chat: ChatService,
) -> None:
    # Given twenty conversations with messages and receipts.
    record_twenty(chat)

    # When the store's log is verified.
    counts, violations = audited(chat)

    # Then nothing is wrong, and every event is counted once.
    assert violations == []
    assert counts == TWENTY_COUNTS


def test_verify_command_prints_counts_and_exits_zero(
    chat: ChatService, settings: Settings
) -> None:
    # Given twenty conversations.
    record_twenty(chat)

    # When `duetto audit verify` runs with its output redirected.
    result = run_audit(settings, "verify")

    # Then it prints the counts, says clean, and reports progress as plain lines.
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "conversations 20, events 120, messages 60, receipts 40, repeated records 0",
        "clean",
    ]
    assert "verify store: 120 of 120 records read, done" in result.stderr


def test_tampering_is_named_by_conversation_and_version(
    chat: ChatService,
    settings: Settings,
    events_db: sqlite3.Connection,
    tmp_path: Path,
) -> None:
    # Given twenty conversations, and an export of their hashes kept aside.
    ids = record_twenty(chat)
    kept = tmp_path / "kept.jsonl"
    lines = export_lines(store_records(chat.recorder), event_mapper(), Selection())
    kept.write_text("".join(line + "\n" for line in lines))

    # When one body is changed in place, one message removed, one duplicated.
    altered, removed, duplicated = ids[3], ids[7], ids[11]
    state = stored_state(events_db, altered, 3)
    write_state(events_db, altered, 3, state | {"body": "I never said that"})
    events_db.execute(
        "DELETE FROM stored_events WHERE originator_id = ? AND originator_version = 3",
        (removed.hex,),
    )
    events_db.execute(
        "INSERT INTO stored_events (originator_id, originator_version, topic, state)"
        " SELECT originator_id, 7, topic, state FROM stored_events"
        " WHERE originator_id = ? AND originator_version = 2",
        (duplicated.hex,),
    )
    events_db.commit()

    # Then verify names each of the three by conversation and version.
    result = run_audit(settings, "verify", "--against", str(kept))
    assert result.returncode == 1
    message_id = stored_state(events_db, duplicated, 2)["message_id"]["_data_"]
    expected = sorted(
        [
            Violation(
                str(altered), 3, "differs from the export: its content was changed"
            ),
            Violation(str(removed), 3, "in the export but missing here"),
            Violation(str(removed), 4, "version 3 missing before it"),
            Violation(
                str(duplicated),
                7,
                f"duplicate of the message at version 2 (message id {UUID(message_id)})"
                " under a different event id",
            ),
            Violation(str(duplicated), 7, "not in the export"),
        ]
    )
    assert result.stdout.splitlines() == [
        "conversations 20, events 120, messages 60, receipts 40, repeated records 0",
        *(str(violation) for violation in expected),
        "5 violations",
    ]


def test_a_change_in_place_shows_only_against_hashes_kept_elsewhere(
    chat: ChatService, events_db: sqlite3.Connection
) -> None:
    # Given a body changed in place in the store, and nothing kept aside.
    ids = record_twenty(chat)
    state = stored_state(events_db, ids[0], 2)
    write_state(events_db, ids[0], 2, state | {"body": "rewritten"})

    # When the store alone is verified.
    _, violations = audited(chat)

    # Then it cannot tell: the chain is recomputed from what is stored.
    assert violations == []


def chained(events: Sequence[Any]) -> Iterator[Logged]:
    """
    Domain events as the store would log them, hashes chained.
    """
    mapper = event_mapper()
    previous = GENESIS_HASH
    for position, event in enumerate(events, start=1):
        stored = mapper.to_stored_event(event)
        state = stored.state.decode()
        record = LogRecord(
            conversation_id=event.originator_id,
            version=event.originator_version,
            notification_id=position,
            topic=stored.topic,
            state=state,
            previous_hash=previous,
            hash=chain_hash(previous, stored.topic, state),
        )
        previous = record.hash
        yield Logged(record, record.event_id, f"notification {position}")


def test_marks_that_move_back_or_pass_the_last_seq_are_named() -> None:
    # Given a conversation whose receipts were recorded without their checks.
    conversation = Conversation.start("ann", "bob")
    for n in range(3):
        conversation.send_message(sender="ann", client_msg_id=f"c{n}", body="hi")
    conversation.mark_delivered(user="bob", up_to_seq=3)
    conversation._record_delivered(user="bob", up_to_seq=1)
    conversation._record_read(user="bob", up_to_seq=9)
    conversation._record_delivered(user="zed", up_to_seq=1)

    # When its log is verified.
    counts, violations = audit(chained(conversation.collect_events()), event_mapper())

    # Then each bad receipt is named by its version.
    where = str(conversation.id)
    assert violations == [
        Violation(where, 6, "delivered mark moves back from 3 to 1"),
        Violation(where, 7, "read mark 9 is past the last seq, 3"),
        Violation(where, 8, "user zed is not a participant"),
    ]
    assert counts == Counts(conversations=1, events=8, messages=3, receipts=4)


def test_a_repeated_record_is_counted_apart_and_a_changed_one_is_named() -> None:
    # Given a log in which the relay repeated a tail, once identically.
    conversation = Conversation.start("ann", "bob")
    conversation.send_message(sender="ann", client_msg_id="c1", body="hi")
    first, second = chained(conversation.collect_events())
    changed = LogRecord(**{**vars(second.record), "state": "{}"})
    log = [first, second, second, Logged(changed, second.event_id, "again")]

    # When it is verified.
    counts, violations = audit(log, event_mapper())

    # Then the same record again is a repeat; a changed one is a violation.
    assert counts.repeats == 1
    assert violations == [
        Violation(str(conversation.id), 2, "appears again with different content")
    ]


def test_export_reference_reads_back_an_export(
    chat: ChatService, tmp_path: Path
) -> None:
    # Given an export of twenty conversations.
    ids = record_twenty(chat)
    kept = tmp_path / "kept.jsonl"
    lines = export_lines(store_records(chat.recorder), event_mapper(), Selection())
    kept.write_text("\n".join(lines))

    # When it is read as a reference.
    reference = ExportReference(kept)

    # Then it holds every conversation's six hashes.
    heads = reference.heads()
    assert set(heads) == set(ids)
    assert all(version == 6 for version, _ in heads.values())
    assert sorted(reference.hashes(ids[0])) == [1, 2, 3, 4, 5, 6]
