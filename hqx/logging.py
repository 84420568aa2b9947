"""Structured JSON logging with redaction: tokens and secrets never reach a log line."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

SECRET_FIELDS = re.compile(
    r"(token|secret|password|authorization|cookie|session|refresh|access_jwt|app_password|key)",
    re.I,
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _redact(key: str, value: Any) -> Any:
    if isinstance(value, SecretStr) or (SECRET_FIELDS.search(key) and value is not None):
        return "[redacted]"
    if isinstance(value, str):
        return _BEARER.sub(r"\1[redacted]", value)
    return value


class RedactingFilter(logging.Filter):
    """Blanks fields named like secrets and `SecretStr` values, and bearer tokens in text."""

    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in list(record.__dict__.items()):
            if k not in _STD:
                record.__dict__[k] = _redact(k, v)
        if isinstance(record.msg, str):
            record.msg = _BEARER.sub(r"\1[redacted]", record.msg)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v if isinstance(v, str | int | float | bool | None) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(level: str = "INFO", json_lines: bool = True, service: str | None = None) -> None:
    """Install the JSON formatter and the redaction filter on the root logger (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for h in list(root.handlers):
        if getattr(h, "_hqx", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._hqx = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    if service:
        old = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            rec = old(*args, **kwargs)
            rec.service = service
            return rec

        logging.setLogRecordFactory(factory)
    for noisy in ("httpx", "httpcore", "asyncio", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
