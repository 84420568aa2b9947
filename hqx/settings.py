"""Settings shared by every service; each service subclasses with its own env prefix.

Nothing else reads `os.environ`. Settings are built once in a service's `__main__` and passed
down, so tests build their own.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A fixed key for development only; refused when HQX_ENV is not "development".
DEV_TOKEN_KEY = base64.urlsafe_b64encode(b"hqx-development-only-key-0000000").decode()


class ServiceSettings(BaseSettings):
    """`NATS_URL`, `REDIS_URL`, `DATABASE_URL` and the rest, read without a prefix."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    env: Literal["development", "test", "production"] = Field(
        "development", validation_alias="HQX_ENV"
    )
    nats_url: str = Field("nats://127.0.0.1:4222", validation_alias="NATS_URL")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/hqx", validation_alias="DATABASE_URL"
    )
    # Connection pools: requests beyond the size wait for a free connection, never fail.
    redis_max_connections: int = Field(200, validation_alias="HQX_REDIS_MAX_CONNECTIONS")
    db_pool_max_size: int = Field(10, validation_alias="HQX_DB_POOL_MAX_SIZE")
    # How long a starting service waits for NATS / PostgreSQL / Redis before giving up.
    start_retry_s: float = Field(60.0, validation_alias="HQX_START_RETRY_S")
    log_level: str = Field("INFO", validation_alias="HQX_LOG_LEVEL")
    log_json: bool = Field(True, validation_alias="HQX_LOG_JSON")
    # Comma-separated Fernet keys, newest first: encrypt with the first, decrypt with any
    # (key rotation without downtime).
    token_keys: SecretStr = Field(SecretStr(DEV_TOKEN_KEY), validation_alias="HQX_TOKEN_KEYS")
    health_host: str = Field("0.0.0.0", validation_alias="HQX_HEALTH_HOST")  # noqa: S104
    health_port: int = Field(0, validation_alias="HQX_HEALTH_PORT")  # 0: a free port
    health_port_file: Path | None = Field(None, validation_alias="HQX_HEALTH_PORT_FILE")
    # Streams/buckets are created with these limits by whoever starts first.
    # JetStream disk budget split between the streams and the archive bucket (see subjects).
    jetstream_max_bytes: int = Field(16 * 1024**3, validation_alias="HQX_JETSTREAM_MAX_BYTES")
    archive_max_age_s: float = Field(24 * 3600.0, validation_alias="HQX_ARCHIVE_MAX_AGE_S")
    # Storage of JetStream streams: "file" in production, "memory" is possible for tests.
    stream_storage: Literal["file", "memory"] = Field("file", validation_alias="HQX_STREAM_STORAGE")

    @model_validator(mode="after")
    def _refuse_dev_secrets(self) -> ServiceSettings:
        if self.env == "production" and DEV_TOKEN_KEY in self.token_keys.get_secret_value():
            raise ValueError("HQX_TOKEN_KEYS must be set to real keys outside development")
        return self
