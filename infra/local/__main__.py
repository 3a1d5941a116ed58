"""
Command line: ``python -m infra.local start|stop|status [SERVER|all]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from infra.local.servers import (
    SERVER_TYPES,
    LocalServer,
    LocalServerError,
    all_settings,
    local_dir,
    port_open,
    write_env_file,
)

logger = logging.getLogger("infra.local")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local",
        description="Install, start and stop the real servers on 127.0.0.1.",
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument(
        "server",
        nargs="?",
        default="all",
        choices=[*SERVER_TYPES, "all"],
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for each server (default: per server)",
    )
    return parser.parse_args(argv)


def _select(name: str) -> list[LocalServer]:
    if name == "all":
        return [server_type() for server_type in SERVER_TYPES.values()]
    return [SERVER_TYPES[name]()]


def start(servers: list[LocalServer], timeout: float | None) -> None:
    """
    Install, then launch every server, then wait for each to answer.

    Launching all before waiting lets the slow JVMs start side by side.
    """
    began = time.monotonic()
    for server in servers:
        step = time.monotonic()
        server.install()
        logger.info("%s: installed (%.1f s)", server.name, time.monotonic() - step)
    try:
        _launch_and_wait(servers, timeout)
    except LocalServerError:
        logger.error("start failed: stopping what this command launched")
        stop(servers)
        raise

    env_file = write_env_file(_select("all"))
    logger.info("all requested servers ready in %.1f s", time.monotonic() - began)
    for key, value in all_settings(servers).items():
        print(f"{key}={value}")
    print(f"# written to {env_file}")


def _launch_and_wait(servers: list[LocalServer], timeout: float | None) -> None:
    for server in servers:
        server.launch()
    for server in servers:
        waited = server.wait_ready(timeout)
        logger.info("%s: ready %.1f s after launch", server.name, waited)


def stop(servers: list[LocalServer]) -> None:
    """
    Stop every server that this tool started, in reverse start order.
    """
    for server in reversed(servers):
        began = time.monotonic()
        if server.stop():
            logger.info("%s: stopped in %.1f s", server.name, time.monotonic() - began)
        else:
            logger.info("%s: was not running", server.name)


def status(servers: list[LocalServer]) -> None:
    """
    Print each server's recorded pid and whether its ports accept connections.
    """
    for server in servers:
        pid = server.running_pid()
        ports = ", ".join(
            f"{port} {'open' if port_open(port) else 'closed'}" for port in server.ports
        )
        state = f"running, pid {pid}" if pid else "not running"
        print(f"{server.name}: {state}; ports {ports}; log {server.log_path}")


def main(argv: list[str] | None = None) -> int:
    """
    Run the command line; return the process exit code.
    """
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout
    )
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    servers = _select(args.server)
    logger.info("local dir: %s", local_dir())
    try:
        if args.action == "start":
            start(servers, args.timeout)
        elif args.action == "stop":
            stop(servers)
        else:
            status(servers)
    except LocalServerError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
