"""Connector use cases: a team's accounts at external services (credentials write-only: sealed when
saved, never returned), and the links steps made for a process."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from pydantic import Field

from procession.connectors.outbound import check_url
from procession.connectors.secrets import Vault
from procession.domain.clock import new_id, now_ms
from procession.domain.connectors import KINDS, Connector
from procession.domain.errors import Conflict, FieldError, Invalid, NotFound
from procession.services.commands import Command, Integer
from procession.services.common import Caller
from procession.services.processes import find_process, load_procedure
from procession.store import tables as t
from procession.store.uow import UnitOfWork, UnitsOfWork


class ConnectorInput(Command):
    """A connector: ``kind`` (hubspot, dropbox, http), ``baseUrl`` (the service's by default; required for
    http), ``settings`` (hubspot: ``portalId``; dropbox: ``contentUrl``; http: ``authHeader``) and
    ``credentials`` (hubspot, dropbox: ``token``; http: ``auth``, the auth header's value): write-only,
    merged into those set (a null removes one). Send the ``version`` read to get a 409 on a concurrent
    change."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["hubspot", "dropbox", "http"]
    baseUrl: str | None = Field(default=None, max_length=500)
    settings: dict[str, str | int | None] = Field(default_factory=dict)
    credentials: dict[str, str | None] = Field(default_factory=dict)
    version: Integer | None = Field(default=None, ge=1, description="the version read; 409 if it changed")


def create_connector(uows: UnitsOfWork, team_id: str, cmd: ConnectorInput, *, vault: Vault) -> dict[str, Any]:
    """Add a connector to the team."""
    with uows.write(team_id) as uow:
        if uow.connectors.get(cmd.name) is not None:
            raise Conflict(f"there is a connector {cmd.name!r}", field="name")
        now = now_ms()
        connector, credentials = _checked(cmd, new_id(), {}, version=1, created_at=now, now=now)
        uow.connectors.add(connector, vault.seal(credentials) if credentials else None)
        uow.commit()
        return connector.public()


def update_connector(
    uows: UnitsOfWork, team_id: str, ref: str, cmd: ConnectorInput, *, vault: Vault
) -> dict[str, Any]:
    """Change a connector: its name, base URL, settings, and the credentials sent (the others kept)."""
    with uows.write(team_id) as uow:
        existing, sealed = _sealed(uow, ref)
        if cmd.version is not None and cmd.version != existing.version:
            raise Conflict(
                f"the connector is at version {existing.version}", field="version", code="stale_version"
            )
        if cmd.kind != existing.kind:
            raise Invalid.one("kind_fixed", f"{existing.name} is a {existing.kind} connector", "kind")
        clash = uow.connectors.get(cmd.name)
        if clash is not None and clash.id != existing.id:
            raise Conflict(f"there is a connector {cmd.name!r}", field="name")
        connector, credentials = _checked(
            cmd, existing.id, vault.open(sealed), version=existing.version + 1,
            created_at=existing.created_at, now=now_ms(),
        )  # fmt: skip
        if not uow.connectors.update(
            connector, vault.seal(credentials) if credentials else None, expected_version=existing.version
        ):
            raise Conflict("the connector changed meanwhile; read it again", code="stale_version")
        uow.commit()
        return connector.public()


def list_connectors(uows: UnitsOfWork, team_id: str) -> list[dict[str, Any]]:
    with uows.read(team_id) as uow:
        return [c.public() for c in uow.connectors.all()]


def get_connector(uows: UnitsOfWork, team_id: str, ref: str) -> dict[str, Any]:
    with uows.read(team_id) as uow:
        return _sealed(uow, ref)[0].public()


def delete_connector(uows: UnitsOfWork, team_id: str, ref: str) -> dict[str, Any]:
    """Remove a connector no automation names (409 otherwise); the links made through it stay, as history."""
    with uows.write(team_id) as uow:
        connector = _sealed(uow, ref)[0]
        users = [
            f"{p.short_id}.{a.name}"
            for p in uow.procedures.list()
            for a in p.automations
            if any(s.config.get("connector") == connector.id for s in a.steps)
        ]
        if users:
            raise Conflict(
                f"{connector.name} is used by the automations {', '.join(sorted(users))}",
                code="connector_in_use",
            )
        uow.connectors.delete(connector.id)
        uow.commit()
        return {"id": connector.id, "deleted": True}


def reseal_credentials(uows: UnitsOfWork, *, vault: Vault) -> int:
    """Every team's connectors' credentials encrypted again with the first key (after a new key was put
    first in ``PROCESSION_SECRET_KEYS``; the old one can be dropped afterwards): how many were."""
    with uows.engine.connect() as conn:
        teams = list(conn.scalars(sa.select(t.teams.c.id)))
    done = 0
    for team_id in teams:
        with uows.write(team_id) as uow:
            for connector in uow.connectors.all():
                found = uow.connectors.sealed(connector.id)
                if found is not None and found[1]:
                    uow.connectors.update(
                        connector, vault.reseal(found[1]), expected_version=connector.version
                    )
                    done += 1
            uow.commit()
    return done


def process_links(
    uows: UnitsOfWork, caller: Caller, procedure_ref: str, ref: tuple[str, ...]
) -> list[dict[str, Any]]:
    """What steps made elsewhere for the process: connector, object type, external id, URL, syncs."""
    with uows.read(caller.team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        process = find_process(uow, procedure, ref, include_deleted=True)
        names = {c.id: c.name for c in uow.connectors.all()}
        links = uow.links.of_processes([process.id]).get(process.id, [])
        return [link.public(names.get(link.connector_id)) for link in links]


def _sealed(uow: UnitOfWork, ref: str) -> tuple[Connector, str | None]:
    found = uow.connectors.sealed(ref)
    if found is None:
        raise NotFound(f"no connector {ref!r}")
    return found


def _checked(
    cmd: ConnectorInput,
    connector_id: str,
    credentials: dict[str, str],
    *,
    version: int,
    created_at: int,
    now: int,
) -> tuple[Connector, dict[str, str]]:
    """The connector a body describes, and its credentials with the body's merged in; ``Invalid`` listing
    every problem."""
    kind, errors = KINDS[cmd.kind], []
    base_url = (cmd.baseUrl or kind.base_url or "").rstrip("/")
    if not base_url:
        errors.append(FieldError("required", f"a {cmd.kind} connector needs a baseUrl", "baseUrl"))
    for name, where in ((base_url, "baseUrl"), (cmd.settings.get("contentUrl"), "settings.contentUrl")):
        if name:
            try:
                check_url(str(name))
            except ValueError as e:
                errors.append(FieldError("invalid_url", str(e), where))
    for key in sorted(set(cmd.settings) - set(kind.settings)):
        errors.append(
            FieldError("unknown_field", f"a {cmd.kind} connector has no setting {key!r}", f"settings.{key}")
        )
    for key in sorted(set(cmd.credentials) - set(kind.credentials)):
        errors.append(
            FieldError(
                "unknown_field", f"a {cmd.kind} connector has no credential {key!r}", f"credentials.{key}"
            )
        )
    if errors:
        raise Invalid(errors)
    merged = {**credentials, **{k: v for k, v in cmd.credentials.items() if v is not None}}
    merged = {
        k: v for k, v in merged.items() if k in kind.credentials and cmd.credentials.get(k, v) is not None
    }
    settings = {k: v for k, v in (kind.settings | cmd.settings).items() if v is not None}
    connector = Connector(
        connector_id, cmd.name, cmd.kind, base_url, settings, tuple(sorted(merged)), version, created_at, now
    )
    return connector, merged
