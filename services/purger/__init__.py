"""purger: deletes personal data on time, deletes everything on request, and proves it.

Consumes, EVENTS, durable `purger-lifecycle`: `archive.unpacked` / `archive.rejected` (delete
the raw archive), `migration.completed` (delete graph edges and tokens unless the person opted
in to automatic reconnection), `user.erase` (everything, in every store); durable
`purger-follow-done`: `follow.done.<network>` (project the follow ledger: nothing planned
left -> publish `migration.completed`). Two durables, so deletions never wait behind the
projection's much larger stream of batches.
A periodic sweep deletes what outlived its limit: raw archives past 24 h, abandoned uploads,
expired rows (any `expires_at` column).
Produces: `migration.completed`, `data.purged` (audit: kinds and counts, never content).
Owns: the `purge_audit` rows (user tags, never user ids) and the erase tombstones (the gateway
also writes one when the person asks, so the erase holds before this service gets to it).
"""
