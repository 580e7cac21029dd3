"""The schema: SQLAlchemy Core tables (no ORM objects on hot paths). Migrations live in ``migrations/``."""

from __future__ import annotations

from dataclasses import fields

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from procession.domain.process import Process

metadata = sa.MetaData()

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
ID = sa.String(36)


def _id() -> sa.Column[str]:
    return sa.Column("id", ID, primary_key=True)


def _team() -> sa.Column[str]:
    return sa.Column("team_id", ID, sa.ForeignKey("teams.id"), nullable=False)


teams = sa.Table(
    "teams",
    metadata,
    _id(),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("event_retention_days", sa.Integer),  # events older than this are removed; None: kept
)

users = sa.Table(  # a user's id is its team's: a client may choose it, whatever other teams chose
    "users",
    metadata,
    sa.Column("id", ID, nullable=False),
    _team(),
    sa.Column("username", sa.String(100), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("password_hash", sa.String(200)),  # argon2; none: the user cannot sign in to the console
    sa.PrimaryKeyConstraint("team_id", "id"),
    sa.UniqueConstraint("team_id", "username"),
)

pods = sa.Table(
    "pods",
    metadata,
    _id(),
    _team(),
    sa.Column("short_id", sa.String(100), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("members", JSON, nullable=False),
    sa.UniqueConstraint("team_id", "short_id"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _id(),
    _team(),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(12), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("user_id", ID),
    sa.Column("label", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger),
    sa.ForeignKeyConstraint(["team_id", "user_id"], ["users.team_id", "users.id"]),
)

entities = sa.Table(
    "entities",
    metadata,
    _id(),
    _team(),
    sa.Column("short_id", sa.String(100), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("definition", JSON, nullable=False),
    sa.UniqueConstraint("team_id", "short_id"),
)

procedures = sa.Table(
    "procedures",
    metadata,
    _id(),
    _team(),
    sa.Column("short_id", sa.String(100), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("definition", JSON, nullable=False),
    sa.UniqueConstraint("team_id", "short_id"),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("procedure_id", ID, sa.ForeignKey("procedures.id"), primary_key=True),
    sa.Column("attribute_id", ID, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

records = sa.Table(
    "records",
    metadata,
    _id(),
    _team(),
    sa.Column("entity_id", ID, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("pk_value", sa.String(500)),
    sa.Column("data", JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ux_records_pk", "entity_id", "pk_value", unique=True),
)

processes = sa.Table(
    "processes",
    metadata,
    _id(),
    _team(),
    sa.Column("procedure_id", ID, sa.ForeignKey("procedures.id"), nullable=False),
    sa.Column("pk_value", sa.String(500)),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("state_id", ID),
    sa.Column("data", JSON, nullable=False),
    sa.Column("derived_data", JSON, nullable=False),
    sa.Column("created_by", ID),
    sa.Column("assigned_to", ID),
    sa.Column("belongs_to", ID),
    sa.Column("entity_id", ID),
    sa.Column("record_id", ID),
    sa.Column("next_action_at", sa.BigInteger),
    sa.Column("completed_at", sa.BigInteger),
    sa.Column("cancelled_at", sa.BigInteger),
    sa.Column("primary_booking", ID),
    sa.Column("parent_procedure_id", ID),
    sa.Column("parent_process_id", ID),
    sa.Column("first_assigned_to", ID),
    sa.Column("first_assigned_at", sa.BigInteger),
    sa.Column("last_assigned_at", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("is_deleted", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ux_processes_pk", "procedure_id", "pk_value", unique=True),
    sa.Index("ix_processes_state", "procedure_id", "state_id", "updated_at", "id"),
    sa.Index("ix_processes_status", "procedure_id", "status", "updated_at", "id"),
    sa.Index("ix_processes_assignee", "procedure_id", "assigned_to", "updated_at", "id"),
    sa.Index("ix_processes_updated", "procedure_id", "updated_at", "id"),
    sa.Index("ix_processes_created", "procedure_id", "created_at", "id"),
    sa.Index("ix_processes_record", "procedure_id", "record_id", "updated_at", "id"),  # a record's processes
)

# a Process's field -> its column: the field's name, or with "_id" for a reference (state -> state_id)
PROCESS_COLUMNS = {f.name: f.name if f.name in processes.c else f"{f.name}_id" for f in fields(Process)}

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _team(),
    sa.Column("process_id", ID, nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("actor", ID),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_events_process", "process_id", "id"),
    sa.Index("ix_events_team_created", "team_id", "created_at"),  # retention, for teams that set one
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("team_id", ID, sa.ForeignKey("teams.id"), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("team_id", ID, sa.ForeignKey("teams.id"), primary_key=True),
    sa.Column("id", ID, primary_key=True),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("filetype", sa.String(100), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    _id(),
    _team(),
    sa.Column("procedure_id", ID, sa.ForeignKey("procedures.id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("chunks_total", sa.Integer, nullable=False),
    sa.Column("chunks_done", sa.Integer, nullable=False),
    sa.Column("failed", sa.Boolean, nullable=False),
    sa.Column("created_by", ID),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("finished_at", sa.BigInteger),
    # entries by status, kept with them (NOT_STARTED: the rest of ``total``), so reading a job counts nothing
    sa.Column("invalid", sa.Integer, nullable=False, server_default="0"),
    sa.Column("succeeded", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errored", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_jobs_finished", "team_id", "finished_at"),  # retention
)

job_entries = sa.Table(
    "job_entries",
    metadata,
    sa.Column("job_id", ID, sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("item", JSON, nullable=False),
    sa.Column("change", JSON),
    sa.Column("process_id", ID),
    sa.Column("error", JSON),
    sa.Index("ix_job_entries_status", "job_id", "status", "idx"),
)

tasks = sa.Table(  # durable background work of every kind; the task engine only wakes it
    "tasks",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _team(),
    sa.Column("kind", sa.String(40), nullable=False),  # its handler: bulk.chunk, ...
    sa.Column("ref", sa.String(200), nullable=False),  # what it works on (a job's id)
    sa.Column("part", sa.Integer, nullable=False),  # which part of it (a chunk's number)
    sa.Column("args", JSON, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # PENDING, DONE, FAILED
    sa.Column("attempts", sa.Integer, nullable=False),  # failed attempts so far
    sa.Column("wake_at", sa.BigInteger, nullable=False),  # due from (later after a failed attempt)
    sa.Column("lease_until", sa.BigInteger),  # a wake-up was sent: sent again once this has passed
    sa.Column("last_error", sa.Text),
    # ordering: a task waits while a pending task of its lane has an id up to its after_id
    sa.Column("lane", sa.String(200)),
    sa.Column("after_id", sa.BigInteger),
    sa.Column("done_by", sa.String(200)),  # host:pid of whoever finished it
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.UniqueConstraint("kind", "ref", "part", name="ux_tasks_ref"),
    sa.Index("ix_tasks_pending", "status", "wake_at"),
    sa.Index("ix_tasks_lane", "lane", "status", "id"),
)

automation_versions = sa.Table(  # every saved version of an automation, as it was: what a run ran
    "automation_versions",
    metadata,
    sa.Column("automation_id", ID, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    _team(),
    sa.Column("procedure_id", ID, nullable=False),
    sa.Column("definition", JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

runs = sa.Table(  # one execution of an automation for one process
    "runs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _team(),
    sa.Column("automation_id", ID, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # of the automation, the one it runs
    sa.Column("procedure_id", ID, nullable=False),
    sa.Column("process_id", ID, nullable=False),
    # what fired it, once: "v<process version>" for an event, "at:<ms>" for a time; None when run by hand
    sa.Column("trigger_key", sa.String(40)),
    sa.Column("event", JSON, nullable=False),  # the triggering event (type, payload), or how it was started
    sa.Column("depth", sa.Integer, nullable=False),  # runs whose saves led to this one
    sa.Column("status", sa.String(12), nullable=False),  # PENDING RUNNING WAITING SUCCEEDED FAILED CANCELLED
    sa.Column("step", sa.Integer, nullable=False),  # the next step to run
    sa.Column("attempts", sa.Integer, nullable=False),  # failed attempts of that step so far
    sa.Column("outputs", JSON, nullable=False),  # step name -> output
    sa.Column("error", sa.Text),
    sa.Column("wake_at", sa.BigInteger, nullable=False),  # due from
    sa.Column("lease_until", sa.BigInteger),  # RUNNING: held by ``held_by`` until then
    sa.Column("held_by", sa.String(100)),
    sa.Column(
        "task_ref", sa.String(40), nullable=False
    ),  # the task that runs it (with the others of its save)
    sa.Column("job_id", ID),  # the batch it belongs to, if any, and its entry there
    sa.Column("job_idx", sa.Integer),
    sa.Column("rerun_of", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("finished_at", sa.BigInteger),
    sa.UniqueConstraint("automation_id", "process_id", "trigger_key", name="ux_runs_trigger"),
    sa.Index("ix_runs_process", "team_id", "process_id", "id"),
    sa.Index("ix_runs_task", "task_ref", "id"),
    sa.Index("ix_runs_automation", "team_id", "automation_id", "id"),
    sa.Index("ix_runs_job", "job_id", "job_idx"),
    sa.Index("ix_runs_finished", "team_id", "finished_at"),  # retention
)

run_attempts = sa.Table(  # every attempt of every step: what was sent, what came back
    "run_attempts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _team(),
    sa.Column("run_id", sa.BigInteger, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(12), nullable=False),  # OK RETRY FAILED SKIPPED WAIT
    sa.Column("request", JSON),  # the computed input
    sa.Column("status_code", sa.Integer),
    sa.Column("excerpt", sa.Text),  # of the reply's body, bounded
    sa.Column("output", JSON),
    sa.Column("error", sa.Text),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Index("ix_run_attempts_run", "run_id", "id"),
)

connectors = sa.Table(  # a team's account at an external service; its credentials sealed (Fernet)
    "connectors",
    metadata,
    _id(),
    _team(),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # hubspot, dropbox, http
    sa.Column("base_url", sa.String(500), nullable=False),
    sa.Column("settings", JSON, nullable=False),  # what is not secret (an auth header's name, ...)
    sa.Column("credentials", sa.Text),  # a Fernet token of the credentials, never shown
    sa.Column("credential_fields", JSON, nullable=False),  # the names of those set
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("team_id", "name", name="ux_connectors_name"),
)

links = sa.Table(  # what a step established in another system for a process: one per object type there
    "links",
    metadata,
    _team(),
    sa.Column("process_id", ID, nullable=False),
    sa.Column("connector_id", ID, nullable=False),
    sa.Column("object_type", sa.String(300), nullable=False),  # contacts, deals, file:/path, ...
    sa.Column("external_id", sa.String(200), nullable=False),
    sa.Column("url", sa.String(2000)),
    sa.Column("first_synced_at", sa.BigInteger, nullable=False),
    sa.Column("last_synced_at", sa.BigInteger, nullable=False),
    sa.Column("automation_id", ID),  # the automation and run that last synced it
    sa.Column("run_id", sa.BigInteger),
    sa.PrimaryKeyConstraint("team_id", "process_id", "connector_id", "object_type"),
    sa.Index("ix_links_external", "team_id", "connector_id", "external_id"),
)

webhooks = sa.Table(  # a team's subscription of an endpoint to event types
    "webhooks",
    metadata,
    _id(),
    _team(),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("event_types", JSON, nullable=False),
    sa.Column("secret", sa.String(100), nullable=False),  # signs its deliveries; shown once, at creation
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("timeout_ms", sa.Integer, nullable=False),  # of each attempt
    sa.Column("max_attempts", sa.Integer),  # of a delivery; None: until it succeeds or this is disabled
    sa.Column("backoff_ms", sa.Integer, nullable=False),  # after a delivery's first failed attempt; doubled
    sa.Column("failing_since", sa.BigInteger),  # the first failed attempt since the last success
    sa.Column("disabled_at", sa.BigInteger),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ix_webhooks_team", "team_id", "enabled"),
)

webhook_deliveries = sa.Table(  # one event for one subscription: sent until it succeeds or is given up
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _team(),
    sa.Column("webhook_id", ID, nullable=False),
    # what its order is kept within, for its subscription: a process's id (a job's, a subscription's)
    sa.Column("subject", sa.String(40), nullable=False),
    sa.Column(
        "event_key", sa.String(80), nullable=False
    ),  # the event, once per subject ("v3:process.updated")
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("message_id", sa.String(40), nullable=False),  # webhook-id: the same on every attempt
    sa.Column("body", sa.Text, nullable=False),  # the exact JSON sent, on every attempt
    sa.Column("status", sa.String(12), nullable=False),  # PENDING RUNNING SUCCEEDED FAILED
    sa.Column("attempts", sa.Integer, nullable=False),  # failed attempts since it was last (re)started
    sa.Column("error", sa.Text),
    sa.Column("wake_at", sa.BigInteger, nullable=False),  # due from
    sa.Column("lease_until", sa.BigInteger),  # RUNNING: held by ``held_by`` until then
    sa.Column("held_by", sa.String(100)),
    sa.Column("task_ref", sa.String(40), nullable=False),  # the task that sends it
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.UniqueConstraint("webhook_id", "subject", "event_key", name="ux_webhook_deliveries_event"),
    sa.Index("ix_webhook_deliveries_subject", "team_id", "subject", "webhook_id", "id"),
    sa.Index("ix_webhook_deliveries_webhook", "team_id", "webhook_id", "id"),
    sa.Index("ix_webhook_deliveries_task", "task_ref", "id"),
    sa.Index("ix_webhook_deliveries_finished", "team_id", "finished_at"),  # retention
)

webhook_attempts = sa.Table(  # every attempt of every delivery: what was sent, what came back
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _team(),
    sa.Column("delivery_id", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(12), nullable=False),  # OK RETRY FAILED
    sa.Column("request", JSON),  # url, webhook-id, webhook-timestamp (never the signature's secret)
    sa.Column("status_code", sa.Integer),
    sa.Column("excerpt", sa.Text),  # of the reply's body, bounded
    sa.Column("error", sa.Text),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)
