"""Linking a Bluesky account with an app password, for the gateway to call.

`createSession` is limited to 30 per 5 min and 300 per day per account: it is called here once;
afterwards the adapter refreshes the session with its refresh JWT and never logs in again.
"""

from __future__ import annotations

import asyncpg
from pydantic import SecretStr

from hqx.crypto import TokenCipher
from hqx.errors import HqxError, Reason
from services.bluesky_adapter import client, identity


class LinkError(HqxError):
    """Linking failed; `code` is the stable reason shown to the person."""

    http_status = 422


async def link_app_password(
    pool: asyncpg.Pool,
    cipher: TokenCipher,
    user_id: str,
    identifier: str,
    app_password: SecretStr | str,
    pds_url: str,
) -> tuple[str, str]:
    """Log in once, store the session encrypted, return (did, handle).

    Raises `LinkError` with code `invalid_credentials` (refused login) or
    `network_unavailable` (PDS unreachable, or it failed).
    """
    try:
        info = await client.create_session(pds_url, identifier, app_password)
    except (client.SessionInvalidError, client.RejectedError) as e:
        raise LinkError(Reason.INVALID_CREDENTIALS, e.message) from e
    except client.BlueskyError as e:
        raise LinkError(Reason.NETWORK_UNAVAILABLE, e.message) from e
    await identity.upsert(pool, cipher, user_id, info.did, info.handle, pds_url, info.session)
    return info.did, info.handle
