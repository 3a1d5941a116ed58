"""
The server's own log: a line per connection, and never a message body.
"""

from __future__ import annotations

from uuid import uuid4

from tests.e2e.client import Cast, is_type, send_frame
from tests.e2e.deployment import Deployment, StartDeployment


async def test_the_server_log_never_contains_a_message_body(
    start_deployment: StartDeployment, cast: Cast
) -> None:
    deployment: Deployment = start_deployment({"DUETTO_LOG_LEVEL": "DEBUG"})
    secret = f"body-{uuid4().hex}"
    alice = cast.person(deployment, "alice")
    bob = cast.person(deployment, "bob")
    a = await alice.connect()
    b = await bob.connect()

    # Accepted, refused, repeated and malformed frames and requests all carry it.
    ack = await a.request(send_frame(secret, "1", to=bob.name))
    cid = ack["conversation_id"]
    await a.request(send_frame(secret, "1", to=bob.name))
    await a.request(send_frame(f"{secret}\x00", "2", to=bob.name))
    await a.request(send_frame(secret * 200, "3", to=bob.name))
    await a.request({**send_frame(secret, "4", to=bob.name), "from": bob.name})
    await a.request(send_frame(secret, "5", conversation_id=str(uuid4())))
    await a.send_raw(f"{{{secret}")
    await a.wait_for(is_type("error", code="invalid_json"))
    await b.wait_for(is_type("message", conversation_id=cid))
    await alice.http.post("/v1/messages", json=send_frame(secret, "6", to=bob.name))
    await alice.http.post("/v1/messages", json={"to": bob.name, "body": secret})
    await deployment.settle()
    await bob.history(cid)
    await b.request({"type": "sync", "cursors": {}})
    await a.close()
    await b.close()
    deployment.stop()

    log = deployment.log_text()
    assert f"opened by {alice.name}" in log
    assert f"of {bob.name} closed" in log
    assert secret not in log


async def test_the_server_logs_where_it_listens(fresh_deployment: Deployment) -> None:
    where = fresh_deployment.base_url

    assert f"listening on {where}" in fresh_deployment.log_text()
