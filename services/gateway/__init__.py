"""gateway: the public door (FastAPI) and the web page a person uses.

Consumes: HTTP; progress events (an ephemeral core-NATS subscription per process on the EVENTS
subjects, fanned out to that process's SSE streams — no durable consumer).
Produces: `archive.uploaded`, `identity.linked`, `identity.proven`, `identity.unlinked`,
`consent.changed`, `user.erase`.
Owns: sessions (Redis), HQX accounts (`users` rows), upload state (`uploads` table), X sign-in
OAuth state (Redis, short-lived). Tokens of linked accounts are stored encrypted by the adapters'
linking code, called from here.
"""
