"""
Process-wide logging: plain lines or JSON, with the connection in context.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

connection_context: ContextVar[str | None] = ContextVar("connection", default=None)
user_context: ContextVar[str | None] = ContextVar("user", default=None)


class ContextFilter(logging.Filter):
    """
    Adds the current connection and user ids to every record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.connection = connection_context.get() or "-"
        record.user = user_context.get() or "-"
        return True


class JSONFormatter(logging.Formatter):
    """
    One JSON object per line, for log shippers.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "connection": getattr(record, "connection", "-"),
            "user": getattr(record, "user", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


PLAIN_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [conn=%(connection)s user=%(user)s] %(message)s"
)


def configure(level: str = "INFO", *, as_json: bool = False) -> None:
    """
    Send duetto's logs to standard error, once, at start-up.
    """
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    formatter = JSONFormatter() if as_json else logging.Formatter(PLAIN_FORMAT)
    handler.setFormatter(formatter)
    for name in ("domain", "commands", "projections", "api", "infra"):
        package_logger = logging.getLogger(name)
        package_logger.handlers = [handler]
        package_logger.setLevel(level.upper())
        package_logger.propagate = False
