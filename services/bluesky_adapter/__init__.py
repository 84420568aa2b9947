"""Bluesky adapter: makes follows on a PDS, exactly once, within the account's budgets.

Consumes: `hqx.follow.requested.bluesky.<user>` (FollowRequested, durable
`bluesky-adapter-follow-requested`).
Produces: `hqx.follow.done.bluesky.<user>` (FollowDone), `hqx.account.paused.bluesky.<user>`
(AccountPaused, when a session is revoked or expired).
Owns: rate budgets in Redis (`hqx:budget:bluesky:*`), a short-lived cache of each repo's follows
(`hqx:bluesky:follows:<did>`); records outcomes in the follow ledger (PostgreSQL) and refreshed
sessions in `identities.token_cipher`.
"""
