"""Mastodon adapter: follows on any Mastodon instance within its limits.

Consumes: `hqx.follow.requested.mastodon.<user>` (FollowRequested batches of `user@instance`).
Produces: `hqx.follow.done.mastodon.<user>` (FollowDone), `hqx.account.paused.mastodon.<user>`.
Owns: app registrations per instance (`mastodon_apps`), account state (`mastodon_accounts`),
rate budgets and resolve caches in Redis. Linking (OAuth) is `linking.py`, called by the gateway.
"""
