"""Signing outbound webhooks the Standard Webhooks way (v1, HMAC-SHA256), so a receiver can verify them with
any Standard Webhooks library: the signature covers ``"{id}.{timestamp}.{body}"``.

The message id is the delivery's, the same on every attempt, so the receiver can use it to drop repeats;
the timestamp is the attempt's, so a receiver's replay window (five minutes in the reference library)
accepts a retry sent hours later.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signed_headers(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The headers that sign ``body`` (the exact bytes sent, UTF-8 JSON) for one attempt of a delivery."""
    if not msg_id or "." in msg_id:
        raise ValueError(f"a webhook message id must be non-empty and without '.': {msg_id!r}")
    at = datetime.fromtimestamp(timestamp_s, tz=UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
