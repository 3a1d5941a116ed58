"""
The ``duetto`` command line.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from infra.logging import configure
from infra.settings import Settings

if TYPE_CHECKING:
    from infra.bootstrap import Process

# Named, not __name__: under `python -m api.cli` that is "__main__", which
# the configured "api" logger does not cover, and the line saying where the
# server listens would vanish.
logger = logging.getLogger("api.cli")

WS_MAX_FRAME_BYTES = 64 * 1024
WS_PING_SECONDS = 20.0


def serve(args: argparse.Namespace) -> int:
    """
    Run the gateway with uvicorn until interrupted.
    """
    import uvicorn

    from api.app import create_app

    overrides = {"host": args.host, "port": args.port, "profile": args.profile}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    configure(settings.log_level, as_json=settings.log_json)
    logger.info(
        "duetto (%s profile) listening on http://%s:%s",
        settings.profile,
        settings.host,
        settings.port,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        ws_max_size=WS_MAX_FRAME_BYTES,
        # A socket that misses a ping for this long is closed, and presence
        # follows: nobody stays online after their network died.
        ws_ping_interval=WS_PING_SECONDS,
        ws_ping_timeout=WS_PING_SECONDS,
        # Chat frames are small: compressing each costs more CPU than it saves.
        ws_per_message_deflate=False,
    )
    return 0


def stop_signals() -> threading.Event:
    """
    An event that SIGTERM or SIGINT sets, so a process can stop cleanly.
    """
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


def relay(args: argparse.Namespace) -> int:
    """
    Relay the event store's notification log to Kafka until signalled.
    """
    from infra.bootstrap import build_relay

    return run_process(build_relay)


def project(args: argparse.Namespace) -> int:
    """
    Run one projector as a member of its Kafka consumer group until signalled.
    """
    from infra.bootstrap import build_projector

    return run_process(lambda settings: build_projector(settings, args.name))


def notify(args: argparse.Namespace) -> int:
    """
    Run the push notifier as a member of its Kafka consumer group until signalled.
    """
    from infra.push.scaled import build_notify

    return run_process(build_notify)


def run_process(build: Callable[[Settings], Process]) -> int:
    # Signals are caught before anything is built: a stop during start-up
    # still ends cleanly, once the parts exist to be closed.
    stopping = stop_signals()
    settings = Settings(profile="scaled")
    configure(settings.log_level, as_json=settings.log_json)
    process = build(settings)
    try:
        process.run(stopping)
    finally:
        process.close()
    return 0


def token(args: argparse.Namespace) -> int:
    """
    Print a token for ``args.user`` signed with the configured secret.
    """
    from api.auth import issue_token

    settings = Settings()
    ttl = args.ttl or settings.token_ttl_seconds
    print(issue_token(settings.signing_secret(), args.user, ttl_seconds=ttl))
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        msg = f"must be a positive number of seconds, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def vapid_key(args: argparse.Namespace) -> int:
    """
    Print a fresh VAPID private key for the scaled profile's push settings.
    """
    from infra.push.webpush import new_vapid_private_key

    print(new_vapid_private_key(), end="")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="duetto", description="Real-time 1-on-1 chat backend."
    )
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("serve", help="run the HTTP and WebSocket gateway")
    run.add_argument("--host", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to bind (default 8000)")
    run.add_argument("--profile", choices=["embedded", "scaled"])
    run.set_defaults(handler=serve)

    forward = commands.add_parser(
        "relay", help="relay the event store's log to Kafka (scaled profile)"
    )
    forward.set_defaults(handler=relay)

    projector = commands.add_parser(
        "project", help="run a projector over the Kafka log (scaled profile)"
    )
    projector.add_argument(
        "name",
        choices=["history", "presence"],
        help="history: Cassandra tables; presence: pushes through Redis",
    )
    projector.set_defaults(handler=project)

    pusher = commands.add_parser(
        "notify", help="push to people with no device online (scaled profile)"
    )
    pusher.set_defaults(handler=notify)

    keys = commands.add_parser(
        "vapid-key",
        help="print a new VAPID private key for DUETTO_PUSH_VAPID_PRIVATE_KEY",
    )
    keys.set_defaults(handler=vapid_key)

    issue = commands.add_parser("token", help="print a token for a user")
    issue.add_argument("user", help="the user id the token speaks for")
    issue.add_argument("--ttl", type=positive, help="seconds until it expires")
    issue.set_defaults(handler=token)

    from infra.audit.commands import add_audit_parser

    add_audit_parser(commands)
    from infra.readmodels.commands import add_projections_parser

    add_projections_parser(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except Exception as e:
        if type(e).__name__ in {
            "ValidationError",
            "InvalidUserIdError",
            "MissingVapidKeyError",
            "InvalidVapidKeyError",
        }:
            print(f"duetto: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
