"""
The relay against real PostgreSQL and Kafka: nothing dropped, repeats exact.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from commands.models import MarkRead, SendMessage
from commands.service import ChatService
from infra.bootstrap import chat_service
from infra.kafka import ensure_topic
from infra.local.servers import KafkaServer
from infra.records import GENESIS_HASH, chain_hash
from infra.settings import Settings
from tests.integration.conftest import settings_from
from tests.integration.processes import (
    DuettoProcess,
    KeyedRecord,
    read_topic,
    wait_until,
)

CONVERSATIONS = 50
OUTAGE_SECONDS = 10.0


def record_500_events(chat: ChatService, *, round_name: str) -> None:
    """
    Fifty conversations of ten events each: started, eight sends, one read.
    """
    for n in range(CONVERSATIONS):
        peer = f"{round_name}-peer-{n}"
        for m in range(8):
            command = SendMessage(to=peer, body=f"m{m}", client_msg_id=f"c{m}")
            sent = chat.send_message(command, sender=f"{round_name}-sender")
        chat.mark_read(
            MarkRead(conversation_id=sent.conversation_id, up_to_seq=8), user=peer
        )


def wait_for_every_event(settings: Settings, *, timeout: float) -> None:
    def relayed() -> int:
        records = read_topic(settings.kafka_bootstrap, settings.kafka_topic)
        return len({(r.record.conversation_id, r.record.version) for r in records})

    wait_until(lambda: relayed() >= 500, timeout=timeout, what="all 500 in Kafka")


def assert_exactly_relayed(records: list[KeyedRecord], expected: int) -> None:
    """
    Every event is there; any repeat is the very same record; chains hold.
    """
    by_place: dict[tuple[str, int], KeyedRecord] = {}
    for keyed in records:
        record = keyed.record
        place = (str(record.conversation_id), record.version)
        first = by_place.setdefault(place, keyed)
        assert (first.key, first.record.event_id, first.record.hash) == (
            keyed.key,
            record.event_id,
            record.hash,
        )
        assert keyed.key == str(record.conversation_id).encode()
    assert len(by_place) == expected

    heads: dict[str, str] = {}
    for (conversation, version), keyed in sorted(by_place.items()):
        previous = (
            heads.get(conversation, GENESIS_HASH) if version > 1 else GENESIS_HASH
        )
        assert keyed.record.previous_hash == previous
        assert keyed.record.hash == chain_hash(
            previous, keyed.record.topic, keyed.record.state
        )
        heads[conversation] = keyed.record.hash


def test_sigterm_right_after_the_last_produce_loses_nothing(
    scaled_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a relay that is busy relaying while 500 events are recorded.
    settings = settings_from(scaled_env)
    chat = chat_service(settings)
    relay = DuettoProcess(["relay"], scaled_env, tmp_path / "relay.log")
    record_500_events(chat, round_name="a")

    # When it is told to stop the moment the last one could have been produced.
    wait_until(
        lambda: len(read_topic(settings.kafka_bootstrap, settings.kafka_topic)) > 0,
        timeout=60,
        what="the relay's first records",
    )
    relay.signal(signal.SIGTERM)
    assert relay.wait(60) == 0
    restarted = DuettoProcess(["relay"], scaled_env, tmp_path / "relay.log")

    # Then after a restart all 500 are in Kafka, and repeats are identical.
    wait_for_every_event(settings, timeout=90)
    restarted.stop()
    assert_exactly_relayed(
        read_topic(settings.kafka_bootstrap, settings.kafka_topic), 500
    )
    chat.close()


def test_kafka_down_during_shutdown_loses_nothing(
    scaled_env: dict[str, str], kafka_server: KafkaServer, tmp_path: Path
) -> None:
    # Given a relay whose topic exists, and Kafka stopped while events arrive.
    settings = settings_from(scaled_env)
    ensure_topic(settings.kafka_bootstrap, settings.kafka_topic, partitions=4)
    chat = chat_service(settings)
    relay = DuettoProcess(["relay"], scaled_env, tmp_path / "relay.log")
    wait_until(
        lambda: "relay starting" in relay.log.read_text(),
        timeout=60,
        what="the relay to start",
    )
    kafka_server.stop()
    down_since = time.monotonic()
    try:
        record_500_events(chat, round_name="b")

        # When the relay is stopped during the 10 s that Kafka is away.
        relay.signal(signal.SIGTERM)
        assert relay.wait(60) == 0
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
    finally:
        kafka_server.restart()

    # Then a restarted relay puts every event in Kafka, none dropped.
    restarted = DuettoProcess(["relay"], scaled_env, tmp_path / "relay.log")
    wait_for_every_event(settings, timeout=120)
    restarted.stop()
    assert_exactly_relayed(
        read_topic(settings.kafka_bootstrap, settings.kafka_topic), 500
    )
    chat.close()
