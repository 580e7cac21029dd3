"""HubSpot's CRM v3 objects API: ``hubspot.upsert`` creates or updates a contact, deal or ticket.

The step, as calls (each safe to make again, so a step retried or a run resumed after a crash makes
nothing twice)::

    linked to the process already  -> PATCH /crm/v3/objects/{type}/{id}         (404: the link is stale: below)
    an idProperty to search by     -> POST  /crm/v3/objects/{type}/search (EQ)  found: PATCH it, else create
    create                         -> POST  /crm/v3/objects/{type}
                                      409 "… Existing ID: N" (a contact's email): PATCH N, adopted

Contacts are found by their ``email`` through the 409 HubSpot answers a second create with (no search: it
has a rate limit of its own); other objects by a search on the ``idProperty`` named, when one is. Every
property value is sent as a string; a null is left out.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from procession.connectors.flow import (
    Account,
    Done,
    Fail,
    Made,
    Next,
    Retry,
    Verdict,
    as_text,
    json_body,
    recorded,
)
from procession.connectors.outbound import Call, Reply, retry_after_ms, transient
from procession.domain.connectors import Link

EXISTING = re.compile(r"Existing ID:\s*(\d+)")
TYPE_IDS = {"contacts": "0-1", "deals": "0-3", "tickets": "0-5"}
RATE_LIMITED_MS = 10_000  # a 429 without Retry-After: as HubSpot's own client waits (1 s for a search)
SEARCH_LIMITED_MS = 1_000


def properties_of(values: dict[str, Any]) -> dict[str, str]:
    """Computed values as HubSpot takes them: strings, nulls left out."""
    return {name: as_text(value) for name, value in values.items() if value is not None}


def record_url(account: Account, object_type: str, object_id: str) -> str:
    """Where a person finds the object: its page in HubSpot when the portal is known, else its API URL."""
    portal = account.connector.settings.get("portalId")
    if portal:
        return f"https://app.hubspot.com/contacts/{portal}/record/{TYPE_IDS[object_type]}/{object_id}"
    return account.connector.url(f"/crm/v3/objects/{object_type}/{object_id}")


class Upsert:
    """One attempt of a ``hubspot.upsert`` step."""

    def __init__(
        self,
        account: Account,
        object_type: str,
        properties: dict[str, str],
        id_property: str | None,
        link: Link | None,
    ) -> None:
        self.account, self.object_type, self.properties = account, object_type, properties
        self.id_property = id_property if properties.get(id_property or "") else None
        self.target: str | None = link.external_id if link else None  # the object to update
        self.linked = link is not None
        self.adopted = False
        if self.target:
            self.phase = "update"
        elif self.id_property and not (object_type == "contacts" and self.id_property == "email"):
            self.phase = "search"
        else:
            self.phase = "create"

    def call(self, deadline_s: float) -> tuple[Call, dict[str, Any]]:
        base = f"/crm/v3/objects/{self.object_type}"
        body: dict[str, Any]
        if self.phase == "update":
            method, path, body = "PATCH", f"{base}/{self.target}", {"properties": self.properties}
        elif self.phase == "search":
            assert self.id_property is not None
            method, path = "POST", f"{base}/search"
            body = {
                "filterGroups": [
                    {
                        "filters": [
                            {
                                "propertyName": self.id_property,
                                "operator": "EQ",
                                "value": self.properties[self.id_property],
                            }
                        ]
                    }
                ],
                "properties": [self.id_property],
                "limit": 1,
            }
        else:
            method, path, body = "POST", base, {"properties": self.properties}
        secret = self.account.headers()
        headers = {**secret, "Content-Type": "application/json", "Accept": "application/json"}
        call = Call(method, self.account.connector.url(path), headers, orjson.dumps(body), deadline_s)
        return call, recorded(call, secret)

    def judge(self, reply: Reply, now: int) -> Verdict:
        body = json_body(reply)
        phase = self.phase
        if 200 <= reply.status < 300 and isinstance(body, dict):
            if phase == "search":
                results = body.get("results") or []
                if results:
                    self.target, self.adopted, self.phase = str(results[0]["id"]), True, "update"
                    return Next({"found": self.target})
                self.phase = "create"
                return Next({"found": None})
            object_id = str(body.get("id") or self.target)
            made = Made(
                self.object_type,
                object_id,
                record_url(self.account, self.object_type, object_id),
                created=phase == "create",
                adopted=self.adopted,
            )
            output = {
                "id": object_id,
                "object": self.object_type,
                "created": made.created,
                "adopted": made.adopted,
                "url": made.url,
                "properties": body.get("properties") or {},
            }
            return Done(output, made)
        message = _message(body, reply)
        if reply.status == 409 and phase == "create":
            existing = EXISTING.search(message)
            if existing:  # it is there already (made by an earlier attempt, or by someone else): adopt it
                self.target, self.adopted, self.phase = existing.group(1), True, "update"
                return Next({"existing": self.target})
        if reply.status == 404 and phase == "update" and self.linked:  # the linked object is gone
            self.linked, self.target = False, None
            self.phase = "search" if self.id_property and self.object_type != "contacts" else "create"
            return Next({"stale_link": True})
        if reply.status == 401:
            return Fail(f"HubSpot refused the connector's credentials (401): {message}")
        if transient(reply.status):
            after = retry_after_ms(reply.headers, now)
            if reply.status == 429 and after is None:
                after = SEARCH_LIMITED_MS if phase == "search" else RATE_LIMITED_MS
            return Retry(f"HubSpot {reply.status}: {message}", after)
        return Fail(f"HubSpot {reply.status} on {phase}: {message}")


def _message(body: Any, reply: Reply) -> str:
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:500]
    return reply.body[:200].decode("utf-8", "replace")
