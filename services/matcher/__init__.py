"""matcher: the directory of linked identities, forward and reverse matches, audience stats.

Consumes (durable `matcher-events`): graph.ingested, identity.linked, identity.unlinked,
identity.proven, consent.changed, follow.done, user.erase.
Produces: follow.requested.<network>.<user> (batches, content-derived Nats-Msg-Id),
match.found.<user> (audience stats, coalesced per user).
Owns: directory, directory_quarantine, follow_ledger `planned` rows, users.auto_reconnect,
match_stats_dirty, dispatch_due.
"""
