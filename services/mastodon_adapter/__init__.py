"""Mastodon adapter: follows on any Mastodon instance within its limits.

Consumes: `hqx.follow.requested.mastodon.<user>` and `hqx.follow.reconnect.mastodon.<user>`
(FollowRequested batches of `user@instance`; a migration's and late joiners' lanes).
Produces: `hqx.follow.done.mastodon.<user>` (FollowDone), `hqx.account.paused.mastodon.<user>`.
Owns: app registrations per instance (`mastodon_apps`), account state (`mastodon_accounts`),
rate budgets and resolve caches in Redis. Linking (OAuth) is `linking.py`, called by the gateway.
"""
