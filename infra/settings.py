"""
One typed settings object, read from ``DUETTO_*`` environment variables.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32
SECRET_FILE = "secret.key"


class Settings(BaseSettings):
    """
    Everything a duetto process can be configured with.
    """

    model_config = SettingsConfigDict(env_prefix="DUETTO_", extra="ignore")

    profile: Literal["embedded", "scaled"] = "embedded"
    data_dir: Path = Path("var")
    jwt_secret: SecretStr | None = None
    token_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool = False
    aggregate_cache_size: int = Field(default=10_000, ge=0)
    follower_batch_size: int = Field(default=500, gt=0)
    follower_poll_seconds: float = Field(default=0.5, gt=0)
    outbox_limit: int = Field(default=10_000, gt=0)

    # The scaled profile's servers; infra/local starts all of them on loopback.
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "duetto"
    postgres_password: SecretStr = SecretStr("duetto")
    postgres_db: str = "duetto"
    postgres_schema: str = Field(default="", pattern=r"^[a-z_][a-z0-9_]*$|^$")
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "duetto.conversations"
    kafka_partitions: int = Field(default=12, gt=0)
    kafka_group_prefix: str = "duetto"
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_keyspace: str = "duetto"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "duetto:"
    presence_ttl_seconds: int = Field(default=60, gt=0)
    heartbeat_seconds: float = Field(default=20.0, gt=0)
    startup_timeout_seconds: float = Field(default=120.0, gt=0)

    # Push notifications for people with no device online (issue 4).
    push_grace_seconds: float = Field(default=3.0, ge=0)
    push_collapse_seconds: float = Field(default=10.0, ge=0)
    push_include_body: bool = False
    push_webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    push_webhook_secret: SecretStr | None = None
    push_vapid_subject: str = "mailto:push@localhost"
    # PEM, or base64url of the raw 32-byte key or its DER; the scaled profile
    # needs it, since every gateway and `duetto notify` must sign alike.
    push_vapid_private_key: SecretStr | None = None
    push_retry_base_seconds: float = Field(default=1.0, gt=0)
    push_max_attempts: int = Field(default=8, gt=0)
    push_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _secret_is_strong(self) -> Settings:
        secret = self.jwt_secret
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
            msg = f"DUETTO_JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters"
            raise ValueError(msg)
        if secret is None and self.profile == "scaled":
            msg = "the scaled profile needs DUETTO_JWT_SECRET shared by all processes"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _webhook_is_signed(self) -> Settings:
        secret = self.push_webhook_secret
        if (self.push_webhook_url is None) != (secret is None):
            msg = "DUETTO_PUSH_WEBHOOK_URL and DUETTO_PUSH_WEBHOOK_SECRET go together"
            raise ValueError(msg)
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
            msg = f"DUETTO_PUSH_WEBHOOK_SECRET needs {MIN_SECRET_LENGTH}+ characters"
            raise ValueError(msg)
        return self

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # A host name other than localhost: not provably local.

    def signing_secret(self) -> str:
        """
        The token secret; the embedded profile creates one in the data directory.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / SECRET_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def event_store_env(self) -> dict[str, str]:
        """
        The ``eventsourcing`` environment for the event store of record.
        """
        if self.profile == "scaled":
            return self._postgres_env()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(self.data_dir / "events.sqlite"),
            "SQLITE_LOCK_TIMEOUT": "30",
            "AGGREGATE_CACHE_MAXSIZE": str(self.aggregate_cache_size),
            # This process is the only writer: its cache is always current.
            "AGGREGATE_CACHE_FASTFORWARD": "n",
            "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
        }

    def _postgres_env(self) -> dict[str, str]:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.postgres_db,
            "POSTGRES_HOST": self.postgres_host,
            "POSTGRES_PORT": str(self.postgres_port),
            "POSTGRES_USER": self.postgres_user,
            "POSTGRES_PASSWORD": self.postgres_password.get_secret_value(),
            "AGGREGATE_CACHE_MAXSIZE": str(self.aggregate_cache_size),
            # Other gateways write too: catch up on their events at each load.
            "AGGREGATE_CACHE_FASTFORWARD": "y",
            "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
            **(
                {"POSTGRES_SCHEMA": self.postgres_schema}
                if self.postgres_schema
                else {}
            ),
        }

    @property
    def postgres_dsn(self) -> str:
        password = self.postgres_password.get_secret_value()
        return (
            f"postgresql://{self.postgres_user}:{password}@{self.postgres_host}:"
            f"{self.postgres_port}/{self.postgres_db}"
        )

    @property
    def cassandra_contact_points(self) -> list[str]:
        return [host.strip() for host in self.cassandra_hosts.split(",") if host]

    @property
    def read_model_path(self) -> Path:
        return self.data_dir / "history.sqlite"
