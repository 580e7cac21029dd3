"""A run's steps on connectors: the accounts they call with, the machine of a connector step
(``connectors.flow``), and the links they make, written with the run's progress (``write_links``) in the
same transaction, so that a link is kept exactly when the step's result is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procession.connectors.dropbox import Upload, export_csv, export_json
from procession.connectors.flow import Account, Machine, Made
from procession.connectors.hubspot import Upsert, properties_of
from procession.connectors.secrets import SecretsUnreadable, Vault
from procession.domain.automations import Automation
from procession.domain.connectors import Link
from procession.domain.expressions import compute
from procession.store.uow import UnitOfWork

if TYPE_CHECKING:
    from procession.domain.steps import Step
    from procession.engine.steps import Active

LINKED = "process.linked"  # the event of a link made or changed
_FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def connectors_of(automation: Automation) -> set[str]:
    return {s.config["connector"] for s in automation.steps if s.config.get("connector")}


def accounts(uow: UnitOfWork, vault: Vault, ids: set[str]) -> dict[str, Account | str]:
    """The connectors named, opened (or, for one that cannot be used, why)."""
    out: dict[str, Account | str] = {cid: f"connector {cid} no longer exists" for cid in ids}
    for cid, (connector, sealed) in uow.connectors.sealed_all(sorted(ids)).items():
        try:
            out[cid] = Account(connector, vault.open(sealed))
        except SecretsUnreadable as e:
            out[cid] = f"connector {connector.name}: {e}"
    return out


def account(active: Active, connector_id: str) -> Account:
    from procession.engine.steps import StepFailed

    found = active.accounts.get(connector_id)
    if isinstance(found, Account):
        return found
    raise StepFailed(found or f"connector {connector_id} no longer exists")


def machine(active: Active, step: Step, variables: dict[str, Any]) -> Machine:
    """The machine of one attempt of a connector step, its values computed now."""
    from procession.engine.steps import StepFailed, render

    config = step.config
    acct = account(active, config["connector"])
    cid = acct.connector.id
    if step.type == "hubspot.upsert":
        values = {name: compute(source, variables) for name, source in config["properties"].items()}
        properties = properties_of(values)
        if not properties:
            raise StepFailed("no property has a value to send")
        link = active.links.get((cid, config["object"]))
        return Upsert(acct, config["object"], properties, config.get("idProperty"), link)
    path = render(config["path"], variables)
    return Upload(
        acct, path, _content(active, config, variables), active.links.get((cid, Upload.object_type(path)))
    )


def _content(active: Active, config: dict[str, Any], variables: dict[str, Any]) -> bytes:
    from procession.engine.steps import StepFailed

    if config["content"] == "json":
        return export_json(variables["process"])
    if config["content"] == "csv":
        return export_csv(variables["process"])
    file_id = compute(config["file"], variables)
    path = active.files_dir / active.team_id / str(file_id) if active.files_dir else None
    if not isinstance(file_id, str) or not _FILE_ID.fullmatch(file_id) or path is None or not path.is_file():
        raise StepFailed(f"file gave {file_id!r}, not the id of a file uploaded to this team")
    return Path(path).read_bytes()


def keep(active: Active, connector_id: str, made: Made, now: int) -> None:
    """A link to what a step made or adopted: in the run's memory at once (a later step updates it), and
    to be written with the step's result."""
    key = (connector_id, made.object_type)
    before = active.links.get(key)
    link = Link(
        active.process.id, connector_id, made.object_type, made.external_id, made.url,
        before.first_synced_at if before else now, now, active.automation.id, active.run.id,
    )  # fmt: skip
    active.links[key] = link
    changed = before is None or (before.external_id, before.url) != (made.external_id, made.url)
    active.new_links.append((link, made if changed else None))


def write_links(uow: UnitOfWork, actives: list[Active], now: int) -> None:
    """The links the runs made since they last wrote, and an event on the process for each one new or
    changed (``process.linked``); the caller forgets them once committed."""
    made = [item for a in actives for item in a.new_links]
    if not made:
        return
    uow.links.put([link for link, _ in made])
    for link, what in made:
        if what is not None:
            uow.events.record(
                link.process_id,
                LINKED,
                {"connector": link.connector_id, "objectType": link.object_type, "externalId": link.external_id,
                 "url": link.url, "created": what.created, "adopted": what.adopted,
                 "automation": link.automation_id, "run": link.run_id},
                now=now,
            )  # fmt: skip
