"""
Errors of the Cassandra history adapter; cassandra-driver errors end here.

HistoryStoreError
 ├── HistoryUnavailableError   no host answered in time: retry, keep the offset
 ├── HistoryRequestError       Cassandra refused the request: a bug, do not retry
 └── MigrationError            the migrations folder or keyspace name is wrong

Only this package imports the driver's exceptions. ``translated`` maps each of
them to the most specific class above, always with ``from e``, so a caller such
as a Kafka consumer retries on ``HistoryUnavailableError`` without committing
its offset and lets everything else stop the process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cassandra import (
    DriverException,
    OperationTimedOut,
    RequestExecutionException,
)
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.protocol import ErrorMessage, ServerError
from cassandra.protocol import RequestExecutionException as ServerBusyError

from projections.ports import ReadModelUnavailableError

# Errors that say nothing about the request itself: the same write or read
# succeeds once enough replicas answer again.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    NoHostAvailable,
    ConnectionException,
    OperationTimedOut,
    RequestExecutionException,
    # Raw server responses: overloaded, bootstrapping, an internal error.
    ServerBusyError,
    ServerError,
)
REFUSALS: tuple[type[Exception], ...] = (DriverException, ErrorMessage)


class HistoryStoreError(Exception):
    """
    The root of every error the Cassandra history adapter raises.
    """


class HistoryUnavailableError(HistoryStoreError, ReadModelUnavailableError):
    """
    Cassandra did not answer in time; nothing may be assumed written.
    """


class HistoryRequestError(HistoryStoreError):
    """
    Cassandra refused a request; retrying the same request cannot help.
    """


class MigrationError(HistoryStoreError):
    """
    The schema migrations cannot be applied as they are.
    """


@contextmanager
def translated(action: str) -> Iterator[None]:
    """
    Raise driver errors met while doing ``action`` as this module's errors.
    """
    try:
        yield
    except TRANSIENT_ERRORS as e:
        msg = f"Cassandra unavailable while trying to {action}: {e}"
        raise HistoryUnavailableError(msg) from e
    except REFUSALS as e:
        msg = f"Cassandra refused to {action}: {e}"
        raise HistoryRequestError(msg) from e
