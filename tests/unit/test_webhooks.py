"""Webhook signing: what ``signed_headers`` produces verifies with the Standard Webhooks library, and
nothing else does."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from procession.connectors.webhooks import new_secret, signed_headers

BODY = b'{"type": "contact.created", "data": {"id": "c_1", "name": "Z\xc3\xbcrich"}}'


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_signed_headers_verify_with_the_standard_library() -> None:
    secret, now = new_secret(), int(time.time())
    headers = signed_headers(secret, "msg_1", now, BODY)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert Webhook(secret).verify(BODY, headers)["data"]["name"] == "Zürich"


def test_a_tampered_body_or_another_secret_fails() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"c_1", b"c_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_attempts_of_one_delivery_share_the_id_and_carry_their_own_timestamp() -> None:
    secret, now = new_secret(), int(time.time())
    first, retry = signed_headers(secret, "msg_7", now - 60, BODY), signed_headers(secret, "msg_7", now, BODY)
    assert first["webhook-id"] == retry["webhook-id"] == "msg_7"
    assert first["webhook-signature"] != retry["webhook-signature"]
    for headers in (first, retry):
        Webhook(secret).verify(BODY, headers)


def test_a_timestamp_outside_the_receivers_window_fails() -> None:
    secret = new_secret()
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, signed_headers(secret, "msg_1", int(time.time()) - 3600, BODY))


@pytest.mark.parametrize("msg_id", ["", "msg.1"])
def test_an_id_that_would_make_the_signed_content_ambiguous_is_refused(msg_id: str) -> None:
    with pytest.raises(ValueError, match="message id"):
        signed_headers(new_secret(), msg_id, int(time.time()), BODY)
