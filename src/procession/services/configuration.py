"""Configuration use cases: entities, procedures, users, pods, and the team's whole configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema
from sqlalchemy.exc import IntegrityError

from procession.domain.attributes import TYPES, Attribute
from procession.domain.clock import new_id, now_ms
from procession.domain.errors import Conflict, FieldError, Invalid, NotFound
from procession.domain.expressions import compile_formula
from procession.domain.procedure import Entity, Procedure, Schema, State
from procession.domain.requirements import parse_requirements
from procession.engine.indexing import index_later
from procession.services.commands import AttributeInput, EntityInput, PodInput, ProcedureInput, UserInput
from procession.store.indexes import NOT_INDEXABLE
from procession.store.uow import UnitsOfWork

ENUMS = ("stringEnum", "integerEnum", "multiStringEnum", "multiIntegerEnum")


def _attributes(
    inputs: list[AttributeInput], existing: Schema | None, *, procedure: bool = False
) -> list[Attribute]:
    """Attributes from their input: an ``id`` keeps an existing attribute, so its shortId may be renamed."""
    errors: list[FieldError] = []
    out: list[Attribute] = []
    for i, a in enumerate(inputs):
        where = f"attributes[{i}]"
        old = existing.by_id.get(a.id) if existing and a.id else None
        if a.id and old is None:
            errors.append(FieldError("unknown_attribute", f"no attribute with id {a.id!r}", f"{where}.id"))
        elif old is not None and old.type != a.type:
            errors.append(
                FieldError(
                    "type_change", f"{a.shortId}: the type of an attribute cannot change", f"{where}.type"
                )
            )
        if a.type not in TYPES:
            errors.append(FieldError("unknown_type", f"{a.type!r} is not an attribute type", f"{where}.type"))
        if a.type in ENUMS and not a.options:
            errors.append(
                FieldError("options_required", f"{a.shortId}: an enum needs options", f"{where}.options")
            )
        if a.indexed and (a.type in NOT_INDEXABLE or not procedure):
            why = (
                "an entity's attributes are not indexed"
                if not procedure
                else "its values are lists or objects"
            )
            errors.append(
                FieldError("not_indexable", f"{a.shortId} cannot be indexed: {why}", f"{where}.indexed")
            )
        if a.formula is not None:
            try:
                compile_formula(a.formula)
            except ValueError as e:
                errors.append(FieldError("invalid_formula", f"{a.shortId}: {e}", f"{where}.formula"))
        if "schema" in a.config:
            try:
                jsonschema.validators.validator_for(a.config["schema"]).check_schema(a.config["schema"])
            except jsonschema.SchemaError as e:
                errors.append(
                    FieldError("invalid_schema", f"{a.shortId}: {e.message}", f"{where}.config.schema")
                )
        out.append(
            Attribute(
                id=old.id if old else new_id(),
                short_id=a.shortId,
                type=a.type,
                label=a.label,
                required=a.required,
                options=a.options,
                config=a.config,
                formula=a.formula,
                indexed=a.indexed,
            )
        )
    errors += _duplicates([a.short_id for a in out], "attributes")
    if errors:
        raise Invalid(errors)
    return out


def _duplicates(short_ids: list[str], where: str) -> list[FieldError]:
    seen: set[str] = set()
    dupes = {s for s in short_ids if s in seen or seen.add(s)}  # type: ignore[func-returns-value]
    return [FieldError("duplicate_short_id", f"{s!r} appears twice", where) for s in sorted(dupes)]


def _primary_key(attributes: list[Attribute], short: str | None) -> str | None:
    if short is None:
        return None
    found = next((a for a in attributes if a.short_id == short), None)
    if found is None or found.derived:
        raise Invalid.one(
            "unknown_attribute", f"primaryKey {short!r} is not an input attribute", "primaryKey"
        )
    return found.id


def define_entity(
    uows: UnitsOfWork, team_id: str, cmd: EntityInput, *, ref: str | None = None
) -> dict[str, Any]:
    """Create an entity, or replace the definition of the entity ``ref``."""
    with uows.write(team_id) as uow:
        existing = _existing(uow.entities.get(ref), ref) if ref else None
        attributes = _attributes(cmd.attributes, existing)
        entity = Entity(
            id=existing.id if existing else new_id(),
            short_id=cmd.shortId,
            label=cmd.label,
            attributes=attributes,
            primary_key=_primary_key(attributes, cmd.primaryKey),
        )
        if uow.entities.get(cmd.shortId) not in (None, existing):
            raise Conflict(f"an entity {cmd.shortId!r} exists", field="shortId")
        expected = existing.version if existing else None
        entity.version = uow.entities.save(entity, expected_version=expected)
        _saved(entity.version, cmd.shortId, expected)
        if existing and existing.primary_key != entity.primary_key:
            _rekey(lambda: uow.records.rekey(entity), cmd.shortId, "records")
        uow.commit()
        return entity.to_dict()


def define_procedure(
    uows: UnitsOfWork, team_id: str, cmd: ProcedureInput, *, ref: str | None = None
) -> dict[str, Any]:
    """Create a procedure, or replace the definition of procedure ``ref`` (ids keep attributes and states)."""
    with uows.write(team_id) as uow:
        existing = _existing(uow.procedures.get(ref), ref) if ref else None
        attributes = _attributes(cmd.attributes, existing, procedure=True)
        states = _states(cmd, existing)
        by_short = {s.short_id: s.id for s in states}
        errors: list[FieldError] = []

        def state(short: str, where: str) -> str:
            if short not in by_short:
                errors.append(FieldError("unknown_state", f"no state {short!r}", where))
            return by_short.get(short, "")

        transitions = {
            state(k, f"transitions.{k}"): [state(t, f"transitions.{k}") for t in v]
            for k, v in cmd.transitions.items()
        }
        initial = state(cmd.initialState, "initialState") if cmd.initialState else states[0].id
        entity = _ref(uow.entities.get(cmd.entity), cmd.entity, "entity", errors) if cmd.entity else None
        parent = (
            _ref(uow.procedures.get(cmd.parentProcedure), cmd.parentProcedure, "parentProcedure", errors)
            if cmd.parentProcedure
            else None
        )
        if errors:
            raise Invalid(errors)
        procedure = Procedure(
            id=existing.id if existing else new_id(),
            short_id=cmd.shortId,
            label=cmd.label,
            attributes=attributes,
            primary_key=_primary_key(attributes, cmd.primaryKey),
            states=states,
            initial_state=initial,
            transitions=transitions,
            entity=entity,
            parent=parent,
            automations=existing.automations if existing else [],  # edited on their own (``automations``)
        )
        if cmd.requirements is None:
            procedure.requirements = existing.requirements if existing else []
        else:
            record = uow.entities.get(entity) if entity else None
            procedure.requirements = parse_requirements(
                cmd.requirements,
                state_id=procedure.state_id,
                attributes={a.short_id for a in attributes},
                record_attributes={a.short_id for a in record.attributes} if record else None,
            )
        if parent == procedure.id:
            raise Invalid.one("invalid_parent", "a procedure cannot be its own parent", "parentProcedure")
        if uow.procedures.get(cmd.shortId) not in (None, existing):
            raise Conflict(f"a procedure {cmd.shortId!r} exists", field="shortId")
        expected = None if existing is None else (cmd.version or existing.version)
        procedure.version = uow.procedures.save(procedure, expected_version=expected)
        _saved(procedure.version, cmd.shortId, expected)
        if existing and existing.primary_key != procedure.primary_key:
            _rekey(lambda: uow.processes.rekey(procedure), cmd.shortId, "processes")
        for attr in attributes:
            if attr.generated:
                uow.procedures.ensure_counter(procedure.id, attr.id, int(attr.config.get("start", 1)))
        index_later(uow, existing, procedure)
        ready = uow.procedures.index_states(procedure)
        uow.commit()
        return procedure.to_dict() | {"indexes": ready}


def _saved(version: int, short_id: str, expected: int | None) -> None:
    """A definition saved over a version that changed meanwhile (version 0) is a conflict."""
    if not version:
        raise Conflict(
            f"{short_id} changed since version {expected}; read it again",
            field="version",
            code="stale_version",
        )


def _rekey(rekey: Callable[[], None], short_id: str, rows: str) -> None:
    """Look existing rows up by a new primary key; a value two of them share is a conflict."""
    try:
        rekey()
    except IntegrityError:
        raise Conflict(
            f"some {rows} of {short_id} share a value of the new primary key",
            field="primaryKey",
            code="duplicate_primary_key",
        ) from None
    except ValueError as e:
        raise Invalid.one(
            "invalid_value", f"some {rows} of {short_id} cannot be keyed by it: {e}", "primaryKey"
        ) from None


def _existing(found: Any, ref: str) -> Any:
    if found is None:
        raise NotFound(f"no such configuration object {ref!r}")
    return found


def _ref(found: Any, ref: str, where: str, errors: list[FieldError]) -> str | None:
    if found is None:
        errors.append(FieldError("unknown_reference", f"{ref!r} does not exist", where))
        return None
    return str(found.id)


def _states(cmd: ProcedureInput, existing: Procedure | None) -> list[State]:
    errors = _duplicates([s.shortId for s in cmd.states], "states")
    states = []
    for i, s in enumerate(cmd.states):
        if s.id and (existing is None or s.id not in existing.states_by_id):
            errors.append(FieldError("unknown_state", f"no state with id {s.id!r}", f"states[{i}].id"))
        states.append(State(id=s.id or new_id(), short_id=s.shortId, label=s.label))
    if errors:
        raise Invalid(errors)
    return states


def add_user(uows: UnitsOfWork, team_id: str, cmd: UserInput) -> dict[str, Any]:
    """Add a user; ``cmd.id`` chooses its id, free whatever other teams chose (ids are per team)."""
    with uows.write(team_id) as uow:
        if uow.users.id_of(cmd.username) is not None:
            raise Conflict(f"user {cmd.username!r} exists", field="username")
        if cmd.id and uow.users.id_of(cmd.id) is not None:
            raise Conflict(f"a user of this team has the id or username {cmd.id!r}", field="id")
        user = {"id": cmd.id or new_id(), "username": cmd.username, "name": cmd.name, "role": cmd.role}
        uow.users.add(created_at=now_ms(), **user)
        uow.commit()
        return user


def add_pod(uows: UnitsOfWork, team_id: str, cmd: PodInput) -> dict[str, Any]:
    with uows.write(team_id) as uow:
        if uow.pods.id_of(cmd.shortId) is not None:
            raise Conflict(f"pod {cmd.shortId!r} exists", field="shortId")
        members = []
        for i, ref in enumerate(cmd.members):
            user_id = uow.users.id_of(ref)
            if user_id is None:
                raise Invalid.one("unknown_user", f"{ref!r} is not a user of this team", f"members[{i}]")
            members.append(user_id)
        pod = {"id": new_id(), "shortId": cmd.shortId, "name": cmd.name, "members": members}
        uow.pods.add(id=pod["id"], short_id=cmd.shortId, name=cmd.name, members=members)
        uow.commit()
        return pod


def team_config(uows: UnitsOfWork, team_id: str) -> dict[str, Any]:
    """Everything a client needs to map shortIds to ids."""
    with uows.read(team_id) as uow:
        procedures = uow.procedures.list()
        return {
            "procedures": [p.to_dict() for p in procedures],
            "entities": [e.to_dict() for e in uow.entities.list()],
            "attributeTypes": sorted(TYPES),
            "attributes": [
                {**a.to_dict(), "procedure": p.id} for p in procedures for a in p.attributes if not a.derived
            ],
            "derivedAttributes": [
                {**a.to_dict(), "procedure": p.id} for p in procedures for a in p.attributes if a.derived
            ],
            "pods": uow.pods.list(),
            "users": uow.users.list(),
            "roles": ["admin", "member"],
        }


def get_procedure(uows: UnitsOfWork, team_id: str, ref: str) -> dict[str, Any]:
    """One procedure, with ids and shortIds."""
    with uows.read(team_id) as uow:
        found = uow.procedures.get(ref)
        if found is None:
            raise NotFound(f"no procedure {ref!r}")
        return found.to_dict() | {"indexes": uow.procedures.index_states(found)}
