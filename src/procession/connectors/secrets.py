"""Connectors' credentials at rest: encrypted with Fernet (AES-128-CBC and HMAC-SHA256), keys from the
settings (``Settings.connector_keys``). The first key encrypts, every key decrypts (``MultiFernet``), so a key
is rotated by putting a new one first, re-sealing what is stored (``reseal``), then dropping the old one."""

from __future__ import annotations

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretsUnreadable(Exception):
    """Stored credentials that none of the keys decrypts (a key dropped before its credentials were re-sealed)."""


class Vault:
    """Seals and opens a connector's credentials (a dict of strings) as one Fernet token."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("no key for connectors' credentials")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError:
            raise ValueError(
                "PROCESSION_SECRET_KEYS: each key is 32 url-safe base64-encoded bytes (a Fernet key)"
            ) from None

    def seal(self, values: dict[str, str]) -> str:
        return self._fernet.encrypt(orjson.dumps(values)).decode()

    def open(self, token: str | None) -> dict[str, str]:
        if not token:
            return {}
        try:
            return dict(orjson.loads(self._fernet.decrypt(token.encode())))
        except InvalidToken:
            raise SecretsUnreadable("no key of PROCESSION_SECRET_KEYS decrypts these credentials") from None

    def reseal(self, token: str) -> str:
        """The same credentials, encrypted with the first key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretsUnreadable("no key of PROCESSION_SECRET_KEYS decrypts these credentials") from None
