"""Bulk jobs on SQLite and PostgreSQL: submission, per-entry results, chunk application, abort, idempotency."""

from __future__ import annotations

import gc
import sqlite3
from dataclasses import replace
from itertools import pairwise
from typing import Any

import pytest
import sqlalchemy as sa

from procession.api.deps import request_hash
from procession.domain.clock import now_ms
from procession.domain.errors import Invalid, NotFound
from procession.domain.process import Event
from procession.engine.bulk import BULK_CHUNK
from procession.engine.tasks import Kinds
from procession.services.commands import BulkProcesses, CreateProcess
from procession.services.idempotency import Once
from procession.services.jobs import CHUNK_SIZE, ENTRY_BATCH, MAX_ITEMS, abort_job, submit_job
from procession.services.processes import create_in, load_procedure
from procession.store import batch
from procession.store import tables as t
from procession.store.tasks import Queue
from tests.conftest import Team
from tests.integration.bulk import create, drain, entries, job, read, run_chunk, submit, task_of


def test_both_shapes_both_identifiers_and_every_field(team: Team) -> None:
    a, b = create(team, {"data": {"city": "Pune"}}), create(team, {"data": {"lead_id": "LEAD-910"}})
    j = submit(
        team,
        [
            {
                "id": a["id"],
                "state": "IN_PROGRESS",
                "status": "OPEN",
                "assignedTo": "shane.warne",
                "nextActionAt": "1616253910842",
                "data": {"first_name": "shane", "last_name": "warne"},
            },
            {
                "lead_id": "LEAD-910",
                "update": {
                    "data": {"score": "105", "city": "Goa"},
                    "state": "IN_PROGRESS",
                    "status": "CANCELLED",
                },
            },
        ],
    )
    assert j["status"] == "NOT_STARTED" and j["counts"]["NOT_STARTED"] == 2
    drain(team)
    done = job(team, j["id"])
    assert done["status"] == "COMPLETED" and done["counts"]["SUCCESS"] == 2 and done["finishedAt"]
    pa, pb = read(team, a["id"]), read(team, b["id"])
    assert pa["data"] == {
        "city": "Pune",
        "first_name": "shane",
        "last_name": "warne",
        "lead_id": pa["data"]["lead_id"],
    }
    assert (pa["state"], pa["nextActionAt"], pa["assignedTo"] is not None) == (
        "IN_PROGRESS",
        1616253910842,
        True,
    )
    assert pb["data"]["score"] == 105 and pb["status"] == "CANCELLED" and pb["cancelledAt"]
    assert [e["processId"] for e in entries(team, j["id"])] == [a["id"], b["id"]]


def test_a_primary_key_changed_in_bulk_is_found_by_its_new_key_only(team: Team) -> None:
    a, b = create(team, {"data": {"lead_id": "OLD-1"}}), create(team, {})
    submit(team, [{"lead_id": "OLD-1", "data": {"lead_id": "NEW-1"}}, {"id": b["id"], "data": {"score": 3}}])
    drain(team)
    with team.uow() as uow:
        lead = uow.procedures.get("lead")
        assert lead is not None
        assert uow.processes.id_by_pk(lead.id, "NEW-1") == a["id"]
        assert uow.processes.id_by_pk(lead.id, "OLD-1") is None
        assert uow.processes.id_by_pk(lead.id, b["data"]["lead_id"]) == b["id"]  # its key left as it was


def test_a_key_names_a_process_of_the_job_s_procedure_only(team: Team) -> None:
    last = (
        "ffffffff-ffff-ffff-ffff-ffffffffffff"  # the ticket's row comes after the lead's (PostgreSQL: by id)
    )
    with team.uow() as uow:  # a ticket whose key is also a lead's key
        ticket = create_in(uow, team.caller, "ticket", CreateProcess(data={"ticket_id": "SAME-1"}))
        uow.conn.execute(sa.update(t.processes).where(t.processes.c.id == ticket["id"]).values(id=last))
        uow.commit()
    lead = create(team, {"data": {"lead_id": "SAME-1"}})
    j = submit(team, [{"id": last, "data": {"score": 1}}, {"lead_id": "SAME-1", "data": {"score": 2}}])
    drain(team)
    results = entries(team, j["id"])
    assert [(e["status"], e["processId"]) for e in results] == [("ERROR", None), ("SUCCESS", lead["id"])]
    assert read(team, lead["id"])["data"]["score"] == 2


def test_delete_and_restore_in_bulk(team: Team) -> None:
    p = create(team, {})
    submit(team, [{"id": p["id"], "isDeleted": True}])
    drain(team)
    j = submit(team, [{"id": p["id"], "data": {"score": 1}}, {"id": p["id"], "update": {"isDeleted": False}}])
    drain(team)
    results = entries(team, j["id"])
    assert [e["status"] for e in results] == ["ERROR", "SUCCESS"]
    assert results[0]["errors"][0]["code"] == "deleted"
    assert read(team, p["id"])["isDeleted"] is False


def test_invalid_and_error_entries_never_fail_the_others(team: Team) -> None:
    good, done = create(team, {}), create(team, {"state": "CONVERTED"})
    other = create(team, {"data": {"lead_id": "OTHER"}})
    items = [
        {"status": "COMPLETED"},  # 0 no identifier: INVALID
        {"id": good["id"], "data": {"score": "many"}},  # 1 bad value: INVALID
        {"id": good["id"], "data": {"nope": 1}},  # 2 unknown attribute: INVALID
        {"id": good["id"], "colour": "red"},  # 3 unknown field: INVALID
        {"id": good["id"], "lead_id": "OTHER"},  # 4 identifiers disagree: INVALID
        {"id": good["id"], "data": {"score": 1}, "update": {"state": "NEW"}},  # 5 both shapes: INVALID
        "not an object",  # 6 INVALID
        {"id": "00000000-0000-0000-0000-000000000000", "data": {"score": 1}},  # 7 not found: ERROR
        {"id": done["id"], "state": "NEW"},  # 8 transition: ERROR
        {"lead_id": "NOPE-1", "data": {"score": 1}},  # 9 not found by key: ERROR
        {"id": good["id"], "data": {"score": 7}},  # 10 SUCCESS
        {"lead_id": "OTHER", "data": {"score": 8}},  # 11 SUCCESS
    ]
    j = submit(team, items)
    assert j["counts"] == {"INVALID": 7, "NOT_STARTED": 5, "SUCCESS": 0, "ERROR": 0}
    drain(team)
    final = job(team, j["id"])
    assert final["status"] == "COMPLETED"
    assert final["counts"] == {"INVALID": 7, "NOT_STARTED": 0, "SUCCESS": 2, "ERROR": 3}
    by_index = {e["index"]: e for e in entries(team, j["id"])}
    assert [by_index[i]["status"] for i in range(12)] == ["INVALID"] * 7 + ["ERROR"] * 3 + ["SUCCESS"] * 2
    assert by_index[8]["errors"][0]["code"] == "transition_not_allowed"
    assert by_index[0]["errors"][0]["code"] == "missing_identifier"
    assert by_index[1]["errors"][0]["field"] == "data.score"
    assert entries(team, j["id"], "ERROR")[0]["index"] == 7
    assert read(team, good["id"])["data"]["score"] == 7 and read(team, other["id"])["data"]["score"] == 8


def test_chunks_hold_a_thousand_valid_entries_each_with_invalid_ones_between(team: Team) -> None:
    """Chunk bounds count valid entries only, across the batches submission stores in: every chunk covers
    exactly CHUNK_SIZE of them (the last the rest), and the chunks neither overlap nor leave one out."""
    p = create(team, {})
    items = [
        {"status": "COMPLETED"} if i % 4 == 3 else {"id": p["id"], "data": {"score": i}} for i in range(5500)
    ]
    j = submit(team, items)
    c, e = t.tasks.c, t.job_entries.c
    with team.services.engine.connect() as conn:
        args = conn.scalars(sa.select(c.args).where(c.ref == j["id"]).order_by(c.part)).all()
        bounds = [(a["first"], a["end"]) for a in args]
        valid = [
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.job_entries)
                .where(e.job_id == j["id"], e.status == "NOT_STARTED", e.idx >= first, e.idx < end)
            )
            for first, end in bounds
        ]
    assert valid == [CHUNK_SIZE] * 4 + [4125 - 4 * CHUNK_SIZE]
    assert bounds[0][0] == 0 and bounds[-1][1] == 5499 and all(a[1] <= b[0] for a, b in pairwise(bounds))
    drain(team)
    assert job(team, j["id"])["counts"] == {"INVALID": 1375, "NOT_STARTED": 0, "SUCCESS": 4125, "ERROR": 0}
    assert read(team, p["id"])["data"]["score"] == 5498


def test_bulk_updates_write_the_same_events_as_single_updates(team: Team) -> None:
    p = create(team, {})
    submit(
        team, [{"id": p["id"], "state": "IN_PROGRESS", "assignedTo": "shane.warne", "data": {"city": "X"}}]
    )
    drain(team)
    with team.uow() as uow:
        types = [e.type for e in uow.events.for_process(p["id"])]
    assert types == ["process.created", "process.updated", "process.state_changed", "process.assigned"]


def test_abort_leaves_unapplied_entries_not_started(team: Team) -> None:
    p = create(team, {})
    j = submit(team, [{"id": p["id"], "data": {"score": i}} for i in range(2500)])
    assert run_chunk(team, j["id"], 0)
    assert team.services.run(abort_job, team.caller, j["id"])["status"] == "ABORTED"
    assert run_chunk(team, j["id"], 1)  # a chunk after the abort: its entries stay as they are
    assert job(team, j["id"])["finishedAt"] is not None  # the job finished when it was aborted
    drain(team)
    final = job(team, j["id"])
    assert final["status"] == "ABORTED"
    assert final["counts"]["SUCCESS"] == 1000 and final["counts"]["NOT_STARTED"] == 1500
    assert read(team, p["id"])["data"]["score"] == 999


def test_bulk_create_has_create_semantics(team: Team) -> None:
    create(team, {"data": {"lead_id": "TAKEN"}})
    j = submit(
        team,
        [
            {
                "data": {"firstname": "Ted"},
                "record": {"data": {"phone_number": "7701214822"}},
                "state": "CONVERTED",
            },
            {"data": {"lead_id": "TAKEN"}},
            {"data": {"score": "x"}},
            {"assignedTo": "shane.warne"},
        ],
        kind="create",
    )
    assert j["counts"]["INVALID"] == 1
    drain(team)
    results = entries(team, j["id"])
    assert [e["status"] for e in results] == ["SUCCESS", "ERROR", "INVALID", "SUCCESS"]
    assert results[1]["errors"][0]["code"] == "duplicate_primary_key"
    ted = read(team, results[0]["processId"])
    assert ted["state"] == "CONVERTED" and ted["record"] is not None


def test_idempotent_resubmission_returns_the_same_job(team: Team) -> None:
    p = create(team, {})
    body = BulkProcesses(processes=[{"id": p["id"], "data": {"score": 1}}])

    def send(b: BulkProcesses) -> tuple[int, dict]:
        once = Once("bulk-1", request_hash("bulk-update lead", b))
        return team.services.run(submit_job, team.caller, "lead", b.processes, kind="update", once=once)

    first, again = send(body), send(body)
    assert first[1]["id"] == again[1]["id"]
    with team.uow() as uow:  # the retry stored no second job
        assert (
            uow.conn.scalar(sa.select(sa.func.count()).select_from(t.jobs).where(t.jobs.c.team_id == team.id))
            == 1
        )


def test_a_chunk_is_applied_once(team: Team) -> None:
    p = create(team, {})
    j = submit(team, [{"id": p["id"], "data": {"score": 1}}])
    first = run_chunk(team, j["id"], 0)
    assert run_chunk(team, j["id"], 0) is False
    assert first or job(team, j["id"])["status"] in ("IN_PROGRESS", "COMPLETED")  # or a server took it
    drain(team)
    assert job(team, j["id"])["counts"]["SUCCESS"] == 1
    with team.uow() as uow:
        assert len(uow.events.for_process(p["id"])) == 2


def test_a_hundred_thousand_entries(team: Team) -> None:
    keys = [create(team, {})["data"]["lead_id"] for _ in range(50)]
    items = [
        {
            "lead_id": keys[i % 50],
            "data": {"score": i, "city": "Goa", "source": "bulk"},
            **({"state": "IN_PROGRESS"} if i < 50 else {}),
        }
        for i in range(100_000)
    ]
    j = submit(team, items)
    assert j["counts"]["NOT_STARTED"] == 100_000
    drain(team)
    final = job(team, j["id"])
    assert final["status"] == "COMPLETED" and final["counts"]["SUCCESS"] == 100_000
    with team.uow() as uow:
        p = uow.processes.get(uow.processes.id_by_pk(uow.procedures.get("lead").id, keys[0]))  # type: ignore[union-attr]
    assert (
        p is not None and p.version == 1 + 2000 - 0
    )  # 2,000 entries touched this one; each changed the score


@pytest.mark.parametrize("kind", ["update", "create"])
def test_unknown_procedure_is_not_found(team: Team, kind: str) -> None:
    with pytest.raises(NotFound):
        team.services.run(submit_job, team.caller, "nope", [{}], kind=kind)


def test_a_chunk_that_keeps_failing_ends_as_errors_and_a_failed_job(team: Team) -> None:
    p = create(team, {})
    j = submit(team, [{"id": p["id"], "data": {"score": 1}}, {"id": p["id"], "data": {"score": 2}}])

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    kinds = Kinds(replace(BULK_CHUNK, run=broken))
    for attempt in range(BULK_CHUNK.max_attempts):
        assert job(team, j["id"])["status"] == "NOT_STARTED", attempt
        with pytest.raises(RuntimeError):
            run_chunk(team, j["id"], 0, kinds)
    final = job(team, j["id"])
    assert final["status"] == "FAILED" and final["counts"]["ERROR"] == 2
    assert {e["errors"][0]["code"] for e in entries(team, j["id"])} == {"internal"}
    assert read(team, p["id"])["version"] == 1  # nothing was applied


def waits_for(team: Team, job_id: str) -> list[int | None]:
    """For each chunk, the chunk of its job up to which it waits (None: only the procedure's earlier jobs)."""
    c = t.tasks.c
    with team.services.engine.connect() as conn:
        rows = conn.execute(sa.select(c.id, c.part, c.after_id).where(c.ref == job_id).order_by(c.part)).all()
    part = {task_id: n for task_id, n, _ in rows}
    return [part.get(after) for _, _, after in rows]


def test_chunks_naming_the_same_process_apply_in_order_and_the_others_at_once(team: Team) -> None:
    """A chunk waits for every chunk up to the latest earlier one naming one of its processes (by id, or one
    by id and one by primary key); a chunk naming other processes runs at once. Bulk creates run one chunk
    at a time."""
    a, b, c = (create(team, {}) for _ in range(3))

    def items(process: dict, n: int, by_key: bool = False) -> list[dict]:
        ident = {"lead_id": process["data"]["lead_id"]} if by_key else {"id": process["id"]}
        return [{**ident, "data": {"score": i}} for i in range(n)]

    # chunk 0: a; chunk 1: b; chunk 2: a (by key) -> waits for 0; chunk 3: c, b -> waits for 1
    j = submit(
        team, items(a, 1000) + items(b, 1000) + items(a, 1000, by_key=True) + items(c, 999) + items(b, 1)
    )
    assert waits_for(team, j["id"]) == [None, None, 0, 1]
    creates = submit(team, [{}] * 2001, kind="create")
    assert waits_for(team, creates["id"]) == [None, 0, 1]

    assert run_chunk(team, j["id"], 2) is False  # chunk 0 first
    assert run_chunk(team, j["id"], 1) is True  # independent of chunk 0
    assert run_chunk(team, j["id"], 3) is False  # every chunk up to 1 first: 0 is pending
    assert run_chunk(team, j["id"], 0) is True
    assert run_chunk(team, j["id"], 3) is True
    assert run_chunk(team, j["id"], 2) is True
    assert job(team, j["id"])["counts"]["SUCCESS"] == 4000
    assert read(team, a["id"])["data"]["score"] == 999  # the last entry naming it, applied last
    drain(team)


def test_items_may_stream_in_and_too_many_store_nothing(team: Team) -> None:
    """Submission takes the items as a one-time stream, a batch at a time; past MAX_ITEMS the whole
    submission is refused, with nothing stored."""
    p = create(team, {})
    j = submit(team, ({"id": p["id"], "data": {"score": i}} for i in range(3)))  # type: ignore[arg-type]
    assert (j["total"], j["counts"]["NOT_STARTED"]) == (3, 3)
    with pytest.raises(Invalid) as refused:
        submit(team, ({"id": p["id"]} for _ in range(MAX_ITEMS + 1)))  # type: ignore[arg-type]
    assert refused.value.errors[0].code == "too_many"
    assert gc.isenabled()  # paused while the items are taken, and resumed however submission ends
    with pytest.raises(Invalid):
        submit(team, iter([]))  # type: ignore[arg-type]
    with team.services.engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(t.jobs).where(t.jobs.c.team_id == team.id)
        assert conn.scalar(count) == 1


def test_jobs_of_a_procedure_apply_in_the_order_they_were_submitted(team: Team) -> None:
    """A later job of the same procedure waits until the earlier one has nothing pending, and is then
    among the chunks its last chunk unblocks; a job that changes primary keys runs its chunks in turn."""
    a, b = create(team, {}), create(team, {})
    first = submit(team, [{"id": a["id"], "data": {"score": 1}}])
    second = submit(team, [{"id": b["id"], "data": {"score": 2}}])
    assert run_chunk(team, second["id"], 0) is False  # the first job is pending
    done, waiting = task_of(team, first["id"], 0), task_of(team, second["id"], 0)
    with team.services.engine.begin() as conn:
        assert Queue(conn).lease_lane(done, now_ms(), 1000) == []  # not done yet
    assert run_chunk(team, first["id"], 0) is True
    with team.services.engine.begin() as conn:
        assert Queue(conn).lease_lane(done, now_ms(), 1000) == [waiting]
    assert run_chunk(team, second["id"], 0) is True

    c = create(team, {})  # by their names alone the two chunks share nothing; but a key moves
    renames = submit(
        team,
        [{"id": a["id"], "data": {"lead_id": "RENAMED-1"}}] + [{"id": b["id"]}] * 999 + [{"id": c["id"]}],
    )
    assert waits_for(team, renames["id"]) == [None, 0]
    drain(team)


def test_an_item_holding_the_nul_character_is_one_invalid_entry(team: Team) -> None:
    """PostgreSQL stores no text holding the NUL character, in a string or a key: such an item is an INVALID
    entry, kept with U+FFFD in its place, on both databases; its batch and the others are stored."""
    p = create(team, {})
    items = [{"id": p["id"], "data": {"city": "a\u0000b"}}, {"id": "\u0000"}, {"id": p["id"]}]
    j = submit(team, items + [{"id": p["id"]} for _ in range(ENTRY_BATCH)])
    assert j["counts"] == {"INVALID": 2, "NOT_STARTED": ENTRY_BATCH + 1, "SUCCESS": 0, "ERROR": 0}
    refused = [e for e in entries(team, j["id"]) if e["status"] == "INVALID"]
    assert [(e["item"], e["errors"][0]["code"]) for e in refused] == [
        ({"id": p["id"], "data": {"city": "a\ufffdb"}}, "invalid_value"),
        ({"id": "\ufffd"}, "invalid_character"),
    ]


def test_a_write_sent_behind_is_refused_when_it_settles(team: Team) -> None:
    """Inside ``pipelined()`` the submission's entries go out behind the work that follows (PostgreSQL's
    pipeline mode; a thread of their own on SQLite): one the database refuses is refused when they settle,
    as SQLAlchemy's error, and the transaction keeps nothing."""
    j = submit(team, [{"id": "x"}])  # its entry 0
    sent = []  # what running the refused write returned: it was sent, its refusal still to come
    with team.uow() as uow, pytest.raises(sa.exc.IntegrityError), uow.pipelined() as settle:
        batch.run(
            uow.conn, batch.insert_entries(uow.conn, team.id, j["id"], [(1, "INVALID", "{}", None, None)])
        )
        settle()
        sent.append(
            batch.run(
                uow.conn, batch.insert_entries(uow.conn, team.id, j["id"], [(0, "INVALID", "{}", None, None)])
            )
        )
        settle()
    assert sent == [-1]
    assert [e["index"] for e in entries(team, j["id"])] == [0]


def test_a_batch_past_the_database_bound_on_parameters_is_written_whole(team: Team) -> None:
    """SQLite binds at most so many parameters a statement (32,766 by default; builds differ): 6,000 events of
    6 are written in as many statements as the connection's bound needs (one on PostgreSQL, in arrays), all of
    them, in order."""
    p = create(team, {})
    events = [(p["id"], Event("process.noted", {"n": n})) for n in range(6000)]
    with team.uow() as uow:
        sqlite = team.services.settings.is_sqlite
        driver: Any = uow.conn.connection.driver_connection
        was = driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 12_000) if sqlite else None
        try:
            writes = batch.insert_events(uow.conn, team.id, events, actor=None, now=1)
        finally:
            if sqlite:
                driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, was)
        assert len(writes) == (3 if sqlite else 1)  # 2,000 rows of 6 parameters each
        batch.run(uow.conn, writes)
        uow.commit()
    with team.services.engine.connect() as conn:
        noted = sa.select(t.events.c.payload).where(
            t.events.c.process_id == p["id"], t.events.c.type == "process.noted"
        )
        assert [row.payload["n"] for row in conn.execute(noted.order_by(t.events.c.id))] == list(range(6000))


def test_in_a_pipeline_a_statement_waits_for_its_own_reply(team: Team) -> None:
    """Inside ``pipelined()`` (PostgreSQL's pipeline mode; nothing on SQLite) a read gets its rows, through
    SQLAlchemy or ``Statement``, and a write its count: only a write sent with ``reply=False`` goes on
    without its reply."""
    p = create(team, {"data": {"lead_id": "PIPE-1"}})
    with team.uow() as uow, uow.pipelined():
        procedure = load_procedure(uow, "lead")
        process = uow.processes.get(p["id"])
        assert process is not None
        saves = batch.update_processes(uow.conn, procedure, [process], set(), {p["id"]: process.version})
        assert batch.run(uow.conn, saves) == 1
        assert uow.processes.id_by_pk(procedure.id, "PIPE-1") == p["id"]
