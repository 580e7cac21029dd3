"""Connectors: a team's configured account at an external service (its kind, its base URL, what is not
secret, and which credentials are set), and links: what a step made there for a process. Credentials are
sealed by the store's caller (``connectors.secrets``): nothing here ever holds them in a public form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

HUBSPOT, DROPBOX, HTTP = "hubspot", "dropbox", "http"
HUBSPOT_OBJECTS = ("contacts", "deals", "tickets")
EXPORTS = ("json", "csv", "file")  # what a dropbox.upload sends


class Checker(Protocol):
    """What checks a step (``automations._Checker``): collects errors, checks CEL and templates."""

    def error(self, code: str, message: str, where: str) -> None: ...
    def cel(self, source: Any, where: str, what: str) -> str | None: ...
    def template(self, text: Any, where: str, what: str) -> str | None: ...


@dataclass(frozen=True)
class Kind:
    """What a kind of connector needs: its base URL by default, its credentials, its settings."""

    name: str
    base_url: str | None  # None: one must be given
    credentials: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)  # name -> default


KINDS = {
    HUBSPOT: Kind(HUBSPOT, "https://api.hubapi.com", ("token",), {"portalId": None}),
    # Dropbox answers RPC routes on one host and uploads on another (``contentUrl``)
    DROPBOX: Kind(DROPBOX, "https://api.dropboxapi.com", ("token",), {"contentUrl": None}),
    HTTP: Kind(HTTP, None, ("auth",), {"authHeader": "Authorization"}),
}
DROPBOX_CONTENT = "https://content.dropboxapi.com"


@dataclass(frozen=True)
class Connector:
    id: str
    name: str
    kind: str
    base_url: str
    settings: dict[str, Any]
    credential_fields: tuple[str, ...]  # the names of the credentials set (never their values)
    version: int
    created_at: int
    updated_at: int

    def public(self) -> dict[str, Any]:
        """The API's form: which credentials are set, never what they are."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "baseUrl": self.base_url,
            "settings": self.settings,
            "credentials": {name: name in self.credential_fields for name in KINDS[self.kind].credentials},
            "version": self.version,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    @property
    def content_url(self) -> str:
        """Dropbox's upload host: set, or the default's when the base URL is the default, else the base."""
        if self.settings.get("contentUrl"):
            return str(self.settings["contentUrl"]).rstrip("/")
        return DROPBOX_CONTENT if self.base_url == KINDS[DROPBOX].base_url else self.base_url

    def auth_headers(self, credentials: dict[str, str]) -> dict[str, str]:
        """The headers that authenticate a call with ``credentials`` (opened for this call only)."""
        if self.kind == HTTP:
            value = credentials.get("auth")
            return {str(self.settings.get("authHeader") or "Authorization"): value} if value else {}
        token = credentials.get("token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class Link:
    """An object a step made (or adopted) at a connector for a process, one per object type there."""

    process_id: str
    connector_id: str
    object_type: str
    external_id: str
    url: str | None
    first_synced_at: int
    last_synced_at: int
    automation_id: str | None = None
    run_id: int | None = None

    def public(self, connector_name: str | None = None) -> dict[str, Any]:
        return {
            "connectorId": self.connector_id,
            "connector": connector_name,
            "objectType": self.object_type,
            "externalId": self.external_id,
            "url": self.url,
            "firstSyncedAt": self.first_synced_at,
            "lastSyncedAt": self.last_synced_at,
            "automationId": self.automation_id,
            "runId": self.run_id,
        }


# --- the steps on connectors, checked when their automation is saved ------------------------------


def check_connector(
    c: Checker, raw: dict[str, Any], at: str, what: str, connectors: dict[str, Connector], kind: str | None
) -> Connector | None:
    """The connector a step names (by name or id), of the kind the step needs (any, for ``http``)."""
    found = connectors.get(str(raw.get("connector")))
    if found is None:
        c.error("unknown_connector", f"{what}: no connector {raw.get('connector')!r}", f"{at}.connector")
    elif kind is not None and found.kind != kind:
        c.error(
            "wrong_connector",
            f"{what}: {found.name} is a {found.kind} connector, not {kind}",
            f"{at}.connector",
        )
    else:
        return found
    return None


def check_hubspot(c: Checker, raw: dict[str, Any], at: str, what: str) -> dict[str, Any]:
    """``object`` (contacts, deals, tickets), ``properties`` (name -> CEL, sent as strings) and the
    ``idProperty`` whose value finds the object already there (contacts: ``email`` by default)."""
    obj = raw.get("object")
    if obj not in HUBSPOT_OBJECTS:
        c.error(
            "invalid_value", f"{what}: object must be one of {', '.join(HUBSPOT_OBJECTS)}", f"{at}.object"
        )
    properties = raw.get("properties")
    if not isinstance(properties, dict) or not properties:
        c.error("invalid_value", f"{what}: properties is an object of CEL expressions", f"{at}.properties")
        properties = {}
    for name, source in properties.items():
        if not re.fullmatch(r"[a-z0-9_]{1,100}", str(name)):
            c.error("invalid_value", f"{what}: {name!r} is not a HubSpot property name", f"{at}.properties")
        c.cel(source, f"{at}.properties.{name}", f"{what} properties.{name}")
    id_property = raw.get("idProperty", "email" if obj == "contacts" else None)
    if id_property is not None and id_property not in properties:
        c.error(
            "invalid_value",
            f"{what}: idProperty {id_property!r} must be one of the properties sent",
            f"{at}.idProperty",
        )
    return {"object": obj, "properties": properties, "idProperty": id_property}


def check_dropbox(c: Checker, raw: dict[str, Any], at: str, what: str) -> dict[str, Any]:
    """``path`` (a template, /…), ``content``: the process exported as ``json`` or ``csv``, or a ``file``
    uploaded to the process (``file``: CEL giving its id, e.g. ``process.data.contract``)."""
    path = c.template(raw.get("path"), f"{at}.path", f"{what} path")
    if path is not None and not path.startswith("/"):
        c.error("invalid_value", f"{what}: path is a Dropbox path, starting with /", f"{at}.path")
    content = raw.get("content", "json")
    if content not in EXPORTS:
        c.error("invalid_value", f"{what}: content must be one of {', '.join(EXPORTS)}", f"{at}.content")
    file = c.cel(raw.get("file"), f"{at}.file", f"{what} file")
    if (content == "file") != (file is not None):
        c.error("invalid_value", f"{what}: file (a CEL file id) goes with content: file, only", f"{at}.file")
    return {"path": path, "content": content, "file": file}
