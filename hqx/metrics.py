"""Every Prometheus metric the platform exports, one place, a comment each.

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms, base units).
Labels stay low-cardinality: service, durable, network, outcome, reason. Never a user id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Messages a consumer finished, by outcome (done/skipped/retry_later/failed/dead_lettered).
# A rising `failed` share means a dependency is down; look at the service's logs.
MESSAGES_CONSUMED = Counter(
    "hqx_messages_consumed_total",
    "Messages handled by a consumer",
    ["service", "durable", "outcome"],
)
# Messages sent to the DLQ, by reason code. Any sustained rate is a bug signal: alert.
MESSAGES_DEAD_LETTERED = Counter(
    "hqx_messages_dead_lettered_total", "Messages dead-lettered", ["service", "reason"]
)
# Time spent in a handler, per consumer.
HANDLER_SECONDS = Histogram(
    "hqx_handler_seconds",
    "Handler latency",
    ["service", "durable"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
# Messages waiting for a durable consumer (num_pending) and delivered but unacked.
CONSUMER_PENDING = Gauge("hqx_consumer_pending_messages", "Consumer lag", ["service", "durable"])
CONSUMER_ACK_PENDING = Gauge(
    "hqx_consumer_ack_pending_messages", "Delivered, not yet acked", ["service", "durable"]
)
# Readiness of each dependency (1 up, 0 down).
DEPENDENCY_UP = Gauge("hqx_dependency_up", "Dependency reachable", ["service", "dependency"])
# Data deleted by the purger, by trigger (archive_unpacked, migration_completed, user_erase,
# sweep) and kind (a table, raw_archive, redis_keys, stream_messages...). `sweep` rising means
# a normal path (ingest, the follow projection) stopped deleting on time.
DATA_PURGED = Counter(
    "hqx_data_purged_total", "Items of personal data deleted", ["trigger", "kind"]
)
# Migrations the follow-ledger projection declared complete (nothing planned on any network).
MIGRATIONS_COMPLETED = Counter("hqx_migrations_completed_total", "Migrations completed")

# --- matcher -------------------------------------------------------------------------------
# Identities entering / leaving the directory, by network and change (entered, updated, left).
DIRECTORY_CHANGES = Counter(
    "hqx_directory_changes_total", "Directory entries changed", ["network", "change"]
)
# Conflicting claims on an X id already in the directory (impersonation attempts): audit them.
DIRECTORY_QUARANTINED = Counter(
    "hqx_directory_quarantined_total", "Directory claims quarantined", ["network", "reason"]
)
# Follows planned in the ledger, by origin (forward: own match; reverse: late joiner).
FOLLOWS_PLANNED = Counter("hqx_follows_planned_total", "Follows planned", ["network", "origin"])
# follow.requested batches published to the adapters.
FOLLOW_BATCHES_PUBLISHED = Counter(
    "hqx_follow_batches_published_total", "Follow batches published", ["network"]
)

# --- follows (adapters) ---------------------------------------------------------------
# Follows created on a network (a locked account's follow request counts too): the exodus-day
# throughput; compare with hqx_follows_allowed_per_minute.
FOLLOWS_MADE = Counter("hqx_follows_made_total", "Follows made", ["service", "network"])
# Targets not followed, by reason code (target gone, blocked, suspended, already followed...).
# A jump in one reason usually means a change on the network's side.
FOLLOWS_SKIPPED = Counter(
    "hqx_follows_skipped_total", "Follows skipped", ["service", "network", "reason"]
)
# Follow batches put back for later (nak with delay) because a budget or the network said wait.
# Normal on exodus day; worrying only while hqx_follows_made_total stays flat.
FOLLOWS_DEFERRED = Counter(
    "hqx_follows_deferred_total", "Follow batches deferred", ["service", "network", "reason"]
)
# Follows that failed for good (token revoked, account paused, network caps reached).
FOLLOWS_FAILED = Counter(
    "hqx_follows_failed_total", "Follows failed", ["service", "network", "reason"]
)
# Follows per minute the budgets of the accounts with pending follows allow (sum of their caps
# over their windows), set by each adapter: the "allowed" line of the exodus overview.
FOLLOWS_ALLOWED_PER_MINUTE = Gauge(
    "hqx_follows_allowed_per_minute", "Follow rate the budgets allow", ["service", "network"]
)

# --- rate budgets and network calls --------------------------------------------------------------
# A spend refused for lack of budget, by network and budget name (e.g. repo-write-hour).
BUDGET_WAITS = Counter(
    "hqx_budget_waits_total", "Budget refusals (caller retries later)", ["network", "budget"]
)
# Seconds of wait those refusals asked for (the nak delay): how far behind the budgets are.
BUDGET_WAIT_SECONDS = Counter(
    "hqx_budget_wait_seconds_total", "Wait asked by budget refusals", ["network", "budget"]
)
# Responses from a network, by outcome (ok/rate_limited/client_error/server_error/timeout).
# A rising rate_limited share means our budgets are looser than the server's: check head-room.
NETWORK_REQUESTS = Counter(
    "hqx_network_requests_total", "Requests to a network", ["service", "network", "outcome"]
)
# Latency of those requests.
NETWORK_REQUEST_SECONDS = Histogram(
    "hqx_network_request_seconds",
    "Latency of requests to a network",
    ["service", "network"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# --- archives (gateway, ingest) -----------------------------------------------------------------
# Archives accepted by the gateway: the uploads/min of the exodus overview.
ARCHIVES_UPLOADED = Counter("hqx_archives_uploaded_total", "Archives uploaded", ["slimmed"])
# Bytes of archive read by ingest (compressed, as stored).
ARCHIVE_BYTES_READ = Counter("hqx_archive_bytes_read_total", "Archive bytes read", ["service"])
# Bytes inflated from the members ingest parses (the zip-bomb cap applies to this).
ARCHIVE_BYTES_INFLATED = Counter(
    "hqx_archive_bytes_inflated_total", "Archive bytes inflated", ["service"]
)
# Records parsed from data/following*.js and data/follower*.js, by kind (following/follower).
ARCHIVE_RECORDS_PARSED = Counter(
    "hqx_archive_records_parsed_total", "Archive records parsed", ["service", "kind"]
)
# Archives ingest finished, by outcome (ingested/rejected) and reason code (rejections).
# A jump in one rejection reason after a release usually means a parser regression.
ARCHIVES_PROCESSED = Counter(
    "hqx_archives_processed_total", "Archives processed by ingest", ["outcome", "reason"]
)

# --- purges (purger) ------------------------------------------------------------------------------
# Age of the oldest raw archive still stored (seconds); over 24 h breaks the retention promise.
ARCHIVE_OLDEST_AGE_SECONDS = Gauge(
    "hqx_archive_oldest_age_seconds", "Age of the oldest stored raw archive"
)

# --- gateway HTTP ---------------------------------------------------------------------------------
# Requests served, by route template (never a raw path: it may hold ids), method and status.
HTTP_REQUESTS = Counter(
    "hqx_http_requests_total", "HTTP requests served", ["route", "method", "status"]
)
# Latency of those requests.
HTTP_REQUEST_SECONDS = Histogram(
    "hqx_http_request_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
)
# Open live-progress (SSE) streams.
SSE_STREAMS_OPEN = Gauge("hqx_sse_streams_open", "Open progress streams")
# Gateway business events (account_created, x_proven, upload_received, upload_refused,
# account_linked, consent_changed, erase_requested...), detail = low-cardinality kind or reason.
GATEWAY_EVENTS = Counter("hqx_gateway_events_total", "Gateway business events", ["event", "detail"])
# Graph edges written by ingest (following + followers).
GRAPH_EDGES_STORED = Counter("hqx_graph_edges_stored_total", "Graph edges written by ingest")
