"""
Rebuilding the embedded history into a new version (issue 5, cases 3 and 4).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from commands.service import ChatService
from infra.catalog import SQLiteCatalog, catalog_file, history_file
from infra.follower import LogFollower
from infra.readmodels.embedded import EmbeddedRebuild, live_projector, open_history
from infra.readmodels.rebuild import run_rebuild
from infra.settings import Settings
from infra.sqlite import SQLiteHistory
from projections.fanout import FanOut
from tests.snapshots import record_workload, snapshot
from tests.unit.support import RecordingPublisher, follower

REPO = Path(__file__).resolve().parents[2]


def live_history(settings: Settings, chat: ChatService) -> SQLiteHistory:
    """
    Version 0, projected the way the gateway's follower does it.
    """
    store = SQLiteHistory(history_file(settings.data_dir, 0))
    follower(chat, store).catch_up()
    return store


def rebuilt(settings: Settings, chat: ChatService, **options: Any) -> int:
    rebuild = EmbeddedRebuild(settings, chat, drop_grace_seconds=0, **options)
    try:
        run_rebuild(rebuild, keep_old=True)
    finally:
        rebuild.close()
    return rebuild.version


def test_rebuild_equals_the_live_projection_row_for_row(
    settings: Settings, chat: ChatService
) -> None:
    workload = record_workload(chat, conversations=20, messages=12)
    live = live_history(settings, chat)

    version = rebuilt(settings, chat, batch_size=37)

    new = SQLiteHistory(history_file(settings.data_dir, version))
    assert version == 1
    assert snapshot(new, workload) == snapshot(live, workload)
    assert new.position("history") == chat.recorder.max_notification_id()
    new.close()
    live.close()


def test_the_switch_is_recorded_and_the_old_version_dropped(
    settings: Settings, chat: ChatService
) -> None:
    record_workload(chat, conversations=2, messages=3)
    live_history(settings, chat).close()

    rebuild = EmbeddedRebuild(settings, chat, drop_grace_seconds=0)
    run_rebuild(rebuild)
    rebuild.close()

    catalog = SQLiteCatalog(catalog_file(settings.data_dir))
    entry = catalog.entry("history")
    catalog.close()
    assert (entry.current, entry.building) == (1, None)
    assert not history_file(settings.data_dir, 0).exists()
    assert history_file(settings.data_dir, 1).exists()


def test_a_rebuild_killed_halfway_resumes_and_still_equals_live(
    settings: Settings, chat: ChatService
) -> None:
    workload = record_workload(chat, conversations=40, messages=40)
    live = live_history(settings, chat)
    head = chat.recorder.max_notification_id() or 0
    command = ["projections", "rebuild", "history", "--keep-old"]

    # Given a rebuild killed with SIGKILL part of the way through,
    first = _duetto(settings, [*command, "--batch-size", "50", "--max-rate", "1500"])
    killed_at = _kill_halfway(settings, first, head)

    # when it runs again,
    second = _duetto(settings, command)
    assert second.wait(60) == 0

    # then it went on from where it was killed and equals the live version.
    assert 0 < killed_at < head
    new = SQLiteHistory(history_file(settings.data_dir, 1))
    assert snapshot(new, workload) == snapshot(live, workload)
    new.close()
    live.close()


def test_reads_see_the_whole_old_or_the_whole_new_version_during_a_rebuild(
    settings: Settings, chat: ChatService
) -> None:
    workload = record_workload(chat, conversations=15, messages=20)
    live = live_history(settings, chat)
    expected = snapshot(live, workload)
    reads, writes, catalog = open_history(settings, refresh_seconds=0.02)
    seen: list[tuple[int, bool]] = []
    stop = threading.Event()

    def read_throughout() -> None:
        while not stop.is_set():
            seen.append((reads.version, snapshot(reads, workload) == expected))

    reader = threading.Thread(target=read_throughout)
    reader.start()
    rebuild = EmbeddedRebuild(settings, chat, batch_size=20, drop_grace_seconds=0.2)
    run_rebuild(rebuild, max_rate=2000)
    deadline = time.monotonic() + 10
    while not any(v == 1 for v, _ in seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join()
    rebuild.close()

    assert {version for version, _ in seen} == {0, 1}
    assert all(whole for _, whole in seen), "a read saw a half-built version"
    for closable in (reads, writes, catalog, live):
        closable.close()


def test_the_live_follower_moves_to_the_new_version_without_losing_events(
    settings: Settings, chat: ChatService
) -> None:
    record_workload(chat, conversations=3, messages=5)
    reads, writes, catalog = open_history(settings, refresh_seconds=0)
    live = LogFollower(
        chat,
        live_projector(writes, chat),
        FanOut(reads, RecordingPublisher()),
        batch_size=500,
        poll_seconds=60,
    )
    live.catch_up()
    rebuilt(settings, chat)
    # Recorded after the rebuild's last batch: only the follower projects it.
    workload = record_workload(chat, conversations=4, messages=5)
    live.catch_up()

    clean = SQLiteHistory(settings.data_dir / "clean.sqlite")
    follower(chat, clean).catch_up()
    assert writes.version == 1
    assert snapshot(reads, workload) == snapshot(clean, workload)
    for closable in (reads, writes, catalog, clean):
        closable.close()


def test_status_reports_position_head_lag_and_a_rebuild_in_progress(
    settings: Settings, chat: ChatService
) -> None:
    record_workload(chat, conversations=2, messages=4)
    live_history(settings, chat).close()
    record_workload(chat, conversations=1, messages=2, prefix="late")
    catalog = SQLiteCatalog(catalog_file(settings.data_dir))
    catalog.start_rebuild("history", 1)
    catalog.close()

    result = _duetto(settings, ["projections", "status", "--json"], capture=True)
    out, _ = result.communicate(timeout=60)

    status = json.loads(out)
    head = chat.recorder.max_notification_id() or 0
    assert status["head"] == head
    assert status["readers"] == [
        {
            "name": "history",
            "position": head - 3,
            "head": head,
            "unit": "events",
            "lag": 3,
        }
    ]
    assert status["rebuild"]["version"] == 1
    assert status["rebuild"]["lag"] == head
    assert status["parked"] == []


def _duetto(
    settings: Settings, args: list[str], *, capture: bool = False
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DUETTO_DATA_DIR": str(settings.data_dir)}
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.DEVNULL,
    )


def _kill_halfway(
    settings: Settings, process: subprocess.Popen[bytes], head: int
) -> int:
    path = history_file(settings.data_dir, 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        position = _position(path)
        if position >= head // 3:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            return _position(path)
        time.sleep(0.02)
    process.kill()
    raise AssertionError("the rebuild never got a third of the way")


def _position(path: Path) -> int:
    if not path.exists():
        return 0
    store = SQLiteHistory(path)
    try:
        return store.position("history")
    finally:
        store.close()
