"""
A throwaway ``duetto serve`` for a benchmark run, and the CPU time of a server.

The server gets a fresh data directory and its own token secret, listens on a
free loopback port, and is stopped by its pid when the run ends. Any other
``DUETTO_*`` setting in the environment reaches it unchanged, so a run can try
a different configuration without touching the code.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
LOG_TAIL_BYTES = 4000


class ServerError(Exception):
    """
    The benchmark's own server did not start, or died during the run.
    """


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def duetto_command() -> list[str]:
    """
    The ``duetto`` script next to this interpreter, or the module behind it.
    """
    script = Path(sys.executable).parent / "duetto"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "api.cli"]


class LocalServer:
    """
    ``duetto serve`` in a subprocess, from start to stop, with a fresh data dir.
    """

    def __init__(self, *, keep_data: bool = False) -> None:
        self.port = free_port()
        self.secret = secrets.token_urlsafe(48)
        self.data_dir = Path(tempfile.mkdtemp(prefix="duetto-bench-"))
        self.keep_data = keep_data
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/v1/ws"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServerError("the server is not running")
        return self._process.pid

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        env = {
            **os.environ,
            "DUETTO_DATA_DIR": str(self.data_dir),
            "DUETTO_JWT_SECRET": self.secret,
            "DUETTO_LOG_LEVEL": os.environ.get("DUETTO_LOG_LEVEL", "WARNING"),
        }
        command = [*duetto_command(), "serve", "--host", LOOPBACK]
        command += ["--port", str(self.port)]
        with (self.data_dir / "server.log").open("wb") as log:
            self._process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    async def wait_ready(self) -> None:
        """
        Wait until ``/healthz`` answers 200, or raise with the server's log.
        """
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            self.check_alive()
            if await _healthy(self.port):
                return
            await asyncio.sleep(0.1)
        raise ServerError(f"not ready after {READY_TIMEOUT_SECONDS}s\n{self.log()}")

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            raise ServerError(f"the server exited with {code}\n{self.log()}")

    def stop(self) -> None:
        """
        Interrupt the server like Ctrl-C would, then kill it if it hangs.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log(self) -> str:
        path = self.data_dir / "server.log"
        if not path.exists():
            return ""
        return path.read_bytes()[-LOG_TAIL_BYTES:].decode(errors="replace")


async def _healthy(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
    except OSError:
        return False
    try:
        request = f"GET /healthz HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
        writer.write(f"{request}Connection: close\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        return b" 200 " in status
    except OSError:
        return False
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float | None:
    """
    User plus system CPU time of ``pid`` and its threads, from ``/proc``.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces, so split after its closing parenthesis.
    fields = stat.rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def listening_pid(port: int) -> int | None:
    """
    The pid holding a TCP socket that listens on ``port``, if /proc shows it.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


def _listening_inodes(port: int) -> set[str]:
    listen_state = "0A"
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == listen_state:
                inodes.add(f"socket:[{fields[9]}]")
    return inodes
