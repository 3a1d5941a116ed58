"""
The Cassandra session of a scaled process, built from ``Settings``.
"""

from __future__ import annotations

import logging
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)

from infra.cassandra.errors import translated
from infra.cassandra.migrate import migrate
from infra.cassandra.store import CassandraHistory
from infra.settings import Settings

logger = logging.getLogger(__name__)

# Cassandra 4.0 and later speak protocol v5; naming it skips the driver's
# downgrade probes and their warnings.
PROTOCOL_VERSION = 5
REQUEST_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10.0
# Reconnect within seconds once a node is back, not after minutes of backoff.
RECONNECT_BASE_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0


def build_cluster(settings: Settings) -> Any:
    """
    A driver cluster for the configured nodes: token-aware, LOCAL_QUORUM.
    """
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=REQUEST_TIMEOUT_SECONDS,
    )
    return Cluster(
        settings.cassandra_contact_points,
        port=settings.cassandra_port,
        protocol_version=PROTOCOL_VERSION,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        reconnection_policy=ExponentialReconnectionPolicy(
            RECONNECT_BASE_SECONDS, RECONNECT_MAX_SECONDS
        ),
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
    )


def connect(settings: Settings, *, replication_factor: int = 1) -> CassandraHistory:
    """
    Connect, bring the keyspace's schema up to date, and return its history.

    The history owns the cluster: closing it shuts the driver down.
    """
    cluster = build_cluster(settings)
    keyspace = settings.cassandra_keyspace
    try:
        with translated(f"connect to Cassandra at {settings.cassandra_hosts}"):
            session = cluster.connect()
        applied = migrate(session, keyspace, replication_factor=replication_factor)
        history = CassandraHistory(session, keyspace, owns_cluster=True)
    except BaseException:
        cluster.shutdown()
        raise
    logger.info("history in keyspace %s; migrations applied now: %s", keyspace, applied)
    return history
