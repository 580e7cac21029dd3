"""Connectors: a team's configured account at an external service (its kind, its base URL, what is not
secret, and which credentials are set), and links: what a step made there for a process. Credentials are
sealed by the store's caller (``connectors.secrets``): nothing here ever holds them in a public form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HUBSPOT, DROPBOX, HTTP = "hubspot", "dropbox", "http"


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
