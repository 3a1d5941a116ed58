"""
In-memory presence for the embedded profile: one process sees every socket.
"""

from __future__ import annotations

import threading
from datetime import datetime

from domain.ids import UserId
from projections.views import PresenceView


class MemoryPresence:
    """
    Presence kept in this process; it starts empty, as every socket does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[UserId, set[str]] = {}
        self._last_seen: dict[UserId, datetime] = {}

    def connected(self, user: UserId, connection_id: str, at: datetime) -> bool:
        with self._lock:
            devices = self._connections.setdefault(user, set())
            came_online = not devices
            devices.add(connection_id)
            return came_online

    def disconnected(self, user: UserId, connection_id: str, at: datetime) -> bool:
        with self._lock:
            devices = self._connections.get(user, set())
            if connection_id not in devices:
                return False
            devices.discard(connection_id)
            if devices:
                return False
            del self._connections[user]
            self._last_seen[user] = at
            return True

    def status(self, user: UserId) -> PresenceView:
        with self._lock:
            online = bool(self._connections.get(user))
            return PresenceView(user, online, self._last_seen.get(user))
