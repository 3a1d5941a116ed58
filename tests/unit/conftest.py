"""
Fixtures for the unit tests: the embedded adapters, each in ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.service import ChatService
from infra.settings import Settings
from infra.sqlite import SQLiteHistory
from tests.unit.support import RecordingPublisher


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def chat(settings: Settings) -> Iterator[ChatService]:
    service = ChatService(env=settings.event_store_env())
    yield service
    service.close()


@pytest.fixture
def history(settings: Settings) -> Iterator[SQLiteHistory]:
    store = SQLiteHistory(settings.read_model_path)
    yield store
    store.close()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()
