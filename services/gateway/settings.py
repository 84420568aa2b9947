"""Gateway settings (env prefix HQX_GATEWAY_)."""

from __future__ import annotations

from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from hqx.settings import ServiceSettings

DEV_SESSION_SECRET = "hqx-development-only-session-secret"  # noqa: S105


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HQX_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    # The URL a browser reaches us at: OAuth redirect URIs are built from it.
    public_url: str = "http://127.0.0.1:8000"
    session_secret: SecretStr = SecretStr(DEV_SESSION_SECRET)
    session_ttl_s: int = 30 * 86400
    cookie_secure: bool = False
    # X OAuth 2.0 (authorization code + PKCE). Empty client id: X sign-in is not offered.
    x_client_id: str = ""
    x_client_secret: SecretStr = SecretStr("")
    x_authorize_url: str = "https://x.com/i/oauth2/authorize"
    x_token_url: str = "https://api.x.com/2/oauth2/token"  # noqa: S105
    x_api_url: str = "https://api.x.com"
    # Uploads: a full archive can be several GB; slimmed ones are a few MB.
    upload_max_bytes: int = 8 * 1024**3
    user_max_active_uploads: int = 3
    # Request limits (per window of `rate_window_s`).
    rate_window_s: int = 60
    rate_per_ip: int = 600
    rate_per_user: int = 1200
    # Mastodon linking (passed to the adapter's linking code): local instances for tests only.
    mastodon_allow_local: bool = False
    mastodon_ca_bundle: str | None = None
    bluesky_allow_local: bool = False
    # Bluesky PDS used when a person does not name one.
    default_pds_url: str = "https://bsky.social"

    @model_validator(mode="after")
    def _refuse_dev_session_secret(self) -> Settings:
        if (
            self.env == "production"
            and self.session_secret.get_secret_value() == DEV_SESSION_SECRET
        ):
            raise ValueError("HQX_GATEWAY_SESSION_SECRET must be set outside development")
        return self
