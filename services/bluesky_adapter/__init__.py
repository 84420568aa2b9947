"""Bluesky adapter: makes follows on a PDS, exactly once, within the account's budgets.

Consumes: `hqx.follow.requested.bluesky.<user>` and `hqx.follow.reconnect.bluesky.<user>`
(FollowRequested; durables `bluesky-adapter-follow-requested` and `-follow-reconnect`).
Produces: `hqx.follow.done.bluesky.<user>` (FollowDone), `hqx.account.paused.bluesky.<user>`
(AccountPaused, when a session is revoked or expired).
Owns: rate budgets in Redis (`hqx:budget:bluesky:*`), a short-lived cache of each repo's follows
(`hqx:bluesky:follows:<did>`); records outcomes in the follow ledger (PostgreSQL) and refreshed
sessions in `identities.token_cipher`.
"""
