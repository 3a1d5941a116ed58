"""
How the e2e suite starts a deployment of duetto, one profile at a time.

A starter takes a working directory and returns a ``Deployment``: where its
gateway listens, tokens for its users, and how to stop, kill and restart it.
Tests talk to that interface alone, so a new profile (``scaled``, with its
relay and projectors as processes of their own) is one more entry in
``STARTERS`` and the whole suite runs against it too.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

import httpx

from api.auth import issue_token
from infra.push.webpush import new_vapid_private_key

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SETTLE_TIMEOUT = 15.0
POLL_SECONDS = 0.05
TOKEN_TTL_SECONDS = 3600
LOOPBACK = "127.0.0.1"


class Deployment(Protocol):
    """
    A running duetto of some profile, as the tests see it.
    """

    profile: str

    @property
    def base_url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...

    def token(self, user: str, *, ttl_seconds: int = TOKEN_TTL_SECONDS) -> str:
        """A token for ``user``, signed as the deployment signs them."""
        ...

    def start(self) -> None:
        """Start every process, on the same data as before; wait until ready."""
        ...

    def stop(self) -> None:
        """Stop every process gracefully."""
        ...

    def kill(self) -> None:
        """Kill every process with SIGKILL: a crash, nothing flushed."""
        ...

    def log_text(self) -> str:
        """Everything the processes wrote to standard error and output."""
        ...

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until the read models have applied everything in the log."""
        ...


Starter = Callable[[Path, Mapping[str, str]], Deployment]


class StartDeployment(Protocol):
    """
    Start one more deployment of the profile under test, on fresh data.
    """

    def __call__(self, env: Mapping[str, str] | None = None) -> Deployment: ...


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def server_env(data_dir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """
    This process's environment without any duetto settings, then the given ones.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUETTO_")}
    env["DUETTO_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ServerProcess:
    """
    One ``python -m api.cli ...`` process, its log file, and its readiness URL.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        ready_url: str | None = None,
        ready_line: str | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.args = [sys.executable, "-m", "api.cli", *args]
        self.env = dict(env)
        self.log_path = log_path
        self.ready_url = ready_url
        # A process without HTTP is ready once its log shows this line.
        self.ready_line = ready_line
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        assert self._process is None, "already running"
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.args,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(how)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    self._end(signal.SIGKILL)
                    msg = f"{self.args} exited early:\n{self.log_path.read_text()}"
                    raise RuntimeError(msg)
                if self._is_ready(http):
                    return
                time.sleep(POLL_SECONDS)
        self.kill()
        msg = f"{self.args} not ready within {self.start_timeout}s"
        raise RuntimeError(msg)

    def _is_ready(self, http: httpx.Client) -> bool:
        if self.ready_line is not None:
            return self.ready_line in self.log_path.read_text(errors="replace")
        assert self.ready_url is not None
        try:
            return http.get(self.ready_url).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def running(self) -> bool:
        return self._process is not None


class EmbeddedDeployment:
    """
    The embedded profile: one gateway process over one data directory.
    """

    profile = "embedded"

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        # The port stays the same across restarts, so clients keep their URLs.
        self.port = free_port()
        self._env = server_env(self.data_dir, env)
        self._server = ServerProcess(
            ["serve", "--host", LOOPBACK, "--port", str(self.port)],
            env=self._env,
            log_path=workdir / "server.log",
            ready_url=f"{self.base_url}/healthz",
        )
        self._secret: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    def token(self, user: str, *, ttl_seconds: int = TOKEN_TTL_SECONDS) -> str:
        if self._secret is None:
            # The first token comes from `duetto token`, as a user gets one;
            # that also creates the data directory's secret if nothing has.
            # The command refuses lifetimes that are over before they begin,
            # so an expired token is signed here with the secret it created.
            issued = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "api.cli",
                    "token",
                    user,
                    f"--ttl={max(ttl_seconds, 1)}",
                ],
                cwd=REPO,
                env=self._env,
                capture_output=True,
                text=True,
                check=True,
                timeout=STOP_TIMEOUT,
            ).stdout.strip()
            self._secret = (self.data_dir / "secret.key").read_text().strip()
            if ttl_seconds > 0:
                return issued
        return issue_token(self._secret, user, ttl_seconds=ttl_seconds)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def kill(self) -> None:
        self._server.kill()

    def log_text(self) -> str:
        return self._server.log_path.read_text(encoding="utf-8", errors="replace")

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(base_url=self.base_url, trust_env=False) as http,
        ):
            while True:
                health = (await http.get("/healthz")).json()
                if health["projection_lag"] == 0:
                    return
                await asyncio.sleep(POLL_SECONDS)


SCALED_START_TIMEOUT = 90.0
SCALED_SECRET = "e2e-scaled-profile-secret-0123456789abcdef"


class ScaledDeployment:
    """
    The scaled profile: two gateways, the relay and both projectors, each a
    process of its own over the real servers, with a private PostgreSQL
    schema, Kafka topic and Cassandra keyspace.

    Successive URLs alternate between the gateways, so the people of a test
    are spread over both and every case also crosses gateways.
    """

    profile = "scaled"

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self._workdir = workdir
        unique = uuid.uuid4().hex[:10]
        self._env = server_env(
            workdir / "data",
            {**scaled_servers_env(), **_private_names(unique), **env},
        )
        self.ports = (free_port(), free_port())
        self._turn = itertools.count()
        self._processes = [
            self._process(["relay"], "relay", ready_line="relay starting"),
            self._process(
                ["project", "history"], "history", ready_line="assigned partitions"
            ),
            self._process(
                ["project", "presence"], "presence", ready_line="assigned partitions"
            ),
            *self._notifier(env),
            *(self._gateway(n, port) for n, port in enumerate(self.ports)),
        ]

    @property
    def env(self) -> Mapping[str, str]:
        """The settings every process of this deployment runs with."""
        return self._env

    def process(self, name: str) -> ServerProcess:
        """One process by name (``relay``, ``notify``, ...), to kill or restart."""
        [found] = [p for p in self._processes if p.log_path.stem == name]
        return found

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._next_port()}"

    @property
    def ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self._next_port()}"

    def token(self, user: str, *, ttl_seconds: int = TOKEN_TTL_SECONDS) -> str:
        return issue_token(SCALED_SECRET, user, ttl_seconds=ttl_seconds)

    def start(self) -> None:
        for process in self._processes:
            process.start()

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()

    def kill(self) -> None:
        for process in self._processes:
            process.kill()

    def log_text(self) -> str:
        return "\n".join(
            process.log_path.read_text(encoding="utf-8", errors="replace")
            for process in self._processes
            if process.log_path.exists()
        )

    async def settle(self, timeout: float = SETTLE_TIMEOUT * 2) -> None:
        async with asyncio.timeout(timeout):
            for port in self.ports:
                await _wait_for_no_lag(f"http://{LOOPBACK}:{port}")

    def _next_port(self) -> int:
        return self.ports[next(self._turn) % len(self.ports)]

    def _process(self, args: list[str], name: str, *, ready_line: str) -> ServerProcess:
        return ServerProcess(
            args,
            env=self._env,
            log_path=self._workdir / f"{name}.log",
            ready_line=ready_line,
            start_timeout=SCALED_START_TIMEOUT,
        )

    def _notifier(self, env: Mapping[str, str]) -> list[ServerProcess]:
        # `duetto notify` runs when a test configures push notifications.
        if not any(key.startswith("DUETTO_PUSH_") for key in env):
            return []
        return [self._process(["notify"], "notify", ready_line="assigned partitions")]

    def _gateway(self, number: int, port: int) -> ServerProcess:
        return ServerProcess(
            ["serve", "--host", LOOPBACK, "--port", str(port)],
            env=self._env,
            log_path=self._workdir / f"gateway-{number}.log",
            ready_url=f"http://{LOOPBACK}:{port}/healthz",
            start_timeout=SCALED_START_TIMEOUT,
        )


def scaled_servers_env() -> dict[str, str]:
    """
    Where infra/local's servers listen, as a scaled deployment's settings.
    """
    from infra.local.servers import (
        CassandraServer,
        KafkaServer,
        PostgresServer,
        RedisServer,
    )

    postgres = PostgresServer()
    return {
        "DUETTO_PROFILE": "scaled",
        "DUETTO_JWT_SECRET": SCALED_SECRET,
        "DUETTO_POSTGRES_HOST": LOOPBACK,
        "DUETTO_POSTGRES_PORT": str(postgres.port),
        "DUETTO_POSTGRES_USER": postgres.db_user,
        "DUETTO_POSTGRES_PASSWORD": postgres.db_password,
        "DUETTO_POSTGRES_DB": postgres.db_name,
        "DUETTO_KAFKA_BOOTSTRAP": KafkaServer().bootstrap,
        "DUETTO_KAFKA_PARTITIONS": "4",
        "DUETTO_CASSANDRA_HOSTS": LOOPBACK,
        "DUETTO_CASSANDRA_PORT": str(CassandraServer().port),
        "DUETTO_REDIS_URL": RedisServer().url,
        # Every gateway and `duetto notify` sign pushes with the same key.
        "DUETTO_PUSH_VAPID_PRIVATE_KEY": new_vapid_private_key(),
    }


def _private_names(unique: str) -> dict[str, str]:
    return {
        "DUETTO_POSTGRES_SCHEMA": f"e2e_{unique}",
        "DUETTO_KAFKA_TOPIC": f"e2e.{unique}",
        "DUETTO_KAFKA_GROUP_PREFIX": f"e2e-{unique}",
        "DUETTO_CASSANDRA_KEYSPACE": f"e2e_{unique}",
        # Each deployment's Redis keys and channels are its own too.
        "DUETTO_REDIS_PREFIX": f"e2e:{unique}",
    }


async def _wait_for_no_lag(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False) as http:
        while True:
            health = (await http.get("/healthz")).json()
            if health["projection_lag"] == 0:
                return
            await asyncio.sleep(POLL_SECONDS)


STARTERS: dict[str, Starter] = {
    "embedded": EmbeddedDeployment,
    "scaled": ScaledDeployment,
}
# DUETTO_E2E_PROFILES=embedded narrows a local run; CI runs every profile.
PROFILES: tuple[str, ...] = tuple(
    os.environ.get("DUETTO_E2E_PROFILES", ",".join(STARTERS)).split(",")
)


def deploy(
    profile: str, workdir: Path, env: Mapping[str, str] | None = None
) -> Deployment:
    """
    Start a deployment of ``profile`` with its data under ``workdir``.
    """
    deployment = STARTERS[profile](workdir, env or {})
    deployment.start()
    return deployment
