"""
History over HTTP: newest first, 50 a page, followed by ``next_cursor``.
"""

from __future__ import annotations

import pytest

from domain.ids import conversation_id
from tests.e2e.client import Cast, send_frame
from tests.e2e.deployment import Deployment

PAGE = 50


@pytest.mark.parametrize("count", [1, 49, 50, 51, 100, 250])
async def test_paging_history_returns_every_message_once_newest_first(
    deployment: Deployment, cast: Cast, count: int
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    first = await a.request(send_frame("m1", "m1", to=bob.name))
    cid = first["conversation_id"]
    await a.request_all(
        [send_frame(f"m{n}", f"m{n}", conversation_id=cid) for n in range(2, count + 1)]
    )
    await deployment.settle()

    pages = await bob.history_pages(cid, limit=PAGE)

    seqs = [m["seq"] for page in pages for m in page["messages"]]
    assert seqs == list(range(count, 0, -1))
    assert [len(page["messages"]) for page in pages[:-1]] == [PAGE] * (len(pages) - 1)
    assert len(pages) == -(-count // PAGE)  # No empty page after a full one.
    assert [page["end_of_history"] for page in pages] == [False] * (len(pages) - 1) + [
        True
    ]
    assert pages[-1]["next_cursor"] is None
    bodies = [m["body"] for page in pages for m in page["messages"]]
    assert bodies == [f"m{n}" for n in range(count, 0, -1)]


async def test_a_pair_that_never_talked_has_no_history_to_page(
    deployment: Deployment, cast: Cast
) -> None:
    # Zero messages: the pair's conversation was never started, so there is
    # nothing to page, and it cannot be told apart from anybody else's.
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    cid = conversation_id(alice.name, bob.name)

    response = await alice.http.get(f"/v1/conversations/{cid}/messages?limit={PAGE}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "conversation_not_found"
    assert await alice.conversations() == []


async def test_history_after_a_seq_runs_oldest_first(
    deployment: Deployment, cast: Cast
) -> None:
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    acks = await a.request_all(
        [send_frame(f"m{n}", f"m{n}", to=bob.name) for n in range(1, 6)]
    )
    cid = acks[0]["conversation_id"]
    await deployment.settle()

    response = await bob.http.get(
        f"/v1/conversations/{cid}/messages", params={"after_seq": 2, "limit": 2}
    )

    page = response.json()
    assert [m["seq"] for m in page["messages"]] == [3, 4]
    assert (page["next_cursor"], page["end_of_history"]) == (4, False)
