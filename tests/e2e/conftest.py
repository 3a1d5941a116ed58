"""
Fixtures of the e2e suite: deployments of each profile, and people using them.

Every test runs once per profile in ``PROFILES``. Most share one deployment
per profile, with people of their own; those that stop, kill or restart the
server, or read its whole log, get a fresh deployment on its own data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.client import Cast
from tests.e2e.deployment import PROFILES, Deployment, StartDeployment, deploy

E2E_DIR = Path(__file__).parent
SCALED_SERVERS = ("postgres_server", "kafka_server", "cassandra_server", "redis_server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def servers(profile: str, request: pytest.FixtureRequest) -> None:
    """
    The real servers a profile's processes talk to, running for the session.
    """
    if profile == "scaled":
        for name in SCALED_SERVERS:
            request.getfixturevalue(name)


@pytest.fixture(scope="session")
def deployment(
    profile: str, servers: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """
    One deployment of ``profile`` shared by the tests that only need users.
    """
    shared = deploy(profile, tmp_path_factory.mktemp(f"{profile}-shared"))
    yield shared
    shared.stop()


@pytest.fixture
def start_deployment(
    profile: str, servers: None, tmp_path: Path
) -> Iterator[StartDeployment]:
    """
    Start deployments of ``profile`` on fresh data; all are stopped at the end.
    """
    started: list[Deployment] = []

    def start(env: Mapping[str, str] | None = None) -> Deployment:
        running = deploy(profile, tmp_path / f"deployment-{len(started)}", env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def fresh_deployment(start_deployment: StartDeployment) -> Deployment:
    return start_deployment()


@pytest.fixture
async def cast() -> AsyncIterator[Cast]:
    people = Cast()
    yield people
    await people.aclose()
