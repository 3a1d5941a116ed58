"""
``duetto audit verify``: check every conversation of the log, event by event.

Per conversation: versions run 1, 2, 3... with none missing; each record's
``previous_hash`` is the hash of the version before and its ``hash`` matches
its own content; message seqs run 1, 2, 3...; receipt marks never move back
and never pass the last seq at that point; an event appears once, and any
repeat (the relay delivers at least once) is the very same record. Against a
reference (the event store, or an earlier export) the same events, with the
same hashes, must be on both sides.

Memory grows with the number of events (two hashes each) and messages (one
id each): an audit keeps what it needs to name a violation exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Mapper

from domain.conversation import Conversation
from infra.audit.decoding import UndecodableEventError, decode
from infra.audit.sources import Logged
from infra.records import GENESIS_HASH, LogRecord, chain_hash


@dataclass(frozen=True, order=True)
class Violation:
    """
    One thing wrong with the log, at one version of one conversation.
    """

    conversation_id: str
    version: int
    what: str

    def __str__(self) -> str:
        return (
            f"conversation {self.conversation_id} version {self.version}: {self.what}"
        )


@dataclass
class Counts:
    """
    What the log holds: repeats of a record already seen are counted apart.
    """

    conversations: int = 0
    events: int = 0
    messages: int = 0
    receipts: int = 0
    repeats: int = 0

    def __str__(self) -> str:
        return (
            f"conversations {self.conversations}, events {self.events}, "
            f"messages {self.messages}, receipts {self.receipts}, "
            f"repeated records {self.repeats}"
        )


@dataclass
class Trail:
    """
    What the audit knows of one conversation so far.
    """

    version: int = 0
    head: str = GENESIS_HASH
    previous: dict[int, str] = field(default_factory=dict)
    hashes: dict[int, str] = field(default_factory=dict)
    event_ids: dict[int, UUID] = field(default_factory=dict)
    participants: frozenset[str] = frozenset()
    last_seq: int = 0
    seq_may_skip: bool = False
    # Set by any doubt about this chain, so a matching head cannot hide it.
    doubted: bool = False
    delivered: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)
    messages: dict[UUID, int] = field(default_factory=dict)


class Reference(Protocol):
    """
    Another account of the same log, to compare hashes with.
    """

    name: str

    def heads(self) -> dict[UUID, tuple[int, str]]: ...

    def hashes(self, conversation_id: UUID) -> dict[int, str]: ...


class Auditor:
    """
    Checks records one at a time and collects every violation it finds.
    """

    def __init__(self, mapper: Mapper[UUID]) -> None:
        self._mapper = mapper
        self.trails: dict[UUID, Trail] = {}
        self.violations: list[Violation] = []
        self.counts = Counts()

    def check(self, logged: Logged) -> None:
        record = logged.record
        trail = self.trails.setdefault(record.conversation_id, Trail())
        self.counts.conversations = len(self.trails)
        if record.version in trail.hashes:
            self._check_repeat(trail, logged)
            return
        self.counts.events += 1
        if logged.event_id != record.event_id:
            self._flag(record, f"event id {logged.event_id} is not this version's")
        self._check_chain(trail, record)
        trail.event_ids[record.version] = logged.event_id
        self._check_content(trail, record)

    def _flag(self, record: LogRecord, what: str) -> None:
        violation = Violation(str(record.conversation_id), record.version, what)
        self.violations.append(violation)
        self.trails[record.conversation_id].doubted = True

    def _check_repeat(self, trail: Trail, logged: Logged) -> None:
        record = logged.record
        content = chain_hash(record.previous_hash, record.topic, record.state)
        if logged.event_id != trail.event_ids[record.version]:
            what = (
                f"duplicate of this version under another event id, {logged.event_id}"
            )
            self._flag(record, what)
        elif content != trail.hashes[record.version]:
            self._flag(record, "appears again with different content")
        else:
            self.counts.repeats += 1

    def _check_chain(self, trail: Trail, record: LogRecord) -> None:
        expected = trail.version + 1
        if record.version > expected:
            missing = _span(expected, record.version - 1)
            self._flag(record, f"{missing} missing before it")
            trail.seq_may_skip = True
        elif record.version < expected:
            self._flag(record, f"arrives after version {trail.version}")
        elif record.previous_hash != trail.head:
            self._flag(record, "previous_hash does not match the version before")
        content = chain_hash(record.previous_hash, record.topic, record.state)
        if content != record.hash:
            self._flag(record, "hash does not match its content: altered after hashing")
        trail.previous[record.version] = record.previous_hash
        trail.hashes[record.version] = content
        if record.version > trail.version:
            trail.version, trail.head = record.version, record.hash

    def _check_content(self, trail: Trail, record: LogRecord) -> None:
        try:
            event = decode(record, self._mapper)
        except UndecodableEventError as e:
            self._flag(record, e.reason)
            trail.seq_may_skip = True  # It may have been a message.
            return
        check = _CHECKS.get(type(event))
        if check is None:
            self._flag(record, f"unknown event type {record.topic}")
            return
        for what in check(self, trail, event, record):
            self._flag(record, what)


def _span(first: int, last: int) -> str:
    return f"version {first}" if first == last else f"versions {first}-{last}"


def _started(
    auditor: Auditor, trail: Trail, event: Any, record: LogRecord
) -> list[str]:
    trail.participants = frozenset((event.user_a, event.user_b))
    for user in trail.participants:
        trail.delivered.setdefault(user, 0)
        trail.read.setdefault(user, 0)
    return [] if record.version == 1 else ["Started is not the first event"]


def _message_sent(
    auditor: Auditor, trail: Trail, event: Any, record: LogRecord
) -> list[str]:
    auditor.counts.messages += 1
    original = trail.messages.get(event.message_id)
    if original is not None:
        return [
            f"duplicate of the message at version {original} "
            f"(message id {event.message_id}) under a different event id"
        ]
    trail.messages[event.message_id] = record.version
    problems = _not_participant(trail, event.sender, "sender")
    expected = trail.last_seq + 1
    # A missing or unreadable version already explains a seq that skips.
    explained = trail.seq_may_skip and event.seq > expected
    if event.seq != expected and not explained:
        problems.append(f"seq {event.seq}, expected {expected}")
    trail.last_seq = max(trail.last_seq, event.seq)
    trail.seq_may_skip = False
    return problems


def _receipt(
    auditor: Auditor, trail: Trail, event: Any, record: LogRecord
) -> list[str]:
    auditor.counts.receipts += 1
    kind = "read" if isinstance(event, Conversation.Read) else "delivered"
    problems = _not_participant(trail, event.user, "user")
    marks = trail.read if kind == "read" else trail.delivered
    current = marks.get(event.user, 0)
    if event.up_to_seq > trail.last_seq:
        problems.append(
            f"{kind} mark {event.up_to_seq} is past the last seq, {trail.last_seq}"
        )
    if event.up_to_seq < current:
        problems.append(f"{kind} mark moves back from {current} to {event.up_to_seq}")
    marks[event.user] = max(current, event.up_to_seq)
    if kind == "read":
        # Reading implies having received, as the aggregate records it.
        delivered = trail.delivered.get(event.user, 0)
        trail.delivered[event.user] = max(delivered, event.up_to_seq)
    return problems


def _not_participant(trail: Trail, user: str, role: str) -> list[str]:
    # Without a Started event (reported as missing) nobody can be checked.
    if trail.participants and user not in trail.participants:
        return [f"{role} {user} is not a participant"]
    return []


Check = Callable[[Auditor, Trail, Any, LogRecord], list[str]]

_CHECKS: dict[type, Check] = {
    Conversation.Started: _started,
    Conversation.MessageSent: _message_sent,
    Conversation.Delivered: _receipt,
    Conversation.Read: _receipt,
}


def compare(auditor: Auditor, reference: Reference) -> list[Violation]:
    """
    Where the audited log and ``reference`` disagree, version by version.
    """
    heads = reference.heads()
    found: list[Violation] = []
    for conversation_id in sorted(set(auditor.trails) | set(heads), key=str):
        trail = auditor.trails.get(conversation_id, Trail())
        if not trail.doubted and heads.get(conversation_id) == (
            trail.version,
            trail.head,
        ):
            continue
        theirs = reference.hashes(conversation_id)
        found.extend(_differences(conversation_id, trail, theirs, reference.name))
    return found


def _differences(
    conversation_id: UUID, trail: Trail, theirs: dict[int, str], name: str
) -> list[Violation]:
    found = []
    for version in sorted(set(trail.hashes) | set(theirs)):
        what = None
        if version not in trail.hashes:
            what = f"in the {name} but missing here"
        elif version not in theirs:
            what = f"not in the {name}"
        elif _differs(trail, theirs, version):
            what = f"differs from the {name}: its content was changed"
        if what is not None:
            found.append(Violation(str(conversation_id), version, what))
    return found


def _differs(trail: Trail, theirs: dict[int, str], version: int) -> bool:
    # Only where both chains agree up to here is a difference this version's
    # own; later versions merely chain from it and are not named again.
    before = theirs.get(version - 1, GENESIS_HASH) if version > 1 else GENESIS_HASH
    ours = trail.hashes[version]
    return ours != theirs[version] and trail.previous[version] == before


def audit(
    records: Iterable[Logged],
    mapper: Mapper[UUID],
    *,
    reference: Reference | None = None,
    advance: Callable[[int], None] = lambda _: None,
) -> tuple[Counts, list[Violation]]:
    """
    Check every record, then compare with ``reference``; violations sorted.
    """
    auditor = Auditor(mapper)
    for logged in records:
        auditor.check(logged)
        advance(1)
    violations = list(auditor.violations)
    if reference is not None:
        violations.extend(compare(auditor, reference))
    return auditor.counts, sorted(set(violations))
