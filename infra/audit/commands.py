"""
The ``duetto audit`` subcommands: verify, export and show.

The source is the Kafka topic on the scaled profile and the event store's
notification log on the embedded one, unless ``--source`` says otherwise.
Violations and errors name the conversation and version; any violation, or
an event this build cannot read, makes the command exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from uuid import UUID

if TYPE_CHECKING:
    from infra.audit.sources import Logged
    from infra.audit.verify import Reference
    from infra.settings import Settings


def add_audit_parser(commands: Any) -> None:
    """
    Register ``duetto audit`` and its subcommands on the root's subparsers.
    """
    audit = commands.add_parser("audit", help="verify, export or show the log")
    actions = audit.add_subparsers(dest="action", required=True)

    check = actions.add_parser("verify", help="check the whole log, exit 1 if bad")
    _source_option(check)
    check.add_argument(
        "--against",
        type=Path,
        help="an earlier export whose hashes the log must still match",
    )
    check.set_defaults(handler=verify)

    dump = actions.add_parser("export", help="write events as JSON lines")
    _source_option(dump)
    whose = dump.add_mutually_exclusive_group()
    whose.add_argument("--conversation", type=UUID, help="one conversation's id")
    whose.add_argument("--user", help="every conversation of one user")
    dump.add_argument("--since", help="ISO time, inclusive (UTC if no zone)")
    dump.add_argument("--until", help="ISO time, inclusive (UTC if no zone)")
    dump.add_argument("--from-position", type=int, help="first notification id")
    dump.add_argument("--to-position", type=int, help="last notification id")
    dump.add_argument("--output", type=Path, help="file to write (default stdout)")
    dump.set_defaults(handler=export)

    view = actions.add_parser("show", help="a conversation at a point of the log")
    _source_option(view)
    view.add_argument("conversation", type=UUID, help="the conversation's id")
    view.add_argument(
        "--as-of",
        required=True,
        help="a notification id (a number) or an ISO time",
    )
    view.set_defaults(handler=show)


def _source_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--source",
        choices=["store", "kafka"],
        help="kafka on the scaled profile, store on the embedded one (default)",
    )


def verify(args: argparse.Namespace) -> int:
    """
    Check the whole log; print counts and every violation.
    """
    from infra.audit.progress import progress
    from infra.audit.references import ExportReference, StoreReference
    from infra.audit.verify import audit
    from infra.records import event_mapper

    settings = _settings()
    source = args.source or _default_source(settings)
    with (
        _recorder(settings) as recorder,
        _records(source, settings, recorder) as (
            records,
            total,
        ),
    ):
        reference: Reference | None = None
        if args.against is not None:
            reference = ExportReference(args.against)
        elif source == "kafka":
            reference = StoreReference(recorder)
        with progress(f"verify {source}", total) as advance:
            counts, violations = audit(
                records, event_mapper(), reference=reference, advance=advance
            )
    print(counts)
    for violation in violations:
        print(violation)
    print(f"{len(violations)} violations" if violations else "clean")
    return 1 if violations else 0


def export(args: argparse.Namespace) -> int:
    """
    Write the selected events as JSON lines.
    """
    from infra.audit.decoding import AuditError
    from infra.audit.export import Selection, export_lines, parse_time
    from infra.records import event_mapper

    selection = Selection(
        conversation_id=args.conversation,
        user=args.user,
        since=None if args.since is None else parse_time(args.since),
        until=None if args.until is None else parse_time(args.until),
        from_position=args.from_position,
        to_position=args.to_position,
    )
    settings = _settings()
    source = args.source or _default_source(settings)
    start = 1 if args.user is not None else (args.from_position or 1)
    with (
        _recorder(settings) as recorder,
        _records(source, settings, recorder, start=start, stop=args.to_position) as (
            records,
            _,
        ),
        _output(args.output) as out,
    ):
        try:
            for line in export_lines(records, event_mapper(), selection):
                out.write(line + "\n")
        except AuditError as e:
            print(f"duetto audit export: {e}", file=sys.stderr)
            return 1
    return 0


def show(args: argparse.Namespace) -> int:
    """
    Print one conversation as it stood at a position or a time.
    """
    from infra.audit.decoding import AuditError
    from infra.audit.export import parse_time
    from infra.audit.show import plain_text, print_rich, snapshot
    from infra.records import event_mapper

    as_of: str = args.as_of
    position = int(as_of) if as_of.isdigit() else None
    moment = None if position is not None else parse_time(as_of)
    settings = _settings()
    source = args.source or _default_source(settings)
    with (
        _recorder(settings) as recorder,
        _records(source, settings, recorder, stop=position) as (records, _),
    ):
        try:
            state = snapshot(
                records,
                event_mapper(),
                args.conversation,
                position=position,
                moment=moment,
            )
        except AuditError as e:
            print(f"duetto audit show: {e}", file=sys.stderr)
            return 1
    if sys.stdout.isatty():
        print_rich(state)
    else:
        print(plain_text(state))
    return 0


def _settings() -> Settings:
    from infra.settings import Settings

    return Settings()


def _default_source(settings: Settings) -> str:
    return "kafka" if settings.profile == "scaled" else "store"


@contextmanager
def _recorder(settings: Settings) -> Iterator[Any]:
    from infra.bootstrap import chat_service

    chat = chat_service(settings)
    try:
        yield chat.recorder
    finally:
        chat.close()


@contextmanager
def _records(
    source: str,
    settings: Settings,
    recorder: Any,
    *,
    start: int = 1,
    stop: int | None = None,
) -> Iterator[tuple[Iterator[Logged], int]]:
    from infra.audit.sources import KafkaReader, store_records, store_size

    if source == "store":
        yield store_records(recorder, start=start, stop=stop), store_size(recorder)
        return
    reader = KafkaReader(settings.kafka_bootstrap, settings.kafka_topic)
    try:
        yield reader.records(), reader.size
    finally:
        reader.close()


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8") as out:
        yield out
