"""Encryption at rest for tokens and client secrets (Fernet, rotating keys)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr


class TokenCipher:
    """Encrypts with the first key, decrypts with any: rotate by prepending a new key."""

    def __init__(self, keys: SecretStr | str) -> None:
        raw = keys.get_secret_value() if isinstance(keys, SecretStr) else keys
        parts = [k.strip() for k in raw.split(",") if k.strip()]
        if not parts:
            raise ValueError("no token encryption key configured")
        self._f = MultiFernet([Fernet(k.encode()) for k in parts])

    def encrypt(self, plaintext: str) -> bytes:
        return self._f.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> SecretStr:
        try:
            return SecretStr(self._f.decrypt(bytes(ciphertext)).decode())
        except InvalidToken as e:
            raise ValueError("token cannot be decrypted with the configured keys") from e

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt under the newest key (used by the key-rotation runbook)."""
        return self._f.rotate(bytes(ciphertext))

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()
