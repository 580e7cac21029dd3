"""A fake HubSpot (CRM v3 objects API) for tests: a real HTTP server on a thread (``Receiver``) answering as
HubSpot does: records with string ids and string property values, contacts unique by email (a second
create is a 409 "Contact already exists. Existing ID: N"), search with EQ filters, 401 without its token,
429 with HubSpot's rate-limit headers when throttled. Its ledger (``records``) lets a test count objects.

    with FakeHubSpot(token="pat-1") as hs:
        ...  # a hubspot connector with baseUrl hs.url and credentials {"token": "pat-1"}
        hs.throttle(2)  # the next two requests get a 429
        assert len(hs.records("contacts")) == 1
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.fakes.receiver import Drop, Received, Receiver, Reply

OBJECT = re.compile(r"^/crm/v3/objects/(contacts|deals|tickets|companies)(?:/(search|[0-9]+))?$")
LIMIT_HEADERS = {
    "X-HubSpot-RateLimit-Daily": "500000",
    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    "X-HubSpot-RateLimit-Max": "150",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeHubSpot(Receiver):
    def __init__(self, token: str = "pat-na1-test-token") -> None:
        super().__init__()
        self.token = token
        self._ids = itertools.count(501)
        self._objects: dict[str, dict[str, dict[str, Any]]] = {}
        self._throttled = 0
        self._emails: dict[str, str] = {}  # a contact's email (lower case) -> its id
        self._lost = 0  # replies to lose after acting
        self._retry_after: str | None = None
        self._ledger_lock = threading.Lock()

    # --- for tests ------------------------------------------------------------------------------------
    def records(self, object_type: str) -> list[dict[str, Any]]:
        """The objects of a type held now (the ledger)."""
        with self._ledger_lock:
            return [json.loads(json.dumps(r)) for r in self._objects.get(object_type, {}).values()]

    def held(self, object_type: str) -> int:
        """How many objects of a type are held now."""
        with self._ledger_lock:
            return len(self._objects.get(object_type, {}))

    def add(self, object_type: str, properties: dict[str, str]) -> str:
        """An object made at HubSpot by someone else; its id."""
        with self._ledger_lock:
            return self._create(object_type, properties)["id"]

    def lose_replies(self, n: int) -> None:
        """Act on the next ``n`` requests, then close their connections without a reply."""
        with self._ledger_lock:
            self._lost = n

    def throttle(self, n: int, retry_after: str | None = "1") -> None:
        """The next ``n`` requests get a 429 (with ``Retry-After`` unless None: HubSpot may send none)."""
        with self._ledger_lock:
            self._throttled, self._retry_after = n, retry_after

    # --- HubSpot --------------------------------------------------------------------------------------
    def answer(self, received: Received, n: int) -> Reply | Drop:
        with self._ledger_lock:
            reply = self._answer(received)
            if self._lost > 0:
                self._lost -= 1
                return Drop()
            return reply

    def _answer(self, r: Received) -> Reply:
        if r.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")
        if self._throttled > 0:
            self._throttled -= 1
            headers = {"X-HubSpot-RateLimit-Remaining": "0"}
            if self._retry_after is not None:
                headers["Retry-After"] = self._retry_after
            body = {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                    "policyName": "TEN_SECONDLY_ROLLING", "requestId": str(uuid.uuid4())}  # fmt: skip
            return _json(429, body, headers)
        found = OBJECT.match(r.path)
        if found is None:
            return _error(404, f"No route for {r.method} {r.path}", "OBJECT_NOT_FOUND")
        object_type, rest = found.group(1), found.group(2)
        body: Any = json.loads(r.body) if r.body else {}
        objects = self._objects.setdefault(object_type, {})
        if r.method == "POST" and rest is None:
            invalid = _invalid(body)
            if invalid:
                return invalid
            email = (body["properties"].get("email") or "").lower()
            clash = self._by_email(object_type, email)
            if clash is not None:
                return _error(409, f"Contact already exists. Existing ID: {clash}", "CONFLICT")
            return _json(201, self._create(object_type, body["properties"]))
        if r.method == "POST" and rest == "search":
            return _json(200, self._search(object_type, body))
        if rest is None or rest == "search" or rest not in objects:
            return _error(404, "Object not found.", "OBJECT_NOT_FOUND")
        record = objects[rest]
        if r.method == "GET":
            return _json(200, record)
        if r.method == "PATCH":
            invalid = _invalid(body)
            if invalid:
                return invalid
            email = (body["properties"].get("email") or "").lower()
            clash = self._by_email(object_type, email)
            if clash is not None and clash != rest:
                return _error(409, f"Contact already exists. Existing ID: {clash}", "CONFLICT")
            if object_type == "contacts" and body["properties"].get("email"):
                self._emails.pop((record["properties"].get("email") or "").lower(), None)
            record["properties"].update(body["properties"])
            if object_type == "contacts" and body["properties"].get("email"):
                self._emails[body["properties"]["email"].lower()] = rest
            record["updatedAt"] = record["properties"]["lastmodifieddate"] = _now()
            return _json(200, record)
        return _error(405, "Method not allowed", "VALIDATION_ERROR")

    def _create(self, object_type: str, properties: dict[str, str]) -> dict[str, Any]:
        object_id, now = str(next(self._ids)), _now()
        record = {
            "id": object_id,
            "properties": {
                **properties,
                "hs_object_id": object_id,
                "createdate": now,
                "lastmodifieddate": now,
            },
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
        }
        self._objects.setdefault(object_type, {})[object_id] = record
        if object_type == "contacts" and properties.get("email"):
            self._emails[properties["email"].lower()] = object_id
        return record

    def _by_email(self, object_type: str, email: str) -> str | None:
        return self._emails.get(email) if object_type == "contacts" and email else None

    def _search(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        def matches(record: dict[str, Any]) -> bool:
            return any(
                all(
                    f.get("operator") == "EQ"
                    and record["properties"].get(f["propertyName"]) == f.get("value")
                    for f in group.get("filters", [])
                )
                for group in body.get("filterGroups", [])
            )

        found = [r for r in self._objects.get(object_type, {}).values() if matches(r)]
        limit = min(int(body.get("limit", 10)), 100)
        return {"total": len(found), "results": found[:limit]}


def _invalid(body: Any) -> Reply | None:
    properties = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(properties, dict):
        return _error(400, "Invalid input JSON: properties is required", "VALIDATION_ERROR")
    wrong = [k for k, v in properties.items() if not isinstance(v, str)]
    if wrong:
        return _error(400, f"Property values were not valid: {wrong}", "VALIDATION_ERROR")
    return None


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    out = {"content-type": "application/json;charset=utf-8", "X-HubSpot-Correlation-Id": str(uuid.uuid4()),
           **LIMIT_HEADERS, "X-HubSpot-RateLimit-Remaining": "149", **(headers or {})}  # fmt: skip
    return Reply(status, json.dumps(body).encode(), out)


def _error(status: int, message: str, category: str) -> Reply:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    return _json(status, body)
