"""Stable reason codes and the exception hierarchy.

The same snake_case words appear in dead letters, ledger rows, HTTP error bodies and metric
attributes. Add codes; never rename one (dashboards, clients and old DLQ records use them).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # --- bus / dead letters ----------------------------------------------------------
    BAD_JSON = "bad_json"
    UNKNOWN_SCHEMA = "unknown_schema"
    SCHEMA_INVALID = "schema_invalid"
    RETRIES_EXHAUSTED = "retries_exhausted"
    USER_ERASED = "user_erased"
    # --- data lifecycle (purger) ----------------------------------------------------------
    MIGRATION_IN_PROGRESS = "migration_in_progress"  # follows still planned: nothing to purge
    ERASE_SETTLING = "erase_settling"  # first erase pass done; the second runs after a delay
    # --- archives (ingest) -------------------------------------------------------------
    NOT_A_ZIP = "not_a_zip"
    EMPTY_ARCHIVE = "empty_archive"
    TRUNCATED = "truncated"
    ZIP_BOMB = "zip_bomb"
    OVERLAPPING_ENTRIES = "overlapping_entries"
    UNSAFE_PATH = "unsafe_path"
    SYMLINK = "symlink"
    ENCRYPTED = "encrypted"
    TOO_MANY_ENTRIES = "too_many_entries"
    DUPLICATE_ENTRY = "duplicate_entry"
    MALFORMED_JS = "malformed_js"
    INVALID_ACCOUNT_ID = "invalid_account_id"
    MANIFEST_INVALID = "manifest_invalid"
    COUNT_MISMATCH = "count_mismatch"
    GRAPH_MISSING = "graph_missing"
    OWNER_MISMATCH = "owner_mismatch"
    ARCHIVE_MISSING = "archive_missing"
    TOO_LARGE = "too_large"
    ZIP_CORRUPT = "zip_corrupt"  # CRC/size mismatch, central directory disagrees, trailing data
    UNSUPPORTED_ZIP = "unsupported_zip"  # compression method or layout we cannot stream
    OWNER_MISSING = "owner_missing"  # neither data/manifest.js nor data/account.js names the owner
    # --- follows (adapters) -------------------------------------------------------------
    TARGET_NOT_FOUND = "target_not_found"
    TARGET_DELETED = "target_deleted"
    TARGET_SUSPENDED = "target_suspended"
    TARGET_TAKENDOWN = "target_takendown"
    BLOCKED = "blocked"
    FOLLOW_CAP = "follow_cap"
    ALREADY_FOLLOWING = "already_following"
    SESSION_REVOKED = "session_revoked"
    ACCOUNT_PAUSED = "account_paused"
    RATE_LIMITED = "rate_limited"
    NETWORK_UNAVAILABLE = "network_unavailable"
    MALFORMED_RESPONSE = "malformed_response"
    INVALID_TARGET = "invalid_target"
    NOT_LINKED = "not_linked"
    NOT_PLANNED = "not_planned"  # cancelled while its batch ran (target left, consent withdrawn)
    FOLLOW_IN_FLIGHT = "follow_in_flight"  # another delivery of the batch is making that follow
    # --- directory / matching (matcher) -------------------------------------------------
    X_NOT_PROVEN = "x_not_proven"
    DIRECTORY_CONFLICT = "directory_conflict"
    UNKNOWN_USER = "unknown_user"
    STALE_EVENT = "stale_event"
    # --- linking ---------------------------------------------------------------------------
    INSTANCE_UNREACHABLE = "instance_unreachable"
    NOT_MASTODON = "not_mastodon"
    INVALID_INSTANCE = "invalid_instance"
    REGISTRATION_CLOSED = "registration_closed"
    USER_DENIED = "user_denied"
    INVALID_CREDENTIALS = "invalid_credentials"
    OAUTH_STATE_INVALID = "oauth_state_invalid"
    # --- gateway -------------------------------------------------------------------------
    NOT_AUTHENTICATED = "not_authenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CSRF_FAILED = "csrf_failed"
    TOO_MANY_REQUESTS = "too_many_requests"
    UPLOAD_INVALID = "upload_invalid"
    VALIDATION_FAILED = "validation_failed"


class HqxError(Exception):
    """Base of every error we raise on purpose; carries a stable `code`."""

    code: Reason = Reason.VALIDATION_FAILED
    http_status: int = 400

    def __init__(self, code: Reason | None = None, message: str = "") -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.value.replace("_", " ")
        super().__init__(f"{self.code}: {self.message}")


class InvalidMessageError(HqxError):
    """A bus payload that fails validation: dead-lettered, never retried."""


class ArchiveRejectedError(HqxError):
    """Hostile or unreadable archive: a domain result (`archive.rejected`), not a dead letter."""

    http_status = 422


class UserErasedError(HqxError):
    """A late message about an erased user: dropped, nothing is recreated."""

    code = Reason.USER_ERASED
