"""
History paging on the embedded SQLite read model.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from domain.ids import conversation_id
from infra.sqlite import SQLiteHistory
from projections.runner import HistoryProjector
from projections.views import HistoryPage
from tests.unit.support import conversation_events

PAGE = 50
SIZES = [0, 1, 49, 50, 51, 100, 250]


def _history_of(path: Path, messages: int) -> tuple[SQLiteHistory, UUID]:
    # A second conversation beside the paged one proves pages never mix them.
    store = SQLiteHistory(path)
    events = list(conversation_events([("alice", "bob"), ("bob", "carol")], messages))
    HistoryProjector(store).handle(events)
    return store, conversation_id("alice", "bob")


def _pages_newest_first(store: SQLiteHistory, cid: UUID) -> list[HistoryPage]:
    pages = [store.page(cid, limit=PAGE)]
    while not pages[-1].end:
        assert pages[-1].cursor is not None
        pages.append(store.page(cid, before_seq=pages[-1].cursor, limit=PAGE))
        assert len(pages) <= 100, "paging never ended"
    return pages


def _pages_oldest_first(store: SQLiteHistory, cid: UUID) -> list[HistoryPage]:
    pages = [store.page(cid, after_seq=0, limit=PAGE)]
    while not pages[-1].end:
        assert pages[-1].cursor is not None
        pages.append(store.page(cid, after_seq=pages[-1].cursor, limit=PAGE))
        assert len(pages) <= 100, "paging never ended"
    return pages


def _expected_page_count(messages: int) -> int:
    return max(1, -(-messages // PAGE))


@pytest.mark.parametrize("messages", SIZES)
def test_newest_first_paging_returns_every_message_once(
    tmp_path: Path, messages: int
) -> None:
    # Given a conversation of N messages,
    store, cid = _history_of(tmp_path / "history.sqlite", messages)
    try:
        # when it is paged 50 at a time, newest first, following the cursor,
        pages = _pages_newest_first(store, cid)

        # then every seq comes exactly once, strictly decreasing,
        seqs = [m.seq for page in pages for m in page.messages]
        assert seqs == list(range(messages, 0, -1))
        assert all(m.conversation_id == cid for p in pages for m in p.messages)

        # and only the last page says the end, even when N is a multiple of 50.
        assert len(pages) == _expected_page_count(messages)
        assert [page.end for page in pages] == [False] * (len(pages) - 1) + [True]
        assert all(len(page.messages) == PAGE for page in pages[:-1])
        assert pages[-1].cursor is None
    finally:
        store.close()


@pytest.mark.parametrize("messages", SIZES)
def test_oldest_first_paging_with_after_seq_returns_every_message_once(
    tmp_path: Path, messages: int
) -> None:
    # Given a conversation of N messages,
    store, cid = _history_of(tmp_path / "history.sqlite", messages)
    try:
        # when it is paged 50 at a time from seq 0 upwards, following the cursor,
        pages = _pages_oldest_first(store, cid)

        # then every seq comes exactly once, strictly increasing, and only the
        # last page says the end.
        seqs = [m.seq for page in pages for m in page.messages]
        assert seqs == list(range(1, messages + 1))
        assert len(pages) == _expected_page_count(messages)
        assert [page.end for page in pages] == [False] * (len(pages) - 1) + [True]
        assert pages[-1].cursor is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("after_seq", "before_seq", "expected"),
    [
        (None, 4, [3, 2, 1]),
        (7, None, [8, 9, 10]),
        (3, 7, [4, 5, 6]),
        (10, None, []),
        (None, 1, []),
    ],
)
def test_page_bounds_exclude_the_given_seqs(
    tmp_path: Path, after_seq: int | None, before_seq: int | None, expected: list[int]
) -> None:
    # Given a conversation of 10 messages,
    store, cid = _history_of(tmp_path / "history.sqlite", 10)
    try:
        # when a page is asked for between two seqs,
        page = store.page(cid, after_seq=after_seq, before_seq=before_seq, limit=50)

        # then it holds just the seqs strictly between them.
        assert [m.seq for m in page.messages] == expected
        assert page.end
    finally:
        store.close()


def test_a_conversation_nobody_started_has_an_empty_final_page(
    tmp_path: Path,
) -> None:
    store = SQLiteHistory(tmp_path / "history.sqlite")
    try:
        page = store.page(conversation_id("nobody", "else"))
        assert (page.messages, page.cursor, page.end) == ([], None, True)
        assert store.participants(conversation_id("nobody", "else")) is None
    finally:
        store.close()
