"""
The ``duetto projections`` subcommands: status, rebuild and dlq list|retry.

The profile comes from ``DUETTO_PROFILE`` (or ``--profile``): the embedded
one reads the data directory's files, the scaled one the servers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from infra.logging import configure

if TYPE_CHECKING:
    from commands.service import ChatService
    from infra.settings import Settings

PROJECTIONS = ["history"]


def add_projections_parser(commands: Any) -> None:
    """
    Register ``duetto projections`` and its subcommands on the root's subparsers.
    """
    group = commands.add_parser(
        "projections", help="status, rebuilds and dead letters of the read models"
    )
    actions = group.add_subparsers(dest="action", required=True)

    status = actions.add_parser("status", help="positions, heads and lags")
    _common(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=show_status)

    rebuild = actions.add_parser("rebuild", help="rebuild into a new table version")
    _common(rebuild)
    rebuild.add_argument("name", choices=PROJECTIONS, help="the projection")
    rebuild.add_argument(
        "--keep-old", action="store_true", help="keep the old version after the switch"
    )
    rebuild.add_argument("--batch-size", type=_positive, help="events per batch")
    rebuild.add_argument(
        "--max-rate", type=_positive, help="at most this many events per second"
    )
    rebuild.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="scaled: processes sharing the topic's partitions (default 1)",
    )
    rebuild.set_defaults(handler=rebuild_projection)

    dlq = actions.add_parser("dlq", help="the dead-letter queue")
    dlq_actions = dlq.add_subparsers(dest="dlq_action", required=True)
    listing = dlq_actions.add_parser("list", help="show the parked events")
    _common(listing)
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(handler=list_letters)
    again = dlq_actions.add_parser("retry", help="apply the parked events again")
    _common(again)
    again.set_defaults(handler=retry_letters)


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--profile", choices=["embedded", "scaled"], help="default: DUETTO_PROFILE"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def show_status(args: argparse.Namespace) -> int:
    """
    Print each reader's position, the head and the lag; parked letters too.
    """
    from infra.readmodels.status import as_json, as_table

    settings = _settings(args)
    with _chat(settings) as chat:
        if settings.profile == "scaled":
            from infra.readmodels.scaled import scaled_status

            status = scaled_status(settings, chat)
        else:
            from infra.readmodels.embedded import embedded_status

            status = embedded_status(settings, chat)
    print(as_json(status) if args.json else as_table(status))
    return 0


def rebuild_projection(args: argparse.Namespace) -> int:
    """
    Rebuild a projection into a new version, switch reads, drop the old one.
    """
    from infra.readmodels.rebuild import Rebuild, run_rebuild

    settings = _settings(args)
    options = {} if args.batch_size is None else {"batch_size": args.batch_size}
    with _chat(settings) as chat:
        rebuild: Rebuild
        if settings.profile == "scaled" and args.workers > 1:
            from infra.readmodels.parallel import ParallelRebuild

            rebuild = ParallelRebuild(settings, workers=args.workers, **options)
        elif settings.profile == "scaled":
            from infra.readmodels.scaled import ScaledRebuild

            rebuild = ScaledRebuild(settings, **options)
        else:
            from infra.readmodels.embedded import EmbeddedRebuild

            rebuild = EmbeddedRebuild(settings, chat, **options)
        try:
            applied = run_rebuild(
                rebuild, keep_old=args.keep_old, max_rate=args.max_rate
            )
        finally:
            rebuild.close()
    print(f"{args.name} v{rebuild.version} is current; {applied} events applied")
    return 0


def list_letters(args: argparse.Namespace) -> int:
    """
    Print every parked event: conversation, version, position, error.
    """
    settings = _settings(args)
    with _history(settings) as history:
        letters = history.letters.parked("history")
    for letter in letters:
        if args.json:
            fields = {
                "conversation_id": str(letter.conversation_id),
                "version": letter.version,
                "position": letter.position,
                "event_type": letter.topic.rsplit(".", 1)[-1],
                "parked_at": letter.parked_at.isoformat(),
                "error": letter.error,
            }
            print(json.dumps(fields))
        else:
            print(
                f"{letter.conversation_id} v{letter.version} "
                f"at {letter.position}: {letter.error}"
            )
    if not args.json:
        print(f"{len(letters)} parked events")
    return 0


def retry_letters(args: argparse.Namespace) -> int:
    """
    Apply parked events in order; exit 1 if any conversation stays parked.
    """
    from infra.deadletters import decoder
    from infra.records import event_mapper
    from projections.deadletter import retry

    settings = _settings(args)
    with _history(settings) as history:
        outcome = retry(
            history, history.letters, decoder(event_mapper()), projector="history"
        )
    print(f"{outcome.applied} parked events applied")
    for conversation, error in outcome.still_parked.items():
        print(f"{conversation} still parked: {error}")
    return 1 if outcome.still_parked else 0


def _settings(args: argparse.Namespace) -> Settings:
    from infra.settings import Settings

    settings = Settings() if args.profile is None else Settings(profile=args.profile)
    configure(settings.log_level, as_json=settings.log_json)
    return settings


@contextmanager
def _chat(settings: Settings) -> Iterator[ChatService]:
    from infra.bootstrap import chat_service

    chat = chat_service(settings)
    try:
        yield chat
    finally:
        chat.close()


@contextmanager
def _history(settings: Settings) -> Iterator[Any]:
    history: Any
    if settings.profile == "scaled":
        from infra.readmodels import scaled

        history = scaled.current_history(settings)
    else:
        from infra.readmodels import embedded

        history = embedded.current_history(settings)
    try:
        yield history
    finally:
        history.close()
