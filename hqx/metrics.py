"""Every Prometheus metric the platform exports, one place, a comment each.

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms, base units).
Labels stay low-cardinality: service, durable, network, outcome, reason. Never a user id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Messages a consumer finished, by outcome (done/skipped/retry_later/failed/dead_lettered).
# A rising `failed` share means a dependency is down; look at the service's logs.
MESSAGES_CONSUMED = Counter(
    "hqx_messages_consumed_total", "Messages handled by a consumer", ["service", "durable", "outcome"]
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
