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
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

import httpx

from api.auth import issue_token

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
        ready_url: str,
    ) -> None:
        self.args = [sys.executable, "-m", "api.cli", *args]
        self.env = dict(env)
        self.log_path = log_path
        self.ready_url = ready_url
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
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    self._end(signal.SIGKILL)
                    msg = f"{self.args} exited early:\n{self.log_path.read_text()}"
                    raise RuntimeError(msg)
                try:
                    if http.get(self.ready_url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(POLL_SECONDS)
        self.kill()
        msg = f"{self.args} not ready within {START_TIMEOUT}s"
        raise RuntimeError(msg)


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
            issued = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "api.cli",
                    "token",
                    user,
                    f"--ttl={ttl_seconds}",
                ],
                cwd=REPO,
                env=self._env,
                capture_output=True,
                text=True,
                check=True,
                timeout=STOP_TIMEOUT,
            ).stdout.strip()
            self._secret = (self.data_dir / "secret.key").read_text().strip()
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


STARTERS: dict[str, Starter] = {"embedded": EmbeddedDeployment}
PROFILES: tuple[str, ...] = tuple(STARTERS)


def deploy(
    profile: str, workdir: Path, env: Mapping[str, str] | None = None
) -> Deployment:
    """
    Start a deployment of ``profile`` with its data under ``workdir``.
    """
    deployment = STARTERS[profile](workdir, env or {})
    deployment.start()
    return deployment
