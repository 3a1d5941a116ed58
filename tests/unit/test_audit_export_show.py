"""
``duetto audit export`` and ``show``: selections, positions, times, output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from commands.service import ChatService
from infra.audit.show import print_rich, snapshot
from infra.audit.sources import store_records
from infra.records import event_mapper
from infra.settings import Settings
from tests.unit.support import send
from tests.unit.test_audit import record_twenty, run_audit

FIELDS = {
    "event_id",
    "conversation_id",
    "version",
    "notification_id",
    "event_type",
    "schema_version",
    "timestamp",
    "fields",
    "previous_hash",
    "hash",
}


def exported(settings: Settings, *args: str) -> list[dict[str, Any]]:
    result = run_audit(settings, "export", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_export_writes_every_event_with_the_auditor_fields(
    chat: ChatService, settings: Settings, tmp_path: Path
) -> None:
    # Given twenty conversations.
    ids = record_twenty(chat)

    # When everything is exported to a file.
    out = tmp_path / "all.jsonl"
    assert run_audit(settings, "export", "--output", str(out)).returncode == 0

    # Then there is one line per event, with exactly the auditor's fields.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 120
    assert all(set(line) == FIELDS for line in lines)
    assert [line["notification_id"] for line in lines] == list(range(1, 121))
    first_message = lines[1]
    assert first_message["conversation_id"] == str(ids[0])
    assert first_message["fields"] == {
        "sender": "user-00",
        "message_id": first_message["fields"]["message_id"],
        "seq": 1,
        "client_msg_id": "c1",
        "body": "hello 0",
        "format": "text",
    }
    assert first_message["previous_hash"] == lines[0]["hash"]


def test_export_selects_by_user_conversation_position_and_time(
    chat: ChatService, settings: Settings
) -> None:
    # Given twenty conversations, and a user with two of them.
    ids = record_twenty(chat)
    send(chat, sender="user-03", to="user-04", body="psst", client_msg_id="x")
    everything = exported(settings)

    # When selections are exported.
    by_user = exported(settings, "--user", "user-03")
    by_conversation = exported(settings, "--conversation", str(ids[7]))
    by_position = exported(settings, "--from-position", "8", "--to-position", "13")
    since, until = everything[20]["timestamp"], everything[29]["timestamp"]
    by_time = exported(settings, "--since", since, "--until", until)

    # Then each holds exactly the events it selects, hashes as in the whole.
    assert {e["conversation_id"] for e in by_user} == {
        str(ids[3]),
        everything[-1]["conversation_id"],
    }
    assert len(by_user) == 6 + 2
    assert [e["version"] for e in by_conversation] == [1, 2, 3, 4, 5, 6]
    assert by_position == everything[7:13]
    assert by_time == everything[20:30]


def test_show_folds_a_conversation_up_to_a_position_or_a_time(
    chat: ChatService, settings: Settings
) -> None:
    # Given twenty conversations, the first logged at notifications 1-6.
    ids = record_twenty(chat)
    everything = list(store_records(chat.recorder))
    third = everything[2].record.timestamp

    # When the first is shown as of notification 5, and as of its third event.
    at_five = run_audit(settings, "show", str(ids[0]), "--as-of", "5")
    at_time = run_audit(settings, "show", str(ids[0]), "--as-of", third)

    # Then each shows what the log held then.
    assert at_five.returncode == 0, at_five.stderr
    lines = at_five.stdout.splitlines()
    assert lines[:6] == [
        f"conversation {ids[0]}",
        "as of version 5, notification 5",
        "participants: user-00, zpeer-00",
        "user-00: delivered up to 0, read up to 0",
        "zpeer-00: delivered up to 3, read up to 0",
        "messages: 3",
    ]
    assert lines[6].endswith("user-00 (text): hello 0")
    assert lines[7].endswith("zpeer-00 (text): hi 0")
    assert at_time.stdout.splitlines()[1] == "as of version 3, notification 3"
    assert "messages: 2" in at_time.stdout


def test_show_on_a_terminal_prints_tables_and_bodies_as_written(
    chat: ChatService, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a message whose body looks like markup.
    sent = send(
        chat, sender="ann", to="bob", body="[bold]not bold[/bold]", client_msg_id="1"
    )
    state = snapshot(store_records(chat.recorder), event_mapper(), sent.conversation_id)

    # When it is printed as tables.
    print_rich(state)

    # Then both marks and the body, brackets and all, are shown.
    out = capsys.readouterr().out
    assert "read up to" in out
    assert "[bold]not bold[/bold]" in out
