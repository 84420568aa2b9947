"""Linking a Bluesky account with an app password, for the gateway to call.

`createSession` is limited to 30 per 5 min and 300 per day per account: it is called here once;
afterwards the adapter refreshes the session with its refresh JWT and never logs in again.
"""

from __future__ import annotations

import asyncpg
from pydantic import SecretStr

from hqx.crypto import TokenCipher
from services.bluesky_adapter import client, identity


async def link_app_password(
    pool: asyncpg.Pool,
    cipher: TokenCipher,
    user_id: str,
    identifier: str,
    app_password: SecretStr | str,
    pds_url: str,
) -> tuple[str, str]:
    """Log in once, store the session encrypted, return (did, handle).

    Raises `client.SessionInvalidError` (wrong password: `session_revoked` code is reused for
    "credentials refused") or `client.UnavailableError` (PDS unreachable).
    """
    info = await client.create_session(pds_url, identifier, app_password)
    await identity.upsert(pool, cipher, user_id, info.did, info.handle, pds_url, info.session)
    return info.did, info.handle
